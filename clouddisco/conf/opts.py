"""Every clouddisco option, in groups. Nothing here reads a global config.

Services build their own ``cfg.ConfigOpts`` (see ``clouddisco.conf.build``), so
tests can run many differently configured services in one process.
"""

import socket

from oslo_config import cfg

from clouddisco.conf import types as cd_types

DEFAULT_OPTS = [
    cfg.StrOpt(
        "host",
        default=socket.gethostname(),
        sample_default="<hostname>",
        help="Name of this node as agents and services report it. Must be "
        "unique per L3 agent; the cleanup service of a node uses the same "
        "value as the node's agent.",
    ),
    cfg.FloatOpt(
        "max_clock_skew",
        default=1.0,
        min=0.0,
        help="Seconds by which the wall clocks of two clouddisco hosts may "
        "differ (an NTP step, a slow sync) without effect. RPC calls carry "
        "their caller's deadline as a wall-clock instant; a call is refused as "
        "expired only once it arrives more than this after that deadline. "
        "With 0 a scheduler whose clock runs ahead of an agent's by the report "
        "timeout (1 s) refuses every report of that agent and the node fences. "
        "Larger values let a call whose caller gave up be processed up to this "
        "much later, which the protocol tolerates (registrations are "
        "idempotent, leases are counted from when a report was sent). Liveness "
        "never depends on it: heartbeats are judged on the database's clock.",
    ),
]

API_OPTS = [
    cfg.HostAddressOpt("bind_host", default="0.0.0.0", help="Address clouddisco-api listens on."),
    cfg.PortOpt("bind_port", default=9797, help="TCP port clouddisco-api listens on."),
    cfg.IntOpt(
        "threads",
        default=16,
        min=1,
        help="Request threads of clouddisco-api's WSGI server (waitress): how "
        "many requests it works on at once. Others wait, read and queued, "
        "for a free thread. Not used under another WSGI server (uWSGI, "
        "mod_wsgi), which has its own settings.",
    ),
    cfg.IntOpt(
        "connection_limit",
        default=1000,
        min=1,
        help="Most client connections clouddisco-api (waitress) holds open at "
        "once, idle keep-alive ones included. Past it waitress stops accepting "
        "until one closes, so every new client waits: waitress's own default "
        "of 100 let 100 idle connections stall the API. Each connection is a "
        "file descriptor: clouddisco-api raises its soft RLIMIT_NOFILE to fit, "
        "up to the hard limit (LimitNOFILE= in systemd).",
    ),
    cfg.IntOpt(
        "channel_timeout",
        default=60,
        min=1,
        help="Seconds a connection may stay idle (no request, or a request "
        "whose headers or body stopped arriving) before clouddisco-api "
        "(waitress) closes it. Keep it above the keep-alive timeout of a "
        "load balancer in front, so that the balancer closes first.",
    ),
    cfg.IntOpt(
        "backlog",
        default=1024,
        min=1,
        help="Length of the listening socket's queue of connections not yet "
        "accepted (listen(2) backlog; the kernel caps it at "
        "net.core.somaxconn).",
    ),
    cfg.IntOpt(
        "max_request_body_size",
        default=1024 * 1024,
        min=1,
        help="Bytes of request body clouddisco-api's server (waitress) "
        "accepts; beyond it waitress answers 413 itself, in plain text, "
        "without calling the API. Keep it above [oslo_middleware] "
        "max_request_body_size, which answers 413 in the API's JSON error "
        "format: this one is the last guard against a body filling memory "
        "or disk (waitress reads the whole body before the API sees it).",
    ),
    cfg.IntOpt(
        "max_request_header_size",
        default=64 * 1024,
        min=1024,
        help="Bytes of request line and headers clouddisco-api's server "
        "(waitress) accepts; beyond it waitress answers 431 itself, in plain "
        "text. A Keystone token is a few hundred bytes.",
    ),
    cfg.StrOpt(
        "auth_strategy",
        default="keystone",
        choices=[
            ("keystone", "validate the X-Auth-Token of every request with Keystone "
             "(keystonemiddleware auth_token, configured in [keystone_authtoken])"),
            ("noauth", "trust the X-Project-Id and X-Roles headers; anyone who can "
             "reach the API is whoever they say (tests and development only)"),
        ],
        help="How requests are authenticated. Version discovery (/, /v1), "
        "/healthcheck and the agents' signed reports need no token either way. "
        "noauth logs a warning at start-up.",
    ),
    cfg.Opt(
        "external_cidr",
        type=cd_types.IPv4Network(),
        default="172.24.4.0/24",
        help="External network from which router gateway addresses are allocated.",
    ),
    cfg.ListOpt(
        "external_reserved_ips",
        default=[],
        help="Addresses of external_cidr never given to a router (the upstream "
        "gateway, probes, ...).",
    ),
    cfg.IntOpt(
        "max_limit",
        default=1000,
        min=1,
        help="Most items a list request returns.",
    ),
]

SCHEDULER_OPTS = [
    cfg.FloatOpt(
        "replica_down_time",
        default=1.0,
        min=0.1,
        help="Seconds without a health-monitor pass after which a scheduler "
        "replica counts as gone and the others take over its share of the "
        "agents (a hash ring over the live replicas). Keep it about two "
        "[health] check_interval.",
    ),
    cfg.IntOpt(
        "report_workers",
        default=1,
        min=1,
        max=16,
        help="Processes that do nothing but receive state reports and lease "
        "renewals. They are separate from the process that places and moves "
        "routers, so that a burst of that work (1,000 routers moving at once) "
        "cannot delay the heartbeats of healthy agents into a false death.",
    ),
    cfg.IntOpt(
        "report_prefetch_count",
        default=64,
        min=0,
        help="Most state reports and lease renewals RabbitMQ hands a report "
        "worker before it has started on them (its consumers' QoS prefetch; "
        "overrides [oslo_messaging_rabbit] rabbit_qos_prefetch_count for the "
        "report workers only; 0: use that option, whose default means no "
        "limit). A backlog then waits in RabbitMQ, where a report expires "
        "when its sender stops waiting for it, instead of in the worker's "
        "memory. Keep it at most [DEFAULT] executor_thread_pool_size, so "
        "that no fetched report waits for a thread.",
    ),
]

AGENT_OPTS = [
    cfg.FloatOpt(
        "report_interval",
        default=1.0,
        min=0.1,
        help="Seconds between state reports (heartbeats) to the scheduler.",
    ),
    cfg.StrOpt(
        "router_driver",
        default="netns",
        choices=[
            ("netns", "Linux network namespaces (needs root and iproute2)"),
            ("fake", "in memory, for tests"),
        ],
        help="How routers are realised on this node.",
    ),
    cfg.StrOpt(
        "namespace_prefix",
        default="qrouter-",
        regex=r"^[A-Za-z0-9_.-]{1,24}$",
        help="Prefix of this agent's router namespaces. Agents sharing a machine "
        "(tests) must use different prefixes; cleanup only touches its own.",
    ),
    cfg.StrOpt(
        "external_bridge",
        default="br-ex",
        regex=r"^[A-Za-z0-9_.-]{1,15}$",
        help="Linux bridge the router gateway ports attach to; created if missing.",
    ),
    cfg.StrOpt(
        "state_dir",
        default="/run/clouddisco",
        help="Node-local directory where the agent and the cleanup service share "
        "the lease and the agent's pid. Must be the same for both.",
    ),
    cfg.FloatOpt(
        "rpc_timeout",
        default=10.0,
        min=0.1,
        help="Seconds the agent waits for a reply to a call (sync, status).",
    ),
    cfg.FloatOpt(
        "resync_interval",
        default=10.0,
        min=1.0,
        help="Seconds between the agent's anti-entropy passes: it compares the "
        "node's router namespaces with what the control plane binds to it, "
        "builds what is missing and removes what is not bound (one "
        "sync_routers call per pass).",
    ),
    cfg.BoolOpt(
        "require_node_guard",
        default=True,
        help="Build routers only while the node guard (clouddisco-cleanup "
        "--daemon, same host, state_dir and namespace_prefix) checks the node. "
        "Without it nobody fences a hung agent's routers. Turn off only for "
        "tests with the fake driver.",
    ),
    cfg.ListOpt(
        "report_endpoints",
        default=[],
        help="Base URLs of clouddisco-api (e.g. http://controller:9797, or the "
        "HAProxy in front of the replicas) to which the agent also sends its "
        "state reports, signed with [health] report_key, when the RPC report "
        "has not been answered within a third of report_interval. Reports then "
        "need neither RabbitMQ nor a scheduler, so a broker or scheduler "
        "outage does not make the node fence itself. Empty: RPC only.",
    ),
    cfg.ListOpt(
        "report_udp_endpoints",
        default=[],
        help="host:port of each scheduler replica's lease receiver ([health] "
        "udp_port). When set, state reports go there first, as one datagram "
        "signed with [health] report_key, and RPC (and HTTP, with "
        "report_endpoints) become the fallbacks after a third of "
        "report_interval. Each agent starts with the replica its host name "
        "hashes to, so the replicas share the agents. This is the path that "
        "scales: a replica writes the reports that arrive together in one "
        "transaction. Empty: RPC first.",
    ),
    cfg.BoolOpt(
        "kernel_lease",
        default=True,
        help="Give every gateway address a kernel lifetime (valid_lft) that the "
        "agent and the node guard renew with the lease, so that the kernel "
        "itself removes the addresses if both processes die; bounded by "
        "[health] agent_down_time, which must be the server's value. Off: "
        "the addresses are permanent and only the processes enforce the lease.",
    ),
    cfg.FloatOpt(
        "guard_timeout",
        default=1.0,
        min=0.1,
        help="Seconds after the node guard's last check at which the agent "
        "counts it as stale (keep it several [cleanup] check_interval).",
    ),
]

HEALTH_OPTS = [
    cfg.FloatOpt(
        "agent_down_time",
        default=3.5,
        min=0.2,
        help="Seconds after the last received state report at which an agent is "
        "declared dead and its routers are moved. Counted from when the "
        "server *received* the report. Must exceed lease_time + lease_margin, "
        "so that a node whose lease ran out has fenced itself before its "
        "routers start elsewhere; with [agent] kernel_lease, at least "
        "lease_time + 1.45 s, so that the kernel's whole-second address "
        "lifetimes end after the lease and not before (3 s left them as "
        "little as 0.55 s of slack for a late acknowledgement).",
    ),
    cfg.FloatOpt(
        "lease_time",
        default=2.0,
        min=0.1,
        help="Seconds a node may keep serving its routers after *sending* a state "
        "report that the server acknowledged (counted on the node's monotonic "
        "clock). When it runs out, the node's clouddisco-cleanup removes its "
        "routers on its own.",
    ),
    cfg.FloatOpt(
        "lease_margin",
        default=0.5,
        min=0.0,
        help="Least slack between lease_time and agent_down_time: covers message "
        "delay and how late the node's cleanup service notices expiry.",
    ),
    cfg.FloatOpt(
        "max_dead_fraction",
        default=0.5,
        min=0.0,
        max=1.0,
        help="Circuit breaker: when more than this share of the enabled agents "
        "look dead at once, the monitor moves nothing and records an event: "
        "the likelier fault is the monitor's own network, broker or database.",
    ),
    cfg.FloatOpt(
        "check_interval",
        default=0.5,
        min=0.05,
        help="Seconds between health monitor passes.",
    ),
    cfg.StrOpt(
        "report_key",
        secret=True,
        help="Shared secret that signs (HMAC-SHA256) the state reports agents send "
        "over HTTP ([agent] report_endpoints) and UDP ([agent] "
        "report_udp_endpoints), and the answers to them. Set the same value on "
        "the API and scheduler replicas and every network node. Unset: the API "
        "refuses such reports (404), the scheduler runs no UDP receiver and "
        "agents report over RPC only.",
    ),
    cfg.HostAddressOpt(
        "udp_bind_host",
        default="0.0.0.0",
        help="Address on which each scheduler replica receives state reports "
        "over UDP ([agent] report_udp_endpoints). Only with report_key set.",
    ),
    cfg.PortOpt(
        "udp_port",
        default=9798,
        help="UDP port of the scheduler's lease receiver. 0: no receiver. "
        "Only with report_key set.",
    ),
    cfg.FloatOpt(
        "pending_retry_time",
        default=10.0,
        min=1.0,
        help="A router left PENDING (or DELETING) this many seconds without an "
        "answer from its agent is sent to it again; a router with no binding "
        "is placed again.",
    ),
]

CLEANUP_OPTS = [
    cfg.FloatOpt(
        "restart_grace",
        default=5.0,
        min=0.1,
        help="Seconds the agent process may stay down (crashed, restarting) before "
        "the node fences itself and reports it, so its routers move at once. "
        "While the agent restarts within this time, the cleanup service keeps "
        "the node's lease alive and nothing moves.",
    ),
    cfg.FloatOpt(
        "check_interval",
        default=0.1,
        min=0.01,
        help="Seconds between the cleanup service's checks of the agent and the lease.",
    ),
    cfg.FloatOpt(
        "server_timeout",
        default=10.0,
        min=0.1,
        help="Seconds clouddisco-cleanup waits for the scheduler to say which "
        "routers this host still owns.",
    ),
]

# Only clouddisco's own options of [database]; oslo.db's are registered by
# clouddisco.conf.register and all of them are applied by
# clouddisco.db.api.Database.from_conf.
DATABASE_OPTS = [
    cfg.FloatOpt(
        "reconnect_retry_time",
        default=2.5,
        min=0.0,
        max=4.0,
        help="Seconds for which a transaction that could not reach the "
        "database is tried again (waiting 50 ms, doubling to 0.5 s) before the "
        "caller gets 'database unavailable' (the API answers 503 with "
        "Retry-After; the health monitor logs one line and moves nothing). "
        "It covers a writer failover behind HAProxy (1-2 s): connections "
        "refused or lost (MySQL errors 2002, 2003, 2006, 2013) and a Galera "
        "node outside the Primary Component (1047, 1180). A transaction whose "
        "COMMIT lost its connection may have been applied: it is tried again "
        "only where that cannot apply a write twice, otherwise the caller is "
        "told the outcome is unknown; the health monitor's failover decisions "
        "are never retried across a lost connection (clouddisco.db.retry says "
        "why for each). Deadlocks and Galera certification conflicts (1213) "
        "are retried 8 times regardless. 0: no retry of unreachable "
        "databases. At most 4, so that the API answers within 5 s. oslo.db's "
        "use_db_reconnect, db_retry_interval, db_inc_retry_interval, "
        "db_max_retry_interval and db_max_retries are not used by clouddisco "
        "(a warning at start-up when set): their whole seconds and defaults "
        "of minutes do not fit this budget.",
    ),
]

GROUPS = {
    "DEFAULT": DEFAULT_OPTS,
    "api": API_OPTS,
    "scheduler": SCHEDULER_OPTS,
    "agent": AGENT_OPTS,
    "health": HEALTH_OPTS,
    "cleanup": CLEANUP_OPTS,
    "database": DATABASE_OPTS,
}


def register_opts(conf: cfg.ConfigOpts) -> None:
    for group, opts in GROUPS.items():
        conf.register_opts(opts, group=None if group == "DEFAULT" else group)


def list_opts():
    """Entry point for oslo-config-generator (``oslo.config.opts``)."""
    return [(None if g == "DEFAULT" else g, opts) for g, opts in GROUPS.items()]
