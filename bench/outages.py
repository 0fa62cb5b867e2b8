"""Control-plane outages against a serving cloud: the issue's ride-through
targets, measured rather than asserted.

Each trial builds a fresh 3-agent cloud configured as a production one
would be (UDP reports first, HTTP to the API as a fallback, node guards,
kernel lease), every agent and the scheduler reaching RabbitMQ and every
process reaching MariaDB through a proxy the bench can cut. Six routers are
pinged every 20 ms while one outage runs:

* ``broker``: the cloud's own RabbitMQ (a private node, ``netlab.
  PrivateRabbit``: the machine's is shared) stopped, and started again after
  ``--broker-seconds`` (30).
* ``schedulers``: the scheduler (master and every worker) killed, started
  again after ``--scheduler-seconds`` (30).
* ``database``: MariaDB cut off from every process for ``--db-seconds``
  (10), connections refused (``database``) or stalled (``database-stall``).

For each: node fences, routers moved, the longest ping gap of any router,
how long after the heal the agents' reports were answered by their first
path again, how long until a router created after the heal served (RPC
work resumed), and how the API answered meanwhile.

    sudo PYTHONPATH=$PWD .venv/bin/python -m bench.outages --trials 1

Writes bench/results/outages.json and outages.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Any

import requests

from lab import cloud as cloud_mod
from lab import netlab

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
AGENTS = ("a", "b", "c")
ROUTERS = 6
SCENARIOS = ("broker", "schedulers", "database", "database-stall")
_BACK = re.compile(r"^(\S+ \S+) .*state reports of \S+ are answered over UDP again")


def _log_time(stamp: str) -> float:
    return time.mktime(time.strptime(stamp.split(".")[0], "%Y-%m-%d %H:%M:%S")) + \
        float("0." + stamp.split(".")[1])


def _fences(cloud: cloud_mod.Cloud) -> int:
    count = 0
    for name in cloud.agent_names:
        count += open(cloud.guard(name).log_path).read().count("fencing ")
        count += open(cloud.agent(name).log_path).read().count("router(s) itself")
    return count


def _resumed_after(cloud: cloud_mod.Cloud, healed: float) -> float:
    """Seconds from the heal until the last agent that had fallen back to
    RPC or HTTP was answered over UDP again (0: none fell back)."""
    latest = healed
    for name in cloud.agent_names:
        for line in open(cloud.agent(name).log_path, errors="replace"):
            m = _BACK.match(line)
            if m and _log_time(m.group(1)) >= healed - 0.5:
                latest = max(latest, _log_time(m.group(1)))
    return round(latest - healed, 2)


def _api_codes(cloud: cloud_mod.Cloud, seconds: float) -> dict[str, int]:
    codes: dict[str, int] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            code = str(requests.get(cloud.api_url + "/v1/routers",
                                    headers=cloud_mod.ADMIN_HEADERS, timeout=8).status_code)
        except requests.RequestException as exc:
            code = type(exc).__name__
        codes[code] = codes.get(code, 0) + 1
        time.sleep(0.5)
    return codes


def one_trial(scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    rabbit = None
    if scenario == "broker":
        rabbit = netlab.PrivateRabbit().start()
    try:
        return _trial(scenario, args, rabbit)
    finally:
        if rabbit is not None:
            rabbit.destroy()


def _trial(scenario: str, args: argparse.Namespace,
           rabbit: netlab.PrivateRabbit | None) -> dict[str, Any]:
    with cloud_mod.Cloud(agents=AGENTS, udp_reports=True, db_proxy=True, restart_grace=2.0,
                         transport_url=rabbit.transport_url if rabbit else None) as cloud:
        routers = [cloud.wait_router(cloud.create_router(f"o{i}")["id"], timeout=60)
                   for i in range(ROUTERS)]
        time.sleep(cloud.agent_down_time)  # past the scheduler's start-up hold
        pingers = [netlab.Pinger(cloud.probe, r["external_gateway_ip"]).start()
                   for r in routers]
        try:
            for p in pingers:
                netlab.wait_for(lambda p=p: len(p.replies()) > 5, 10, what="pings")
            fences_before = _fences(cloud)
            started = time.time()
            if scenario == "broker":
                rabbit.stop()
                codes = _api_codes(cloud, args.broker_seconds)
                rabbit.start_again()
            elif scenario == "schedulers":
                cloud.scheduler(1).kill_group()
                codes = _api_codes(cloud, args.scheduler_seconds)
                cloud.start_scheduler(1)
            else:
                cloud.cut_db("reset" if scenario == "database" else "drop")
                codes = _api_codes(cloud, args.db_seconds)
                cloud.restore_db()
            healed = time.time()
            netlab.wait_for(lambda: cloud.alive_hosts() >= {cloud.host(a) for a in AGENTS},
                            60, 0.5, "every agent to report again")
            fresh = cloud.wait_router(cloud.create_router("after")["id"], timeout=120)
            netlab.wait_for(lambda: cloud.probe.ping_once(fresh["external_gateway_ip"]),
                            60, what="a router created after the heal to answer")
            work_back = time.time() - healed
            time.sleep(cloud.agent_down_time + 2)  # long enough for any wrong move
            gaps = [p.max_gap(after=started - 0.05) for p in pingers]
        finally:
            for p in pingers:
                p.stop()
        moved = sum(1 for r in routers if cloud.router(r["id"])["agent_host"]
                    != r["agent_host"])
        return {"scenario": scenario, "outage_s": round(healed - started, 1),
                "fences": _fences(cloud) - fences_before, "routers_moved": moved,
                "max_ping_gap_s": round(max(gaps), 3),
                "reports_resumed_after_s": _resumed_after(cloud, healed),
                "new_router_serving_after_s": round(work_back, 2),
                "api_answers": codes}


def plot(runs: list[dict[str, Any]], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    labels = [f"{r['scenario']}\n{r['outage_s']:g} s" for r in runs]
    ax1.bar(range(len(runs)), [min(r["max_ping_gap_s"], 60) for r in runs],
            color="tab:blue")
    ax1.axhline(0.5, color="red", linestyle=":", label="a lost ping or two")
    ax1.set_xticks(range(len(runs)), labels, fontsize=8)
    ax1.set_ylabel("longest ping gap of 6 routers (s)")
    ax1.legend(fontsize=8)
    ax2.bar(range(len(runs)), [r["fences"] for r in runs], color="tab:red",
            label="node fences")
    ax2.bar(range(len(runs)), [r["routers_moved"] for r in runs], color="tab:orange",
            alpha=0.6, label="routers moved")
    ax2.set_xticks(range(len(runs)), labels, fontsize=8)
    ax2.set_ylabel("count (target 0)")
    ax2.legend(fontsize=8)
    fig.suptitle("Control-plane outages: what reached the data plane")
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1, help="trials per scenario")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--broker-seconds", type=float, default=30.0)
    parser.add_argument("--scheduler-seconds", type=float, default=30.0)
    parser.add_argument("--db-seconds", type=float, default=10.0)
    parser.add_argument("--output", default=os.path.join(RESULTS, "outages"))
    args = parser.parse_args(argv)
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    if not netlab.have_root():
        parser.error(netlab.ROOT_REASON)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    runs = []
    for scenario in scenarios:
        for trial in range(args.trials):
            result = one_trial(scenario, args)
            print(f"{scenario} #{trial + 1}: " + ", ".join(
                f"{k} {v}" for k, v in result.items() if k != "scenario"), flush=True)
            runs.append(result)
    with open(args.output + ".json", "w") as f:
        json.dump({"settings": vars(args), "runs": runs}, f, indent=1)
    plot(runs, args.output + ".png")
    print(f"wrote {args.output}.json and {args.output}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
