"""Rules of /v1/agents: the L3 agents are the cloud's machinery (admin only)."""

from oslo_policy import policy

from clouddisco.policies import base

PREFIX = "clouddisco:agent:%s"
LIST = PREFIX % "list"
SHOW = PREFIX % "show"
UPDATE = PREFIX % "update"

rules = [
    policy.DocumentedRuleDefault(
        name=LIST,
        check_str=base.ADMIN,
        description="List the L3 agents, their liveness and load.",
        operations=[{"path": "/v1/agents", "method": "GET"}],
        scope_types=["project"]),
    policy.DocumentedRuleDefault(
        name=SHOW,
        check_str=base.ADMIN,
        description="Show an L3 agent.",
        operations=[{"path": "/v1/agents/{agent_id}", "method": "GET"}],
        scope_types=["project"]),
    policy.DocumentedRuleDefault(
        name=UPDATE,
        check_str=base.ADMIN,
        description="Enable or disable an L3 agent (admin_state_up).",
        operations=[{"path": "/v1/agents/{agent_id}", "method": "PUT"}],
        scope_types=["project"]),
]


def list_rules():
    return rules
