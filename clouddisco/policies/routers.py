"""Rules of /v1/routers.

A router of another project is answered 404, not 403, when a rule denies it
(clouddisco.api.policy.authorize_router): a project learns nothing about
routers that are not its own.
"""

from oslo_policy import policy

from clouddisco.policies import base

PREFIX = "clouddisco:router:%s"
LIST = PREFIX % "list"
LIST_ALL_PROJECTS = PREFIX % "list:all_projects"
CREATE = PREFIX % "create"
SHOW = PREFIX % "show"
SHOW_INFRASTRUCTURE = PREFIX % "show:infrastructure"
UPDATE = PREFIX % "update"
DELETE = PREFIX % "delete"

# Router fields that name the control plane's machinery, not the tenant's
# resource: shown only where SHOW_INFRASTRUCTURE allows.
INFRASTRUCTURE_FIELDS = ("agent_host", "agent_id")

rules = [
    policy.DocumentedRuleDefault(
        name=LIST,
        check_str=base.ADMIN_OR_PROJECT_READER,
        description="List the routers of one's own project.",
        operations=[{"path": "/v1/routers", "method": "GET"}],
        scope_types=["project"]),
    policy.DocumentedRuleDefault(
        name=LIST_ALL_PROJECTS,
        check_str=base.ADMIN,
        description="List the routers of every project, or of the project "
        "given by ?project_id=.",
        operations=[{"path": "/v1/routers?project_id={project_id}", "method": "GET"}],
        scope_types=["project"]),
    policy.DocumentedRuleDefault(
        name=CREATE,
        check_str=base.ADMIN_OR_PROJECT_MEMBER,
        description="Create a router in one's own project.",
        operations=[{"path": "/v1/routers", "method": "POST"}],
        scope_types=["project"]),
    policy.DocumentedRuleDefault(
        name=SHOW,
        check_str=base.ADMIN_OR_PROJECT_READER,
        description="Show a router.",
        operations=[{"path": "/v1/routers/{router_id}", "method": "GET"}],
        scope_types=["project"]),
    policy.DocumentedRuleDefault(
        name=SHOW_INFRASTRUCTURE,
        check_str=base.ADMIN,
        description="See where a router runs: the agent_host and agent_id "
        "fields of routers shown and listed. Without it they are left out.",
        operations=[{"path": "/v1/routers", "method": "GET"},
                    {"path": "/v1/routers/{router_id}", "method": "GET"}],
        scope_types=["project"]),
    policy.DocumentedRuleDefault(
        name=UPDATE,
        check_str=base.ADMIN_OR_PROJECT_MEMBER,
        description="Change a router (its name).",
        operations=[{"path": "/v1/routers/{router_id}", "method": "PUT"}],
        scope_types=["project"]),
    policy.DocumentedRuleDefault(
        name=DELETE,
        check_str=base.ADMIN_OR_PROJECT_MEMBER,
        description="Delete a router.",
        operations=[{"path": "/v1/routers/{router_id}", "method": "DELETE"}],
        scope_types=["project"]),
]


def list_rules():
    return rules
