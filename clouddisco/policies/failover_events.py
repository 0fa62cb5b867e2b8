"""Rules of /v1/failover-events: the evidence of every move (admin only)."""

from oslo_policy import policy

from clouddisco.policies import base

PREFIX = "clouddisco:failover_event:%s"
LIST = PREFIX % "list"
SHOW = PREFIX % "show"

rules = [
    policy.DocumentedRuleDefault(
        name=LIST,
        check_str=base.ADMIN,
        description="List failover events: which routers moved, when and why.",
        operations=[{"path": "/v1/failover-events", "method": "GET"}],
        scope_types=["project"]),
    policy.DocumentedRuleDefault(
        name=SHOW,
        check_str=base.ADMIN,
        description="Show a failover event.",
        operations=[{"path": "/v1/failover-events/{event_id}", "method": "GET"}],
        scope_types=["project"]),
]


def list_rules():
    return rules
