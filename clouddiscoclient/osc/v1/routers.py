"""``openstack clouddisco router create|list|show|set|delete``."""

import logging

from openstackclient.identity import common as identity_common
from osc_lib import exceptions as osc_exc
from osc_lib.command import command

from clouddiscoclient import exceptions
from clouddiscoclient.osc.v1 import common

LOG = logging.getLogger(__name__)

FIELDS = ("id", "name", "status", "external_gateway_ip", "agent_host")
HEADERS = ("ID", "Name", "Status", "External Gateway IP", "Agent Host")
LONG_FIELDS = FIELDS + ("ha", "status_reason", "project_id", "agent_id", "created_at",
                        "updated_at")
LONG_HEADERS = HEADERS + ("HA", "Status Reason", "Project ID", "Agent ID", "Created At",
                          "Updated At")
SHOW_ORDER = ("id", "name", "status", "status_reason", "project_id", "ha",
              "external_gateway_ip", "external_gateway_prefixlen", "external_gateway_mac",
              "agent_id", "agent_host", "generation", "created_at", "updated_at")


def _client(cmd):
    return cmd.app.client_manager.clouddisco


class CreateRouter(command.ShowOne):
    """Create a router; a scheduler places it on an L3 agent (status PENDING, then ACTIVE)"""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("name", metavar="<name>", help="New router name")
        parser.add_argument(
            "--external-gateway-ip", metavar="<ip-address>",
            help="Gateway address to take from the external network "
                 "(default: the first free one)")
        parser.add_argument(
            "--ha", action="store_true", default=None,
            help="Create a highly available router")
        return parser

    def take_action(self, parsed_args):
        router = _client(self).routers.create(
            parsed_args.name, external_gateway_ip=parsed_args.external_gateway_ip,
            ha=parsed_args.ha)
        return common.show_output(router, SHOW_ORDER)


class ListRouter(command.Lister):
    """List routers (an admin sees every project's)"""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            "--project", metavar="<project>",
            help="Only the routers of this project (name or ID); an admin "
                 "sees every project's without it")
        identity_common.add_project_domain_option_to_parser(parser)
        parser.add_argument("--long", action="store_true", default=False,
                            help="List additional fields in output")
        common.add_paging_options(parser, "routers")
        return parser

    def take_action(self, parsed_args):
        project_id = None
        if parsed_args.project:
            project_id = identity_common.find_project(
                self.app.client_manager.identity, parsed_args.project,
                parsed_args.project_domain).id
        routers = _client(self).routers.list(limit=parsed_args.limit,
                                             marker=parsed_args.marker,
                                             project_id=project_id)
        if parsed_args.long:
            return common.list_output(routers, LONG_FIELDS, LONG_HEADERS)
        return common.list_output(routers, FIELDS, HEADERS)


class ShowRouter(command.ShowOne):
    """Show a router's details"""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("router", metavar="<router>",
                            help="Router to show (name or ID)")
        return parser

    def take_action(self, parsed_args):
        router = _client(self).routers.find(parsed_args.router)
        return common.show_output(router, SHOW_ORDER)


class SetRouter(command.Command):
    """Set router properties"""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("router", metavar="<router>",
                            help="Router to modify (name or ID)")
        parser.add_argument("--name", metavar="<name>", help="Set router name")
        return parser

    def take_action(self, parsed_args):
        client = _client(self)
        router = client.routers.find(parsed_args.router)
        if parsed_args.name is not None:
            client.routers.update(router["id"], name=parsed_args.name)


class DeleteRouter(command.Command):
    """Delete router(s); each agent removes its copy, then the router is gone"""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("routers", metavar="<router>", nargs="+",
                            help="Router(s) to delete (name or ID)")
        return parser

    def take_action(self, parsed_args):
        client = _client(self)
        failed = 0
        for name_or_id in parsed_args.routers:
            try:
                client.routers.delete(client.routers.find(name_or_id)["id"])
            except exceptions.ClientException as exc:
                failed += 1
                LOG.error("failed to delete router %s: %s", name_or_id, exc)
        if failed:
            raise osc_exc.CommandError(
                f"{failed} of {len(parsed_args.routers)} routers failed to delete.")
