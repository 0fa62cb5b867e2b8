"""JSON schemas of the router resource."""

CREATE = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 255},
        "external_gateway_ip": {"type": "string", "format": "ipv4"},
        "ha": {"type": "boolean"},
    },
    "required": ["name"],
    "additionalProperties": False,
}

UPDATE = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 255},
    },
    "required": ["name"],
    "additionalProperties": False,
}
