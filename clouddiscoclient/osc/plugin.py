"""OpenStackClient plugin of the clouddisco API: ``openstack clouddisco ...``.

Found by OSC through the ``openstack.cli.extension`` entry point
``clouddisco``; its commands are the ``openstack.clouddisco.v1`` entry
points. The contract (as python-octaviaclient and osc-placement follow it):
``API_NAME`` (the client manager attribute, ``client_manager.clouddisco``),
``API_VERSION_OPTION`` with ``DEFAULT_API_VERSION`` and ``API_VERSIONS``,
``make_client`` and ``build_option_parser``.
"""

import logging

from osc_lib import utils

LOG = logging.getLogger(__name__)

API_NAME = "clouddisco"
API_VERSION_OPTION = "os_clouddisco_api_version"
DEFAULT_API_VERSION = "1"
API_VERSIONS = {
    "1": "clouddiscoclient.v1.client.Client",
}
SERVICE_TYPE = "l3-ha"


def make_client(instance):
    """The API client for OSC's client manager (built on first use)."""
    version = instance._api_version.get(API_NAME, DEFAULT_API_VERSION)
    client_class = utils.get_client_class(API_NAME, version, API_VERSIONS)
    LOG.debug("instantiating clouddisco client %s", client_class)
    # The same override OSC's own services honour: l3_ha_endpoint_override
    # in clouds.yaml, or OS_L3_HA_ENDPOINT_OVERRIDE in the environment.
    config = getattr(getattr(instance, "_cli_options", None), "config", None) or {}
    return client_class(
        session=instance.session,
        interface=instance.interface,
        region_name=instance.region_name,
        endpoint_override=config.get(SERVICE_TYPE.replace("-", "_") + "_endpoint_override"),
        service_type=SERVICE_TYPE,
    )


def build_option_parser(parser):
    """Hook to add global options: the API version (only 1 so far)."""
    parser.add_argument(
        "--os-clouddisco-api-version",
        metavar="<clouddisco-api-version>",
        default=utils.env("OS_CLOUDDISCO_API_VERSION", default=DEFAULT_API_VERSION),
        help=f"clouddisco API version, default={DEFAULT_API_VERSION} "
             "(Env: OS_CLOUDDISCO_API_VERSION)")
    return parser
