"""How long the netns router driver takes to create, adopt and remove N routers.

Uses a private bridge ``cdt<hex>`` and prefix ``cdt-<hex>-`` with addresses in
10.250.0.0/16, and removes everything it made in ``finally``.

    sudo .venv/bin/python -m bench.netns_ops --routers 1000

Prints the seconds per phase and the gratuitous ARP counts, and keeps the
latest run per router count in bench/results/netns_ops.json. ``announce``
is the time from ensure's return until its gratuitous ARPs (which go out in
the background) are done; the bench waits for them before going on so that
the next phases neither compete with them nor remove routers under them.
"""

import argparse
import dataclasses
import datetime
import json
import os
import secrets
import subprocess
import sys
import time
import uuid

from clouddisco.drivers import base
from clouddisco.drivers import netns

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def make_specs(n: int) -> list[base.RouterSpec]:
    return [base.RouterSpec(id=str(uuid.uuid4()), gateway_ip=f"10.250.{i // 250}.{i % 250 + 1}",
                            gateway_prefixlen=16,
                            gateway_mac=f"fa:16:3e:00:{i // 256 % 256:02x}:{i % 256:02x}")
            for i in range(n)]


def timed(fn, *args):
    start = time.monotonic()
    result = fn(*args)
    return time.monotonic() - start, result


def cleanup(driver: netns.NetnsRouterDriver) -> None:
    """Remove whatever is left under the prefix, then the bridge."""
    driver.wait_for_announcements(60)
    prefix = driver.namespace_prefix
    left = [n for n in os.listdir(netns.NETNS_DIR) if n.startswith(prefix)] \
        if os.path.isdir(netns.NETNS_DIR) else []
    if left:
        subprocess.run(["ip", "-force", "-batch", "-"], capture_output=True, text=True,
                       input="".join(f"netns del {n}\n" for n in left))
    # Host veths go with their namespaces, asynchronously; give the kernel a moment.
    hosts = {netns.host_veth_name(prefix, n[len(prefix):]) for n in left}
    deadline = time.monotonic() + 10
    while hosts and time.monotonic() < deadline:
        out = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True,
                             text=True).stdout
        hosts = {h for h in hosts if f" {h}@" in out}
        time.sleep(0.1)
    for host in hosts:
        subprocess.run(["ip", "link", "del", host], capture_output=True)
    subprocess.run(["ip", "link", "del", driver.external_bridge], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", type=int, default=200)
    parser.add_argument("--output", default=os.path.join(RESULTS, "netns_ops.json"))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root to create network namespaces", file=sys.stderr)
        return 2

    tag = secrets.token_hex(4)
    driver = netns.NetnsRouterDriver(f"cdt-{tag}-", f"cdt{tag}")
    specs = make_specs(args.routers)
    ids = [s.id for s in specs]
    try:
        ensure_s, created = timed(driver.ensure, specs)
        announce_s, announced = timed(driver.wait_for_announcements, 120)
        listed = len(driver.list_routers())
        # A restarted agent adopting what exists: nothing may change.
        adopt_s, adopted = timed(driver.ensure, specs)
        # What the agent and the node guard each do on every lease renewal
        # (clouddisco.drivers.lifetimes): the CPU it costs, per router.
        cpu0 = time.process_time()
        renew_s, renewed = timed(driver.renew_address_lifetimes, 2)
        renew_cpu_s = time.process_time() - cpu0
        remove_s, removed = timed(driver.remove, ids)
    finally:
        cleanup(driver)
    garp = dataclasses.asdict(driver.garp_counts())

    errors = {
        "ensure": sum(1 for e in created.values() if e),
        "ensure_again": sum(1 for e in adopted.values() if e),
        "remove": sum(1 for e in removed.values() if e),
    }
    run = {
        "routers": args.routers,
        "ensure_s": round(ensure_s, 3),
        "announce_s": round(announce_s, 3),
        "announce_finished": announced,
        "garp": garp,
        "ensure_again_s": round(adopt_s, 3),
        "remove_s": round(remove_s, 3),
        "renew_lifetimes_s": round(renew_s, 3),
        "renew_lifetimes_cpu_s": round(renew_cpu_s, 3),
        "renewed": renewed,
        "listed_after_ensure": listed,
        "errors": errors,
        "first_error": next((e for e in created.values() if e), None),
        "loadavg_1m": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    print(f"{args.routers} routers: ensure {ensure_s:.2f}s, announce {announce_s:.2f}s more, "
          f"ensure again {adopt_s:.2f}s, remove {remove_s:.2f}s, errors {errors}")
    print(f"address lifetimes renewed: {renewed} in {renew_s * 1000:.0f} ms "
          f"({renew_cpu_s * 1000:.0f} ms CPU) per lease renewal")
    print(f"gratuitous ARP: {garp['sent']} frames sent, {garp['retried']} retried, "
          f"{garp['dropped']} dropped; routers: {garp['announced']} announced, "
          f"{garp['failed']} failed, {garp['skipped']} skipped")

    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    try:
        with open(args.output) as f:
            results = json.load(f)
    except (OSError, ValueError):
        results = {}
    results[str(args.routers)] = run  # latest run per router count
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
        f.write("\n")
    ok = not any(errors.values()) and listed == args.routers and garp["failed"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
