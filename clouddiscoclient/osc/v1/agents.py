"""``openstack clouddisco agent list|show|set`` (admin only)."""

from osc_lib.command import command

from clouddiscoclient.osc.v1 import common

FIELDS = ("id", "host", "alive", "admin_state_up", "router_count", "guard_status")
HEADERS = ("ID", "Host", "Alive", "State", "Routers", "Guard Status")
LONG_FIELDS = FIELDS + ("agent_type", "namespace_prefix", "heartbeat_at", "started_at",
                        "dead_since", "fenced_at")
LONG_HEADERS = HEADERS + ("Agent Type", "Namespace Prefix", "Heartbeat At", "Started At",
                          "Dead Since", "Fenced At")
SHOW_ORDER = ("id", "host", "agent_type", "alive", "admin_state_up", "router_count",
              "guard_status", "namespace_prefix", "heartbeat_at", "started_at",
              "dead_since", "fenced_at")
FORMATTERS = {"admin_state_up": common.AdminStateColumn, "alive": common.AliveColumn}


def _client(cmd):
    return cmd.app.client_manager.clouddisco


class ListAgent(command.Lister):
    """List L3 agents with their health and load"""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--long", action="store_true", default=False,
                            help="List additional fields in output")
        common.add_paging_options(parser, "agents")
        return parser

    def take_action(self, parsed_args):
        agents = _client(self).agents.list(limit=parsed_args.limit,
                                           marker=parsed_args.marker)
        if parsed_args.long:
            return common.list_output(agents, LONG_FIELDS, LONG_HEADERS, FORMATTERS)
        return common.list_output(agents, FIELDS, HEADERS, FORMATTERS)


class ShowAgent(command.ShowOne):
    """Show an L3 agent's details"""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("agent", metavar="<agent>", help="Agent to show (host or ID)")
        return parser

    def take_action(self, parsed_args):
        agent = _client(self).agents.find(parsed_args.agent)
        return common.show_output(agent, SHOW_ORDER, FORMATTERS)


class SetAgent(command.Command):
    """Enable or disable an L3 agent: a disabled agent gets no new routers and
    keeps those it has"""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("agent", metavar="<agent>", help="Agent to modify (host or ID)")
        state = parser.add_mutually_exclusive_group()
        state.add_argument("--enable", action="store_true", default=False,
                           help="Enable the agent (admin_state_up true)")
        state.add_argument("--disable", action="store_true", default=False,
                           help="Disable the agent (admin_state_up false)")
        return parser

    def take_action(self, parsed_args):
        client = _client(self)
        agent = client.agents.find(parsed_args.agent)
        if parsed_args.enable or parsed_args.disable:
            client.agents.update(agent["id"], admin_state_up=parsed_args.enable)
