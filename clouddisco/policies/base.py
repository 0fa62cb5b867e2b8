"""Rules the resource rules are built from.

The role names are Keystone's defaults (``keystone-manage bootstrap``):
admin implies member, and member implies reader, so a member's token also
carries ``reader``. Every rule is for project-scoped tokens.
"""

from oslo_policy import policy

ADMIN = "rule:admin_api"
PROJECT_READER = "rule:project_reader"
PROJECT_MEMBER = "rule:project_member"
ADMIN_OR_PROJECT_READER = f"{ADMIN} or {PROJECT_READER}"
ADMIN_OR_PROJECT_MEMBER = f"{ADMIN} or {PROJECT_MEMBER}"

rules = [
    policy.RuleDefault(
        name="admin_api",
        check_str="role:admin",
        description="The cloud's operators: every project's routers, the agents, "
        "the failover events, and where each router runs."),
    policy.RuleDefault(
        name="project_reader",
        check_str="role:reader and project_id:%(project_id)s",
        description="Read access to the resources of one's own project."),
    policy.RuleDefault(
        name="project_member",
        check_str="role:member and project_id:%(project_id)s",
        description="Write access to the resources of one's own project."),
]


def list_rules():
    return rules
