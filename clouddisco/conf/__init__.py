"""Build, parse and check a service's configuration.

Every service owns a ``cfg.ConfigOpts``; nothing reads ``cfg.CONF`` at run time.
"""

import ipaddress
from collections.abc import Sequence

from oslo_config import cfg
from oslo_db import options as db_options
from oslo_log import log as logging
from oslo_messaging import opts as messaging_opts
from oslo_messaging._drivers import impl_rabbit as _messaging_rabbit
from oslo_messaging._metrics import client as _messaging_metrics
from oslo_messaging._tracing import client as _messaging_tracing
from oslo_middleware import opts as middleware_opts
from oslo_policy import opts as policy_opts

from clouddisco.conf import opts
from clouddisco.conf import types

LOG = logging.getLogger(__name__)

# One whole second of kernel lifetime granularity plus the kernel's lateness
# and margin (clouddisco.drivers.lifetimes): agent_down_time - lease_time must
# be at least this for address lifetimes to outlast the lease.
KERNEL_LEASE_SLACK = 1.45

DEFAULT_CONFIG_FILE = "/etc/clouddisco/clouddisco.conf"


class ConfigError(Exception):
    """A configuration problem, worded as one line that names the option."""


def build(argv: Sequence[str] | None = None, *, prog: str | None = None,
          default_config_files: list[str] | None = None,
          conf: cfg.ConfigOpts | None = None) -> cfg.ConfigOpts:
    """Register every option on a fresh ConfigOpts and parse ``argv``.

    Raises ConfigError for unknown CLI arguments or unreadable files, so callers
    can print one line instead of a traceback.
    """
    conf = conf or cfg.ConfigOpts()
    # Only the API (and callers that name no program: tests, generators)
    # needs its libraries' options; importing keystonemiddleware cost every
    # agent about a second of CPU at start-up, which under load pushed an
    # agent restart past [cleanup] restart_grace and fenced the node.
    register(conf, api_libraries=prog in (None, API_PROG))
    if default_config_files is None:
        default_config_files = cfg.find_config_files(project="clouddisco")
    try:
        conf(list(argv or []), project="clouddisco", prog=prog,
             default_config_files=default_config_files)
    except (cfg.Error, SystemExit) as exc:
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise  # --help / --version
        raise ConfigError(str(exc) or "invalid command line") from None
    return conf


# [oslo_messaging_rabbit] defaults of clouddisco, measured against a 3-node
# RabbitMQ cluster with a node killed (bench/rabbit_failover.py, doc/source/
# ha.rst). kombu_reconnect_delay is the one that matters: oslo.messaging
# sleeps it after *every* failed reconnect attempt, and the reply consumer of
# a crashed node went through 6-7 of them (the default 1 s: calls stalled
# 7-8 s; 0: under 1 s). The backoff and its cap keep retrying a lost broker
# every second instead of backing off to 30 s; a 6 s heartbeat timeout
# notices a silently dropped connection in seconds, not a minute; "shuffle"
# spreads clients over the cluster's nodes and did as well as round-robin.
RABBIT_DEFAULTS = {
    "kombu_reconnect_delay": 0.0,
    "rabbit_retry_interval": 1,
    "rabbit_retry_backoff": 0,
    "rabbit_interval_max": 1,
    "heartbeat_timeout_threshold": 6,
    "kombu_failover_strategy": "shuffle",
}


def set_lib_defaults() -> None:
    """clouddisco's defaults for library options (``RABBIT_DEFAULTS``).

    Called by ``register`` and, through the ``oslo.config.opts.defaults``
    entry point, by oslo-config-generator, so that the sample shows them.
    oslo.messaging lists deep copies of its option objects, so the defaults
    are set on its own lists, before any copy is made.
    """
    cfg.set_defaults(_messaging_rabbit.rabbit_opts, **RABBIT_DEFAULTS)


API_PROG = "clouddisco-api"


def register(conf: cfg.ConfigOpts, api_libraries: bool = True) -> None:
    set_lib_defaults()
    opts.register_opts(conf)
    logging.register_options(conf)
    db_options.set_defaults(conf, connection="sqlite://")
    # oslo.messaging registers its options only when a transport is made (and
    # its tracing options only on the global CONF); register them all up front
    # so config files, overrides and the sample generator see the same set.
    for group, group_opts in messaging_opts.list_opts():
        conf.register_opts(group_opts, group=group)
    # Same two groups oslo.messaging's own ConfFixture registers by hand.
    conf.register_opts(_messaging_tracing.oslo_messaging_tracing,
                       group="oslo_messaging_tracing")
    conf.register_opts(_messaging_metrics.oslo_messaging_metrics,
                       group="oslo_messaging_metrics")
    # The API's libraries register these when the application is built;
    # registered here too, so that config files are checked against them and
    # the sample lists them (their oslo.config.opts namespaces).
    if not api_libraries:
        return
    from keystonemiddleware.auth_token import _opts as authtoken_opts

    for lister in (authtoken_opts.list_opts, policy_opts.list_opts,
                   middleware_opts.list_opts_sizelimit,
                   middleware_opts.list_opts_http_proxy_to_wsgi,
                   middleware_opts.list_opts_healthcheck):
        for group, group_opts in lister():
            conf.register_opts(group_opts, group=group)


def check(conf: cfg.ConfigOpts, groups: Sequence[str] | None = None) -> None:
    """Read every value of ``groups`` (all by default) and cross-check them.

    oslo.config converts values lazily; reading them here turns a bad value into
    a start-up error instead of a failure in the middle of the night.
    """
    for group in groups or list(opts.GROUPS):
        for opt in opts.GROUPS[group]:
            where = f"[{group}] {opt.dest}"
            try:
                if group == "DEFAULT":
                    getattr(conf, opt.dest)
                else:
                    getattr(getattr(conf, group), opt.dest)
            except (cfg.ConfigFileValueError, ValueError) as exc:
                raise ConfigError(f"{where}: {_short(exc)}") from None
    _check_relations(conf, groups or list(opts.GROUPS))


def _check_relations(conf: cfg.ConfigOpts, groups: Sequence[str]) -> None:
    if "api" in groups:
        net = conf.api.external_cidr
        if net.num_addresses < 4:
            raise ConfigError(f"[api] external_cidr: {net} leaves no room for routers")
        for ip in conf.api.external_reserved_ips:
            try:
                addr = ipaddress.IPv4Address(ip)
            except ValueError:
                raise ConfigError(f"[api] external_reserved_ips: {ip!r} is not an "
                                  "IPv4 address") from None
            if addr not in net:
                raise ConfigError(f"[api] external_reserved_ips: {ip} is outside "
                                  f"[api] external_cidr {net}")
    if "health" in groups:
        h = conf.health
        if h.agent_down_time <= h.lease_time + h.lease_margin:
            raise ConfigError(
                f"[health] agent_down_time: {h.agent_down_time}s must exceed "
                f"lease_time + lease_margin ({h.lease_time}s + {h.lease_margin}s): "
                "otherwise routers could start elsewhere while their old node "
                "still serves them")
    if "agent" in groups:
        if conf.agent.report_endpoints and not conf.health.report_key:
            raise ConfigError("[agent] report_endpoints needs [health] report_key: "
                              "reports over HTTP are signed with it")
        for url in conf.agent.report_endpoints:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"[agent] report_endpoints: {url!r} is not an "
                                  "http:// or https:// URL")
        if conf.agent.report_udp_endpoints and not conf.health.report_key:
            raise ConfigError("[agent] report_udp_endpoints needs [health] report_key: "
                              "reports over UDP are signed with it")
        for endpoint in conf.agent.report_udp_endpoints:
            try:
                types.parse_endpoint(endpoint)
            except ValueError as exc:
                raise ConfigError(f"[agent] report_udp_endpoints: {exc}") from None
    if "health" in groups and "agent" in groups and conf.agent.kernel_lease:
        need = conf.health.lease_time + KERNEL_LEASE_SLACK
        if conf.health.agent_down_time < need:
            # Safe, but an address can expire before the lease when an
            # acknowledgement is late: the data plane then goes dark early.
            LOG.warning("[health] agent_down_time %.2fs is under lease_time + %.2fs "
                        "(%.2fs): with [agent] kernel_lease a late acknowledgement can "
                        "let a gateway address expire before the lease does",
                        conf.health.agent_down_time, KERNEL_LEASE_SLACK, need)
    if "health" in groups and "agent" in groups:
        down, report = conf.health.agent_down_time, conf.agent.report_interval
        if down <= report or conf.health.lease_time <= report:
            raise ConfigError(
                f"[health] agent_down_time ({down}s) and lease_time "
                f"({conf.health.lease_time}s) must exceed [agent] report_interval "
                f"({report}s), or every agent looks dead")


def _short(exc: Exception) -> str:
    # ConfigFileValueError carries a long "Value for option X from LocationInfo(...)"
    # preamble; keep the reason.
    text = str(exc)
    marker = "is not valid: "
    return text.split(marker, 1)[1] if marker in text else text
