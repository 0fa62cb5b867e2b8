"""The quick start: a real clouddisco on one machine, and one failover to watch.

Started by tools/quickstart.sh, which prepares the machine first.
"""

import argparse
import json
import signal
import sys
import time

from lab import cloud as cloud_mod
from lab import netlab


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def demo(cloud: cloud_mod.Cloud) -> None:
    step(f"clouddisco is up: API {cloud.api_url} (tokens of Keystone {cloud.keystone.url}), "
         f"agents "
         f"{', '.join(cloud.host(a) for a in cloud.agent_names)}; "
         f"database {cloud.db_name}, bridge {cloud.bridge.name}")
    for host, agent in sorted(cloud.agents().items()):
        print(f"    agent {host}: alive={agent['alive']} routers={agent['router_count']}")

    step("POST /v1/routers {\"name\": \"demo\"}")
    router = cloud.create_router("demo")
    print(f"    router {router['id']} gateway {router['external_gateway_ip']} "
          f"status {router['status']}")
    router = cloud.wait_router(router["id"])
    first = cloud.agent_of(router)
    print(f"    ACTIVE on {router['agent_host']} "
          f"(namespace {cloud.namespace(first, router['id'])})")

    ip = router["external_gateway_ip"]
    step(f"pinging {ip} every 20 ms from probe namespace {cloud.probe.name}")
    with netlab.Pinger(cloud.probe, ip) as pinger:
        netlab.wait_for(lambda: len(pinger.replies()) > 10, 10, what="ping replies")
        print(f"    {len(pinger.replies())} replies so far")

        step(f"losing node {router['agent_host']}: kill -9 of its agent and removal "
             "of its router namespaces")
        lost_at = cloud.lose_node(first)
        lost_host = router["agent_host"]
        moved = netlab.wait_for(
            lambda: (r := cloud.router(router["id"])) and r["status"] == "ACTIVE"
            and r["agent_host"] != lost_host and r, 60, 0.1,
            f"router {router['id']} to be ACTIVE on another node")
        # The deleted namespace may answer for a few ms while the kernel tears
        # it down; the gap closes with the first reply after the new copy is up.
        back_at = pinger.wait_reply_after(time.time(), timeout=60)
        gap = pinger.max_gap(after=lost_at - 0.05, before=back_at)
    print(f"    router now ACTIVE on {moved['agent_host']}")
    print(f"    pings stopped for {gap:.2f} s (first reply {back_at - lost_at:.2f} s "
          "after the loss)")
    event = cloud.events(router["id"])[0]
    step("GET /v1/failover-events?router_id=" + router["id"])
    print("    " + json.dumps({k: event[k] for k in (
        "cause", "detected_by", "last_heartbeat_at", "detected_at", "rescheduled_at",
        "active_at")}, indent=2).replace("\n", "\n    "))


def ha_demo(cloud: cloud_mod.Cloud) -> None:
    """Lose a Galera node and a RabbitMQ node under 20 ms pings: the
    control plane fails over, the data plane does not notice."""
    step(f"HA topology: Galera nodes on ports "
         f"{', '.join(str(cloud.galera.port(n)) for n in cloud.galera.nodes())} "
         f"(written through HAProxy port {cloud.haproxy.port('galera')}), RabbitMQ "
         f"nodes {', '.join(cloud.rabbit.nodenames)}, API replicas behind HAProxy "
         f"at {cloud.api_url}")
    router = cloud.wait_router(cloud.create_router("ha-demo")["id"])
    ip = router["external_gateway_ip"]
    print(f"    router {router['id']} ACTIVE on {router['agent_host']}, gateway {ip}")
    step(f"pinging {ip} every 20 ms from probe namespace {cloud.probe.name}")
    with netlab.Pinger(cloud.probe, ip) as pinger:
        netlab.wait_for(lambda: len(pinger.replies()) > 10, 10, what="ping replies")
        for name, kill, restart in (
                ("Galera node 1 (HAProxy's writer)",
                 lambda: cloud.galera.kill(cloud.galera.nodes()[0]),
                 lambda: cloud.galera.start_node(cloud.galera.nodes()[0])),
                ("RabbitMQ node 1 (first in transport_url)",
                 lambda: cloud.rabbit.kill(1),
                 lambda: cloud.rabbit.start_node(1))):
            step(f"kill -9 of {name}; started again after 5 s")
            killed_at = time.time()
            kill()
            time.sleep(5)
            restart()
            created = cloud.wait_router(cloud.create_router("after")["id"], timeout=60)
            gap = pinger.max_gap(after=killed_at - 0.05)
            now = cloud.router(router["id"])
            print(f"    longest ping gap since the kill: {gap * 1000:.0f} ms; router still "
                  f"on {now['agent_host']} ({now['status']}); failover events: "
                  f"{len(cloud.events(router['id']))}")
            print(f"    a router created after the restart is ACTIVE on "
                  f"{created['agent_host']}")


def try_the_cli(cloud: cloud_mod.Cloud, running: bool) -> None:
    """The openstack commands to try, as the admin and as a project member,
    with the OS_* variables of each (Keystone's catalog leads the client to
    the API: service type l3-ha)."""
    step("try the openstack CLI (the clouddisco plugin) "
         + ("in another shell:" if running else
            "next time, with --keep-running (everything is stopped now):"))
    print(f"    export PATH={cloud_mod.BIN}:$PATH   # the venv's openstack")
    for user, what in (("admin", "the cloud's admin: every project, and where routers run"),
                       ("demo", "a member of project demo: its own routers only")):
        print(f"\n    # as {user}, {what}")
        for key, value in cloud.keystone.auth_env(user).items():
            print(f"    export {key}={value}")
        print(f"    openstack clouddisco router create {user}-router")
        print("    openstack clouddisco router list")
    print("\n    # or with curl and a token: openstack token issue -f value -c id")
    print(f"    curl -s -H \"X-Auth-Token: $(openstack token issue -f value -c id)\" "
          f"{cloud.api_url}/v1/routers")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="clouddisco quick start")
    parser.add_argument("--keep-running", action="store_true",
                        help="leave everything running after the demo, until Ctrl-C")
    parser.add_argument("--ha", action="store_true",
                        help="the HA topology: 3-node Galera and RabbitMQ clusters, "
                             "HAProxy, two API and two scheduler replicas, three agents; "
                             "kills a Galera node and a RabbitMQ node while pinging")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    if args.ha:
        step("starting a 3-node Galera cluster, a 3-node RabbitMQ cluster, HAProxy, two "
             "API and two scheduler replicas and three L3 agents (about a minute)")
        options = {"topology": "ha", "agents": ("agent-1", "agent-2", "agent-3")}
    else:
        step("starting Keystone, MariaDB database, RabbitMQ vhost, API, scheduler and two "
             "L3 agents")
        options = {"agents": ("agent-1", "agent-2")}
    # The API validates Keystone tokens, as in production.
    options["auth"] = "keystone"
    try:
        with cloud_mod.Cloud(**options) as cloud:
            if args.ha:
                ha_demo(cloud)
            demo(cloud)
            try_the_cli(cloud, args.keep_running)
            if args.keep_running:
                step("still running")
                print(f"    Keystone {cloud.keystone.url}, API {cloud.api_url}")
                print(f"    logs and configs: {cloud.tmp} (Keystone's: {cloud.keystone.tmp})")
                print("    press Ctrl-C to stop everything")
                while True:
                    time.sleep(3600)
            step("stopping everything the quick start started")
    except KeyboardInterrupt:
        print("\ninterrupted: everything the quick start started was stopped and removed")
        return 130
    print("done: processes stopped; namespaces, bridge, databases, brokers removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
