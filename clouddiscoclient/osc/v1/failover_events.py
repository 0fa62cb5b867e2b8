"""``openstack clouddisco failover event list|show`` (admin only): the
evidence of every router move."""

import uuid

from osc_lib.command import command

from clouddiscoclient.osc.v1 import common

FIELDS = ("id", "router_id", "cause", "old_agent_id", "new_agent_id", "detected_at",
          "active_at")
HEADERS = ("ID", "Router ID", "Cause", "Old Agent ID", "New Agent ID", "Detected At",
           "Active At")
LONG_FIELDS = FIELDS + ("detected_by", "last_heartbeat_at", "fenced_at", "rescheduled_at",
                        "detail")
LONG_HEADERS = HEADERS + ("Detected By", "Last Heartbeat At", "Fenced At",
                          "Rescheduled At", "Detail")
SHOW_ORDER = ("id", "router_id", "cause", "detected_by", "detail", "old_agent_id",
              "new_agent_id", "last_heartbeat_at", "detected_at", "fenced_at",
              "rescheduled_at", "active_at")


def _client(cmd):
    return cmd.app.client_manager.clouddisco


def _is_uuid(value):
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class ListFailoverEvent(command.Lister):
    """List failover events, newest first"""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            "--router", metavar="<router>",
            help="Only events of this router (name or ID; the ID of a deleted router)")
        parser.add_argument(
            "--agent", metavar="<agent>",
            help="Only events that moved routers off or onto this agent (host or ID)")
        parser.add_argument(
            "--since", metavar="<time>",
            help="Only events detected at or after this time "
                 "(ISO 8601, e.g. 2026-12-04T16:00:00Z; no zone: UTC)")
        parser.add_argument("--long", action="store_true", default=False,
                            help="List additional fields in output")
        common.add_paging_options(parser, "events")
        return parser

    def take_action(self, parsed_args):
        client = _client(self)
        router_id = parsed_args.router
        # An id is used as given: the evidence outlives the router.
        if router_id is not None and not _is_uuid(router_id):
            router_id = client.routers.find(router_id)["id"]
        agent_id = parsed_args.agent
        if agent_id is not None and not _is_uuid(agent_id):
            agent_id = client.agents.find(agent_id)["id"]
        events = client.failover_events.list(
            router_id=router_id, agent_id=agent_id, since=parsed_args.since,
            limit=parsed_args.limit, marker=parsed_args.marker)
        if parsed_args.long:
            return common.list_output(events, LONG_FIELDS, LONG_HEADERS)
        return common.list_output(events, FIELDS, HEADERS)


class ShowFailoverEvent(command.ShowOne):
    """Show a failover event: its cause and the time of each phase"""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("event", metavar="<event>", help="Failover event ID")
        return parser

    def take_action(self, parsed_args):
        event = _client(self).failover_events.get(parsed_args.event)
        return common.show_output(event, SHOW_ORDER)
