"""Seed 001's measurement: how long a router's gateway stops answering when the
node hosting it is lost.

A probe namespace on the external bridge pings the router's gateway every
20 ms. The hosting node is lost (its agent killed with SIGKILL and its router
namespaces removed at once); the gap is the longest silence between two ping
replies around the loss. The lost agent is started again before the next trial,
so every trial starts from two healthy agents.

    sudo .venv/bin/python -m bench.failover --trials 10

Writes bench/results/failover.json and bench/results/failover.png, and prints
p50/p99 of the gap with a per-phase breakdown from the failover events.
Real parts only: MariaDB, RabbitMQ, clouddisco processes, namespaces.
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import time

from lab import cloud as cloud_mod
from lab import netlab

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    t = datetime.datetime.fromisoformat(iso.rstrip("Z")).replace(tzinfo=datetime.timezone.utc)
    return t.timestamp()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def one_trial(cloud: cloud_mod.Cloud, n: int, interval: float) -> dict:
    router = cloud.wait_router(cloud.create_router(f"bench-{n}")["id"], timeout=60)
    old = cloud.agent_of(router)
    new = next(a for a in cloud.agent_names if a != old)
    ip = router["external_gateway_ip"]
    with netlab.Pinger(cloud.probe, ip, interval=interval) as pinger:
        netlab.wait_for(lambda: len(pinger.replies()) > 10, 10, what="steady pings")
        lost_at = cloud.lose_node(old)
        moved = cloud.wait_router(router["id"], agent_host=cloud.host(new), timeout=60)
        # The deleted namespace may answer for a few ms while the kernel tears
        # it down; the gap closes with the first reply after the new copy is up.
        back_at = pinger.wait_reply_after(time.time(), timeout=60)
        gap = pinger.max_gap(after=lost_at - 0.05, before=back_at)
    event = cloud.events(router["id"])[0]
    phases = {k: _epoch(event[k]) for k in ("last_heartbeat_at", "detected_at",
                                            "rescheduled_at", "active_at")}
    # Bring the lost node back for the next trial (its node guard too: the
    # agent builds nothing without one), and drop this router.
    if cloud.guards:
        cloud.start_guard(old)
    cloud.start_agent(old)
    netlab.wait_for(lambda: cloud.host(old) in cloud.alive_hosts(), 60, 0.2,
                    "the lost agent to come back")
    cloud.api("DELETE", f"/v1/routers/{router['id']}", expect=204)
    cloud.wait_router_gone(router["id"])
    return {"trial": n, "router": router["id"], "from": old, "to": new,
            "gap_s": gap, "lost_at": lost_at, "first_reply_after_loss": back_at,
            "new_agent": moved["agent_host"], **phases}


def summarize(trials: list[dict]) -> dict:
    gaps = [t["gap_s"] for t in trials]

    def phase(a, b):
        vals = [t[b] - t[a] for t in trials if t.get(a) and t.get(b)]
        return round(statistics.median(vals), 3) if vals else None
    return {
        "trials": len(trials),
        "gap_p50_s": round(percentile(gaps, 50), 3),
        "gap_p99_s": round(percentile(gaps, 99), 3),
        "gap_max_s": round(max(gaps), 3),
        "median_phases_s": {
            "loss→detected": phase("lost_at", "detected_at"),
            "last_heartbeat→detected": phase("last_heartbeat_at", "detected_at"),
            "detected→rescheduled": phase("detected_at", "rescheduled_at"),
            "rescheduled→active": phase("rescheduled_at", "active_at"),
            "active→first_reply": phase("active_at", "first_reply_after_loss"),
        },
    }


def plot(trials: list[dict], summary: dict, path: str, settings: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 0.45 * len(trials) + 2.0))
    marks = [("last_heartbeat_at", "last heartbeat", "tab:gray", "|"),
             ("detected_at", "declared dead", "tab:red", "v"),
             ("rescheduled_at", "rebound", "tab:orange", "^"),
             ("active_at", "agent says active", "tab:green", "o")]
    for i, t in enumerate(trials):
        ax.barh(i, t["gap_s"], left=0, color="tab:blue", alpha=0.35,
                label="no ping replies" if i == 0 else None)
        for key, label, colour, marker in marks:
            if t.get(key):
                ax.plot(t[key] - t["lost_at"], i, marker=marker, color=colour,
                        linestyle="", label=label if i == 0 else None)
    ax.set_yticks(range(len(trials)), [f"trial {t['trial']}" for t in trials])
    ax.invert_yaxis()
    ax.set_xlabel("seconds after the node was lost")
    ax.set_title(f"Router failover after node loss: ping gap p50 {summary['gap_p50_s']:.2f}s,"
                 f" p99 {summary['gap_p99_s']:.2f}s\n{settings}", fontsize=10)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.02, help="ping interval (s)")
    parser.add_argument("--report-interval", type=float, default=1.0)
    parser.add_argument("--agent-down-time", type=float, default=3.5,
                        help="seconds (default 3.5, the product's default)")
    parser.add_argument("--check-interval", type=float, default=0.5)
    parser.add_argument("--output", default=os.path.join(RESULTS, "failover"))
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    if not netlab.have_root():
        parser.error(netlab.ROOT_REASON)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    settings = (f"report_interval {args.report_interval}s, agent_down_time "
                f"{args.agent_down_time}s, check_interval {args.check_interval}s")
    trials = []
    with cloud_mod.Cloud(agents=("a", "b"), report_interval=args.report_interval,
                         agent_down_time=args.agent_down_time,
                         check_interval=args.check_interval) as cloud:
        for n in range(1, args.trials + 1):
            trial = one_trial(cloud, n, args.interval)
            trials.append(trial)
            print(f"trial {n:2d}: gap {trial['gap_s']:.3f}s "
                  f"({trial['from']} -> {trial['to']})", flush=True)
    summary = summarize(trials)
    with open(args.output + ".json", "w") as f:
        json.dump({"settings": vars(args), "summary": summary, "trials": trials}, f,
                  indent=2)
    plot(trials, summary, args.output + ".png", settings)
    print(f"ping gap over {len(trials)} trials ({settings}): "
          f"p50 {summary['gap_p50_s']:.3f}s, p99 {summary['gap_p99_s']:.3f}s, "
          f"max {summary['gap_max_s']:.3f}s")
    for name, value in summary["median_phases_s"].items():
        print(f"  median {name}: {value}s")
    print(f"wrote {args.output}.json and {args.output}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
