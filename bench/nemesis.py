"""The long version of tests/functional/test_nemesis.py: N seeds of randomized
faults, each against a fresh 3-agent cloud (lab/nemesis.py).

    sudo PYTHONPATH=$PWD .venv/bin/python -m bench.nemesis --seeds 2 --duration 60

Writes bench/results/nemesis.json (every run: schedule with the real inject
and heal times, API requests, fences, ping gaps, violations) and one PNG
timeline per seed, bench/results/nemesis-seed<N>.png: fault windows as bars,
ping gaps of each gateway, fences and violations marked. Process logs of a
seed with violations are kept under bench/results/nemesis-logs/seed<N>/.
Exits 1 when any seed found a violation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from lab import nemesis
from lab import netlab

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

_COLOURS = {"agent_kill": "tab:red", "agent_stop": "tab:orange", "cut_off": "tab:purple",
            "guard_kill": "tab:brown", "broker_cut": "tab:blue",
            "scheduler_kill": "tab:cyan", "db_cut": "tab:olive",
            "clock_skew": "tab:pink"}


def plot(result: nemesis.Result, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = result.started_at
    gap_ips = sorted({g["ip"] for g in result.ping_gaps})
    rows = len(result.faults) + len(gap_ips)
    fig, ax = plt.subplots(figsize=(12, 0.3 * rows + 2.5))
    labels = []
    for i, f in enumerate(result.faults):
        start = (f.injected_at or t0 + f.start) - t0
        end = (f.healed_at or t0 + f.end) - t0
        ax.barh(i, end - start, left=start, color=_COLOURS[f.kind], alpha=0.8)
        labels.append(f.label())
    for j, ip in enumerate(gap_ips, start=len(result.faults)):
        for g in result.ping_gaps:
            if g["ip"] == ip:
                ax.barh(j, g["to"] - g["from"], left=g["from"] - t0, color="tab:gray",
                        alpha=0.6)
        labels.append(f"ping gaps {ip}")
    for fence in result.fences:
        if fence["at"] and fence["at"] >= t0:
            ax.axvline(fence["at"] - t0, color="tab:olive", linestyle=":", linewidth=1)
    for v in result.violations:
        x = (v.at or result.healed_at) - t0
        ax.axvline(x, color="red", linewidth=2)
        ax.text(x, -0.8, f"({v.check})", color="red", fontsize=8, ha="center")
    ax.axvline(result.healed_at - t0, color="black", linewidth=1)
    if result.settled_at:
        ax.axvline(result.settled_at - t0, color="green", linewidth=1)
    ax.set_yticks(range(rows), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds after the schedule began (black: all healed, green: settled, "
                  "dotted: a fence, red: a violation)")
    ax.set_title(f"nemesis seed {result.seed}, {result.duration:g}s: "
                 f"{len(result.violations)} violation(s), {len(result.fences)} fence(s), "
                 f"{len(result.ops)} API requests", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds per seed")
    parser.add_argument("--output", default=os.path.join(RESULTS, "nemesis"))
    parser.add_argument("--db-faults", action="store_true",
                        help="also cut the database off from every process (UDP reports)")
    parser.add_argument("--clock-faults", action="store_true",
                        help="also step the scheduler's wall clock by up to 1 s either way")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if not netlab.have_root():
        parser.error(netlab.ROOT_REASON)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    runs: list[dict[str, Any]] = []
    failed = 0
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        began = time.monotonic()
        log_dir = os.path.join(os.path.dirname(args.output), "nemesis-logs", f"seed{seed}")
        result = nemesis.run(seed, args.duration, log_dir=log_dir, progress=True,
                             db_faults=args.db_faults, clock_faults=args.clock_faults)
        elapsed = time.monotonic() - began
        print(result.report(), flush=True)
        failed += not result.ok
        runs.append({**result.to_dict(), "wall_seconds": round(elapsed, 1)})
        plot(result, f"{args.output}-seed{seed}.png")
        # Written after every seed, so a long run interrupted keeps what it has.
        with open(args.output + ".json", "w") as f:
            json.dump({"settings": vars(args), "bounds": {
                "settle_s": nemesis.SETTLE_BOUND,
                "active_absent_s": nemesis.ACTIVE_ABSENT_BOUND,
                "node_fault_grace_s": nemesis.NODE_FAULT_GRACE},
                "runs": runs}, f, indent=1, default=str)
    print(f"{args.seeds} seed(s), {failed} with violations; wrote {args.output}.json and "
          f"{args.output}-seed*.png")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
