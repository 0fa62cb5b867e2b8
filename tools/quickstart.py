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
    step(f"clouddisco is up: API {cloud.api_url}, scheduler, agents "
         f"{', '.join(cloud.host(a) for a in cloud.agent_names)}; "
         f"database {cloud.db.name}, bridge {cloud.bridge.name}")
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
        moved = cloud.wait_router(router["id"], agent_host=cloud.host(
            next(a for a in cloud.agent_names if a != first)), timeout=60)
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="clouddisco quick start")
    parser.add_argument("--keep-running", action="store_true",
                        help="leave everything running after the demo, until Ctrl-C")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    step("starting MariaDB database, RabbitMQ vhost, API, scheduler and two L3 agents")
    try:
        with cloud_mod.Cloud(agents=("agent-1", "agent-2")) as cloud:
            demo(cloud)
            if args.keep_running:
                step("still running; try:")
                print(f"    curl -s -H 'X-Project-Id: demo' -H 'X-Roles: admin' "
                      f"{cloud.api_url}/v1/agents")
                print(f"    logs and configs: {cloud.tmp}")
                print("    press Ctrl-C to stop everything")
                while True:
                    time.sleep(3600)
            step("stopping everything the quick start started")
    except KeyboardInterrupt:
        print("\ninterrupted: everything the quick start started was stopped and removed")
        return 130
    print("done: processes stopped, namespaces, bridge, database and vhost removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
