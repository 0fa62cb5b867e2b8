"""JSON schemas of the agent resource."""

UPDATE = {
    "type": "object",
    "properties": {"admin_state_up": {"type": "boolean"}},
    "required": ["admin_state_up"],
    "additionalProperties": False,
}
