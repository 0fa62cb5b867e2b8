"""A whole clouddisco on one machine, from real parts: the lab that the
functional tests, bench/ and the quick start share.

Two topologies:

- ``single`` (the default): MariaDB (a throw-away database on the machine's
  server), RabbitMQ (a private vhost on the machine's broker, or any
  transport URL, e.g. a PrivateRabbit), one API replica.
- ``ha``: the production topology on loopback: a private 3-node MariaDB
  Galera cluster (``lab.galera``) written through one HAProxy writer
  frontend, a private 3-node RabbitMQ cluster with quorum queues
  (``lab.rabbitcluster``) named host by host in ``transport_url``, and
  HAProxy in front of two or more API replicas (``lab.haproxy``); two
  scheduler replicas and three agents with their node guards by default.
  Never the machine's own MariaDB or RabbitMQ.

Both run real ``clouddisco-*`` processes started from this venv and real
namespaces on a private bridge. Every piece is removed again, also when a test
fails; the process logs are attached to a failing test.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.parse

import fixtures
import requests

from lab import galera
from lab import haproxy
from lab import keystone as keystone_mod
from lab import netlab
from lab import rabbitcluster
from lab import tcpproxy

BIN = os.path.dirname(sys.executable)
CIDR = "10.250.0.0/16"
PROBE_CIDR = "10.250.0.1/16"
# lab/clockskew/sitecustomize.py: first on PYTHONPATH of a skewable process.
CLOCKSKEW_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clockskew")
ADMIN_HEADERS = {"X-Project-Id": "functional", "X-Roles": "admin"}


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                   timeout=60)


class Process:
    """One clouddisco process, in its own session so nothing it spawns survives it."""

    def __init__(self, name: str, argv: list[str], log_path: str,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env  # None: this process's environment
        self.popen: subprocess.Popen | None = None

    def start(self) -> Process:
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                      env=self.env)
        log.close()
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, sig)

    def children(self) -> dict[int, str]:
        """Live child processes (the scheduler's cotyledon workers) by pid,
        with their process titles (e.g. "clouddisco-scheduler: state reports")."""
        if not self.alive():
            return {}
        out = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/stat") as f:
                    # "pid (comm) state ppid ...": comm may hold spaces.
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid != self.popen.pid:
                    continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    out[int(entry)] = f.read().replace(b"\0", b" ").decode().strip()
        return out

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.alive():
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def kill_group(self) -> None:
        """kill -9 of the process and everything in its session (the
        scheduler's worker processes), and reap it."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> int | None:
        if not self.alive():
            return self.popen.returncode if self.popen else None
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None


TOPOLOGIES = ("single", "ha")
AUTH_STRATEGIES = ("noauth", "keystone")

# [oslo_messaging_rabbit]: clouddisco's own defaults (clouddisco.conf.
# RABBIT_DEFAULTS, measured by bench/rabbit_failover.py) on one broker; on a
# cluster (topology "ha") also queues replicated on a quorum of nodes, so
# that one node's loss loses no queue and no message. That includes the
# transient reply queues: a classic reply queue homed on a killed node was
# sometimes gone for good after the client had already re-declared it on
# reconnect (the cluster deletes a dead node's transient queues a moment
# later), and that agent's every call then timed out for minutes
# (tests.ha.test_server_loss, CI 2026-12-04).
RABBIT_OPTIONS: dict[str, str] = {}
RABBIT_HA_OPTIONS = {**RABBIT_OPTIONS, "rabbit_quorum_queue": "true",
                     "rabbit_transient_quorum_queue": "true"}


class Cloud(fixtures.Fixture):
    """API + scheduler + L3 agents (netns driver) on a private bridge.

    ``agents`` names the agents; each gets host ``<name>`` within this cloud
    (made unique per cloud) and namespace prefix ``<cloud token>-<name>-``.
    ``topology`` is "single" or "ha" (see the module doc); ``apis`` is the
    number of API replicas (1 for "single", 2 for "ha" unless given).
    """

    def __init__(self, agents=None, transport_url: str | None = None,
                 report_interval: float = 1.0, agent_down_time: float = 3.5,
                 check_interval: float = 0.5, lease_time: float = 2.0,
                 restart_grace: float = 5.0, guards: bool = True,
                 schedulers: int | None = None,
                 max_dead_fraction: float = 0.5, proxied_agents: tuple[str, ...] = (),
                 proxied_schedulers: tuple[int, ...] = (), debug: bool = False,
                 http_reports: bool = True, udp_reports: bool | None = None,
                 kernel_lease: bool = True, db_proxy: bool = False,
                 clock_skew: bool = False, topology: str = "single",
                 apis: int | None = None, auth: str = "noauth",
                 keystone: keystone_mod.Keystone | None = None) -> None:
        super().__init__()
        if topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, not {topology!r}")
        if auth not in AUTH_STRATEGIES:
            raise ValueError(f"auth must be one of {AUTH_STRATEGIES}, not {auth!r}")
        if keystone is not None and auth != "keystone":
            raise ValueError("a Keystone is for auth='keystone'")
        # "noauth": the API trusts X-Project-Id and X-Roles (ADMIN_HEADERS).
        # "keystone": it validates tokens of ``keystone`` (a lab.keystone
        # fixture shared by the caller, or one of this cloud's own), in whose
        # catalog the API is registered; api() sends an admin token.
        self.auth = auth
        self.keystone = keystone
        self._admin_token: tuple[str, float] | None = None
        ha = topology == "ha"
        if ha and (transport_url or db_proxy or proxied_agents or proxied_schedulers):
            raise ValueError("topology 'ha' brings its own database and brokers: "
                             "no transport_url, db_proxy or proxied links")
        self.topology = topology
        self.api_count = apis or (2 if ha else 1)
        if self.api_count > 1 and not ha:
            raise ValueError("several API replicas need topology 'ha' (HAProxy)")
        # agents=() is a control plane with no agent (not the default two).
        self.agent_names = list(agents if agents is not None
                                else (("a", "b", "c") if ha else ("a", "b")))
        self.external_transport_url = transport_url
        self.report_interval = report_interval
        self.agent_down_time = agent_down_time
        self.check_interval = check_interval
        self.lease_time = lease_time
        self.restart_grace = restart_grace
        self.guards = guards
        self.scheduler_count = schedulers or (2 if ha else 1)
        self.max_dead_fraction = max_dead_fraction
        # Agents also report over HTTP to the API when RPC does not answer
        # ([agent] report_endpoints), as a production node would be set up.
        self.http_reports = http_reports
        # Agents report over UDP to the schedulers' lease receivers first
        # ([agent] report_udp_endpoints), RPC and HTTP being the fallbacks.
        # On "ha", as a production node is set up: the path that rides
        # through a database outage (outage notices).
        self.udp_reports = ha if udp_reports is None else udp_reports
        # Gateway addresses carry a kernel lifetime renewed with the lease
        # ([agent] kernel_lease, the product's default).
        self.kernel_lease = kernel_lease
        # Every process reaches the database through a TcpProxy that a test
        # can cut (cut_db): a database outage or stall, for all replicas.
        self.db_proxy = db_proxy
        # Scheduler replicas whose wall clock a test can step (skew_clock),
        # through lab/clockskew/sitecustomize.py.
        self.clock_skew = clock_skew
        # Processes that reach RabbitMQ through a TcpProxy a test can cut
        # (agents by name, schedulers by number); the agent's node guard uses
        # its agent's proxy, as it would share the node's network.
        self.proxied = {f"agent-{a}" for a in proxied_agents} | {
            f"scheduler-{n}" for n in proxied_schedulers}
        self.proxies: dict[str, tcpproxy.TcpProxy] = {}
        self.debug = debug
        self.token = "cdt" + secrets.token_hex(3)
        self.processes: dict[str, Process] = {}
        self.galera: galera.GaleraCluster | None = None
        self.rabbit: rabbitcluster.RabbitCluster | None = None
        self.haproxy: haproxy.HAProxy | None = None

    # ----------------------------------------------------------------- set-up

    def _setUp(self) -> None:
        self.tmp = self.useFixture(fixtures.TempDir()).path
        if self.auth == "keystone" and self.keystone is None:
            self.keystone = self.useFixture(keystone_mod.Keystone())
        # Every replica's own port; the URL clients use is HAProxy's on "ha".
        self.api_ports = {n: netlab.free_port() for n in range(1, self.api_count + 1)}
        self.api_port = self.api_ports[1]
        if self.topology == "ha":
            self._set_up_ha_servers()
        else:
            self._set_up_single_servers()
        if self.keystone is not None:
            # Gone with this cloud: a Keystone shared by several clouds in
            # turn lists only the live one's API in its catalog.
            endpoint = self.keystone.register_endpoint(self.api_url)
            self.addCleanup(self.keystone.delete_endpoint, endpoint)
        self.bridge = netlab.Bridge()
        self.addCleanup(self.bridge.delete)
        self.probe = netlab.ProbeNamespace(self.bridge, PROBE_CIDR)
        self.addCleanup(self.probe.delete)
        self.addCleanup(self._remove_router_namespaces)
        self.addCleanup(self._stop_all)
        self.udp_ports = {n: netlab.free_port() if self.udp_reports else 0
                          for n in range(1, self.scheduler_count + 1)}
        self.write_config("common", host="controller")
        subprocess.run([f"{BIN}/clouddisco-db-manage", "--config-file", self.config_path(
            "common"), "upgrade", "head"], check=True, capture_output=True, timeout=120)
        for n in self.api_ports:
            self.start_api(n)
        for n in range(1, self.scheduler_count + 1):
            self.start_scheduler(n, self._proxied_url(f"scheduler-{n}"))
        for name in self.agent_names:
            self.start_agent(name, self._proxied_url(f"agent-{name}"))
            if self.guards:
                self.start_guard(name)
        for n in self.api_ports:
            self.wait_api_replica(n)
        netlab.wait_for(self._api_up, 60, 0.2, "clouddisco-api to answer")
        netlab.wait_for(lambda: self.alive_hosts() >= {self.host(n) for n in self.agent_names},
                        60, 0.2, "every agent to report")

    def _set_up_single_servers(self) -> None:
        """A database on the machine's MariaDB, a vhost on its RabbitMQ."""
        self.db = netlab.TempDatabase()
        self.addCleanup(self.db.drop)
        self.db_name = self.db.name
        self.db_url = self.db.url
        if self.db_proxy:
            proxy = tcpproxy.TcpProxy(self.db.host, self.db.port).start()
            self.addCleanup(proxy.close)
            self.proxies["database"] = proxy
            self.db_url = self.db.url.replace(f"@{self.db.host}:{self.db.port}/",
                                              f"@127.0.0.1:{proxy.port}/")
        self.transport_url = self.external_transport_url or self._make_vhost()
        self.api_url = f"http://127.0.0.1:{self.api_port}"

    def _set_up_ha_servers(self) -> None:
        """A private Galera cluster and RabbitMQ cluster (started side by
        side: each takes 10-25 s), and HAProxy in front of Galera and the
        API replicas."""
        self.galera = galera.GaleraCluster()
        self.addCleanup(self.galera.destroy)
        self.rabbit = rabbitcluster.RabbitCluster()
        self.addCleanup(self.rabbit.destroy)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for future in [pool.submit(self.galera.start), pool.submit(self.rabbit.start)]:
                future.result()
        self.db_name = "clouddisco_" + self.token
        self.galera.create_database(self.db_name)
        self.haproxy = haproxy.HAProxy()
        self.addCleanup(self.haproxy.destroy)
        self.haproxy.add_tcp_writer("galera", self.galera.servers())
        self.haproxy.add_http_balancer("api", {
            f"api{n}": ("127.0.0.1", port) for n, port in self.api_ports.items()},
            check_path="/")
        self.haproxy.start()
        self.db_url = self.galera.url_for_port(self.haproxy.port("galera"), self.db_name)
        self.transport_url = self.rabbit.transport_url
        self.api_url = f"http://127.0.0.1:{self.haproxy.port('api')}"

    def _proxied_url(self, process: str) -> str | None:
        if process not in self.proxied:
            return None
        url = urllib.parse.urlsplit(self.transport_url)
        proxy = tcpproxy.TcpProxy(url.hostname, url.port or 5672).start()
        self.addCleanup(proxy.close)
        self.proxies[process] = proxy
        return self._url_through(proxy)

    def _url_through(self, proxy: tcpproxy.TcpProxy) -> str:
        url = urllib.parse.urlsplit(self.transport_url)
        return urllib.parse.urlunsplit(url._replace(
            netloc=f"{url.username}:{url.password}@127.0.0.1:{proxy.port}"))

    def _restart_url(self, process: str, transport_url: str | None) -> str | None:
        # A proxied process started again must go through its proxy again:
        # otherwise a restarted agent (and its node guard, which shares its
        # config) would silently bypass every later cut.
        if transport_url is None and process in self.proxies:
            return self._url_through(self.proxies[process])
        return transport_url

    def proxy(self, process: str) -> tcpproxy.TcpProxy:
        """The proxy of ``agent-<name>`` or ``scheduler-<n>`` (their broker
        link), or ``agent-<name>-api`` (a proxied agent's HTTP reports)."""
        return self.proxies[process]

    def _report_endpoint(self, name: str) -> str | None:
        """Where agent ``name`` sends HTTP reports: the API, through a proxy of
        its own when the agent is proxied (its node's whole network)."""
        if not self.http_reports:
            return None
        if self.topology == "ha":
            return self.api_url  # HAProxy: the API's virtual address
        key = f"agent-{name}-api"
        if f"agent-{name}" in self.proxied and key not in self.proxies:
            proxy = tcpproxy.TcpProxy("127.0.0.1", self.api_port).start()
            self.addCleanup(proxy.close)
            self.proxies[key] = proxy
        port = self.proxies[key].port if key in self.proxies else self.api_port
        return f"http://127.0.0.1:{port}"

    def _udp_endpoints(self, name: str) -> list[str]:
        """Where agent ``name`` sends UDP reports: every scheduler's lease
        receiver, each through a relay of its own when the agent is proxied."""
        if not self.udp_reports:
            return []
        endpoints = []
        for n, port in self.udp_ports.items():
            key = f"agent-{name}-udp-{n}"
            if f"agent-{name}" in self.proxied and key not in self.proxies:
                self.proxies[key] = tcpproxy.UdpProxy("127.0.0.1", port).start()
                self.addCleanup(self.proxies[key].close)
            via = self.proxies[key].port if key in self.proxies else port
            endpoints.append(f"127.0.0.1:{via}")
        return endpoints

    def _node_links(self, name: str) -> list:
        """Every proxied link of agent ``name``'s node to the control plane."""
        keys = [f"agent-{name}", f"agent-{name}-api",
                *(f"agent-{name}-udp-{n}" for n in self.udp_ports)]
        return [self.proxies[k] for k in keys if k in self.proxies]

    def cut_db(self, mode: str = "reset") -> None:
        """The database unreachable for every process (``db_proxy=True``):
        "reset" refuses connections, "drop" stalls them."""
        self.proxies["database"].cut(mode)

    def restore_db(self) -> None:
        self.proxies["database"].restore()

    def cut_off(self, name: str, mode: str = "reset") -> None:
        """Cut a proxied agent's node off from the whole control plane."""
        for link in self._node_links(name):
            link.cut(mode)

    def reconnect(self, name: str) -> None:
        for link in self._node_links(name):
            link.restore()

    def _make_vhost(self) -> str:
        vhost = self.token
        rabbitmqctl("add_vhost", vhost)
        self.addCleanup(rabbitmqctl, "delete_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return f"rabbit://guest:guest@127.0.0.1:5672/{vhost}"

    def host(self, agent: str) -> str:
        return f"{self.token}-{agent}"

    def prefix(self, agent: str) -> str:
        return f"{self.token}-{agent}-"

    def config_path(self, name: str) -> str:
        return os.path.join(self.tmp, f"{name}.conf")

    def state_dir(self, agent: str) -> str:
        return os.path.join(self.tmp, f"state-{agent}")

    def write_config(self, name: str, host: str, prefix: str = "qrouter-",
                     transport_url: str | None = None, state_dir: str | None = None,
                     report_endpoint: str | None = None,
                     udp_endpoints: tuple[str, ...] | list[str] = (), udp_port: int = 0,
                     api_port: int | None = None) -> str:
        rabbit = RABBIT_HA_OPTIONS if self.topology == "ha" else RABBIT_OPTIONS
        text = f"""
[DEFAULT]
host = {host}
transport_url = {transport_url or self.transport_url}
debug = {self.debug}
[database]
connection = {self.db_url}
connection_parameters = connect_timeout=5&read_timeout=5&write_timeout=5
[api]
auth_strategy = {self.auth}
bind_host = 127.0.0.1
bind_port = {api_port or self.api_port}
external_cidr = {CIDR}
external_reserved_ips = {PROBE_CIDR.split('/')[0]}
[agent]
router_driver = netns
namespace_prefix = {prefix}
external_bridge = {self.bridge.name}
report_interval = {self.report_interval}
state_dir = {state_dir or os.path.join(self.tmp, "state")}
report_endpoints = {report_endpoint or ""}
report_udp_endpoints = {",".join(udp_endpoints)}
kernel_lease = {self.kernel_lease}
[health]
report_key = {self.token if self.http_reports or self.udp_reports else ""}
udp_bind_host = 127.0.0.1
udp_port = {udp_port}
agent_down_time = {self.agent_down_time}
check_interval = {self.check_interval}
lease_time = {self.lease_time}
max_dead_fraction = {self.max_dead_fraction}
[scheduler]
replica_down_time = {max(2 * self.check_interval, 1.0)}
[cleanup]
restart_grace = {self.restart_grace}
check_interval = 0.05
[oslo_messaging_rabbit]
""" + "".join(f"{k} = {v}\n" for k, v in rabbit.items())
        if self.keystone is not None:
            text += self.keystone.authtoken_section()
        path = self.config_path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self, name: str, binary: str, config: str = "common",
              extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Process:
        proc = Process(name, [f"{BIN}/{binary}", "--config-file", self.config_path(config),
                              *extra], os.path.join(self.tmp, f"{name}.log"), env)
        self.processes[name] = proc.start()
        return proc

    def start_api(self, n: int = 1) -> Process:
        """API replica ``n`` (process "api" when there is only one)."""
        name = self._api_name(n)
        self.write_config(name, host=f"{self.token}-api-{n}", api_port=self.api_ports[n])
        return self.start(name, "clouddisco-api", config=name)

    def galera_writer(self) -> int:
        """The Galera node HAProxy sends every writer to now (it stays on the
        node it failed over to: no fail-back)."""
        name = self.haproxy.writer("galera") or "node1"
        return int(name.removeprefix("node"))

    def wait_api_replica(self, n: int, timeout: float = 60) -> None:
        """Until API replica ``n`` answers on its own port (not through HAProxy)."""
        netlab.wait_for(lambda: self._api_up(f"http://127.0.0.1:{self.api_ports[n]}"),
                        timeout, 0.2, f"clouddisco-api replica {n} to answer")

    def _api_name(self, n: int) -> str:
        return "api" if self.api_count == 1 else f"api-{n}"

    def api_replica(self, n: int = 1) -> Process:
        return self.processes[self._api_name(n)]

    def start_scheduler(self, n: int, transport_url: str | None = None) -> Process:
        self.write_config(f"scheduler-{n}", host=f"{self.token}-controller-{n}",
                          transport_url=self._restart_url(f"scheduler-{n}", transport_url),
                          udp_port=self.udp_ports.get(n, 0))
        env = None
        if self.clock_skew:
            path = [CLOCKSKEW_DIR, os.environ.get("PYTHONPATH", "")]
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p),
                       CLOUDDISCO_LAB_CLOCK_FILE=self._clock_file(n))
        return self.start(f"scheduler-{n}", "clouddisco-scheduler", config=f"scheduler-{n}",
                          env=env)

    def _clock_file(self, n: int) -> str:
        return os.path.join(self.tmp, f"clock-scheduler-{n}")

    def skew_clock(self, n: int, seconds: float) -> None:
        """Step scheduler ``n``'s wall clock to ``seconds`` off the real one
        (0 heals), as its Python code sees it; needs ``clock_skew=True``."""
        if not self.clock_skew:
            raise RuntimeError("Cloud(clock_skew=True) is needed to skew a clock")
        tmp = self._clock_file(n) + ".new"
        with open(tmp, "w") as f:
            f.write(f"{seconds}\n")
        os.replace(tmp, self._clock_file(n))

    def scheduler(self, n: int = 1) -> Process:
        return self.processes[f"scheduler-{n}"]

    def start_agent(self, name: str, transport_url: str | None = None) -> Process:
        self.write_config(f"agent-{name}", host=self.host(name), prefix=self.prefix(name),
                          transport_url=self._restart_url(f"agent-{name}", transport_url),
                          state_dir=self.state_dir(name),
                          report_endpoint=self._report_endpoint(name),
                          udp_endpoints=self._udp_endpoints(name))
        return self.start(f"agent-{name}", "clouddisco-l3-agent", config=f"agent-{name}")

    def start_guard(self, name: str) -> Process:
        """The node guard (clouddisco-cleanup --daemon) of agent ``name``'s node."""
        return self.start(f"guard-{name}", "clouddisco-cleanup", config=f"agent-{name}",
                          extra=("--daemon",))

    def agent(self, name: str) -> Process:
        return self.processes[f"agent-{name}"]

    def guard(self, name: str) -> Process:
        return self.processes[f"guard-{name}"]

    # ------------------------------------------------------------- tear-down

    def _stop_all(self) -> None:
        for proc in self.processes.values():
            with contextlib.suppress(Exception):
                proc.kill_group()

    def _remove_router_namespaces(self) -> None:
        for ns in netlab.namespaces_with_prefix(self.token + "-"):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def logs(self, tail: int | None = 200_000) -> dict[str, bytes]:
        """The last ``tail`` bytes (None: all) of every process log, by file name."""
        out = {}
        for name in sorted(os.listdir(self.tmp)):
            if name.endswith(".log"):
                with open(os.path.join(self.tmp, name), "rb") as f:
                    data = f.read()
                out[name] = data if tail is None else data[-tail:]
        return out

    # ------------------------------------------------------------------ API

    def api(self, method: str, path: str, json=None, headers=None,
            expect: int | None = None) -> requests.Response:
        resp = requests.request(method, self.api_url + path, json=json,
                                headers=headers or self.admin_headers(), timeout=30)
        if expect is not None and resp.status_code != expect:
            raise AssertionError(f"{method} {path}: expected {expect}, got "
                                 f"{resp.status_code}: {resp.text}")
        return resp

    def admin_headers(self) -> dict[str, str]:
        """What makes a request an admin's: ADMIN_HEADERS with noauth, a
        token of Keystone's admin (renewed every 30 minutes) with keystone."""
        if self.keystone is None:
            return ADMIN_HEADERS
        if self._admin_token is None or time.monotonic() - self._admin_token[1] > 1800:
            self._admin_token = (self.keystone.token("admin"), time.monotonic())
        return {"X-Auth-Token": self._admin_token[0]}

    def _api_up(self, url: str | None = None) -> bool:
        try:
            return requests.get((url or self.api_url) + "/", timeout=2).ok
        except requests.RequestException:
            return False

    def agents(self) -> dict[str, dict]:
        """Agents of this cloud by host."""
        return {a["host"]: a for a in self.api("GET", "/v1/agents", expect=200).json()["agents"]}

    def alive_hosts(self) -> set[str]:
        try:
            return {h for h, a in self.agents().items() if a["alive"]}
        except (requests.RequestException, AssertionError):
            return set()

    def list_routers(self, timeout: float = 5) -> list[dict] | None:
        """Every router the API shows (admin view), or None when it does not
        answer with a list (an outage, a 503): for observers that sample."""
        try:
            resp = requests.get(self.api_url + "/v1/routers?limit=1000",
                                headers=self.admin_headers(), timeout=timeout)
            return resp.json()["routers"] if resp.ok else None
        except (requests.RequestException, ValueError, KeyError):
            return None

    def create_router(self, name: str = "r", **body) -> dict:
        return self.api("POST", "/v1/routers", json={"name": name, **body},
                        expect=201).json()["router"]

    def router(self, router_id: str) -> dict | None:
        resp = self.api("GET", f"/v1/routers/{router_id}")
        if resp.status_code == 404:
            return None
        assert resp.status_code == 200, resp.text
        return resp.json()["router"]

    def wait_router(self, router_id: str, status: str = "ACTIVE", timeout: float = 30,
                    agent_host: str | None = None) -> dict:
        def ready():
            r = self.router(router_id)
            if r and r["status"] == status and (agent_host is None or
                                                 r["agent_host"] == agent_host):
                return r
            return None
        return netlab.wait_for(ready, timeout, 0.1,
                               f"router {router_id} to be {status}"
                               + (f" on {agent_host}" if agent_host else ""))

    def wait_router_gone(self, router_id: str, timeout: float = 30) -> None:
        netlab.wait_for(lambda: self.router(router_id) is None, timeout, 0.1,
                        f"router {router_id} to be deleted")

    def events(self, router_id: str | None = None) -> list[dict]:
        q = f"?router_id={router_id}" if router_id else ""
        return self.api("GET", f"/v1/failover-events{q}", expect=200).json()["failover_events"]

    # ------------------------------------------------------------ data plane

    def namespace(self, agent: str, router_id: str) -> str:
        return self.prefix(agent) + router_id

    def router_namespaces(self, agent: str) -> list[str]:
        return netlab.namespaces_with_prefix(self.prefix(agent))

    def agent_of(self, router: dict) -> str:
        """Agent name (not host) hosting ``router``."""
        for name in self.agent_names:
            if router["agent_host"] == self.host(name):
                return name
        raise AssertionError(f"router {router['id']} is on unknown host "
                             f"{router['agent_host']}")

    def lose_node(self, agent: str) -> float:
        """Simulate losing the agent's node: kill -9 the agent and its node guard
        and make its router namespaces vanish. Returns the wall-clock time of the loss.

        The kernel tears a deleted namespace down asynchronously and it was
        seen answering pings for up to 0.7 s after ``ip netns del``; a lost
        node answers nothing, so every link goes down first (one batch per
        namespace), and the loss is timed at that moment.
        """
        self.agent(agent).kill()
        if f"guard-{agent}" in self.processes:
            self.guard(agent).kill()
        names = self.router_namespaces(agent)
        for ns in names:
            links = subprocess.run(["ip", "-n", ns, "-o", "link", "show"],
                                   capture_output=True, text=True).stdout
            devs = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()]
            subprocess.run(["ip", "-n", ns, "-batch", "-"], input="".join(
                f"link set dev {d} down\n" for d in devs if d != "lo"), text=True,
                capture_output=True)
        lost_at = time.time()
        if names:
            subprocess.run(["ip", "-batch", "-"], input="".join(
                f"netns del {n}\n" for n in names), text=True, check=False,
                capture_output=True)
        return lost_at

