"""Control-plane servers fail over under load: seed 001's Figure 4a on this
API, with the data plane watched throughout.

One ``Cloud(topology="ha")`` (3-node Galera behind an HAProxy writer, 3-node
RabbitMQ with quorum queues, two API replicas behind HAProxy, two scheduler
replicas, three agents with node guards). Steady routers are pinged every
20 ms and every namespace is sampled for a gateway up twice
(``lab.serverloss.Traffic``). Then, one after another:

* ``api``: a closed-loop client sends ``GET /v1/routers`` through HAProxy
  while API replica 1 is killed (``kill -9``) and started again 5 s later:
  failed requests and latency percentiles in the fault window.
* ``galera`` / ``rabbitmq``: a closed-loop client creates a router, waits
  until it is ACTIVE and deletes it, while the Galera node HAProxy writes to
  (or the RabbitMQ node listed first) is killed and started again 5 s later:
  failed creates and create -> ACTIVE latency in the fault window.
* ``scheduler``: scheduler replica 1 killed and started again 5 s later:
  how long until replica 2 took over its share of the agents (its log line
  "scheduler replicas sharing the agents"), in monitor periods.
* ``quorum``: two of three Galera nodes killed: how long the API takes to
  answer 503; after 10 s, ``pc.bootstrap`` on the survivor and the others
  restarted: how long until a create is ACTIVE again.

Every case also reports the longest ping gap of the steady routers, lost
pings, node fences and routers moved.

    sudo PYTHONPATH=$PWD .venv/bin/python -m bench.service_failover

Writes bench/results/service_failover.json and one PNG timeline per fault,
bench/results/service_failover-<fault>.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from lab import cloud as cloud_mod
from lab import netlab
from lab import serverloss

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
DOWN = 5.0  # seconds each killed server stays down
QUORUM_LOST_FOR = 10.0
_RING = re.compile(r"^(\S+ \S+) .*scheduler replicas sharing the agents: (.*) \(was")


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q / 100 * len(values)))], 4)


class ClosedLoop(threading.Thread):
    """Calls ``request`` back to back; records (start, seconds, ok, what)."""

    def __init__(self, request: Callable[[], tuple[bool, str]]) -> None:
        super().__init__(daemon=True)
        self.request = request
        self.records: list[tuple[float, float, bool, str]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            started = time.time()
            try:
                ok, what = self.request()
            except requests.RequestException as exc:
                ok, what = False, type(exc).__name__
            self.records.append((started, time.time() - started, ok, what))
            if not ok:
                time.sleep(0.05)  # a failing server is not hammered

    def finish(self) -> None:
        self.stop_event.set()
        self.join(60)

    def window(self, since: float, until: float) -> dict[str, Any]:
        inside = [r for r in self.records if since <= r[0] <= until]
        ok = [r[1] for r in inside if r[2]]
        failed = [r for r in inside if not r[2]]
        return {"requests": len(inside), "failed": len(failed),
                "failures": sorted({r[3] for r in failed}),
                "p50_s": _percentile(ok, 50), "p99_s": _percentile(ok, 99),
                "max_s": round(max(ok), 4) if ok else None}


def _get_routers(cloud: cloud_mod.Cloud) -> tuple[bool, str]:
    resp = requests.get(cloud.api_url + "/v1/routers", headers=cloud_mod.ADMIN_HEADERS,
                        timeout=10)
    return resp.status_code == 200, str(resp.status_code)


def _create_until_active(cloud: cloud_mod.Cloud) -> tuple[bool, str]:
    resp = requests.post(cloud.api_url + "/v1/routers", json={"name": "bench"},
                         headers=cloud_mod.ADMIN_HEADERS, timeout=10)
    if resp.status_code != 201:
        return False, f"create {resp.status_code}"
    rid = resp.json()["router"]["id"]
    deadline = time.time() + 60
    while time.time() < deadline:
        r = requests.get(cloud.api_url + f"/v1/routers/{rid}",
                         headers=cloud_mod.ADMIN_HEADERS, timeout=10)
        if r.ok and r.json()["router"]["status"] == "ACTIVE":
            break
        time.sleep(0.05)
    else:
        return False, "not ACTIVE in 60 s"
    # Outside the measured time would be nicer; the delete is one fast call.
    requests.delete(cloud.api_url + f"/v1/routers/{rid}", headers=cloud_mod.ADMIN_HEADERS,
                    timeout=10)
    return True, "ACTIVE"


def _ring_takeover(cloud: cloud_mod.Cloud, killed_at: float) -> float | None:
    """Seconds from the kill until replica 2 logged a ring without replica 1."""
    gone = f"{cloud.token}-controller-1"
    with open(cloud.scheduler(2).log_path, errors="replace") as f:
        for line in f:
            m = _RING.match(line)
            if not m or gone in m.group(2):
                continue
            stamp = m.group(1)
            at = time.mktime(time.strptime(stamp.split(".")[0], "%Y-%m-%d %H:%M:%S")) + \
                float("0." + stamp.split(".")[1])
            if at >= killed_at:
                return round(at - killed_at, 2)
    return None


def measure(cloud: cloud_mod.Cloud, traffic: serverloss.Traffic, fault: serverloss.Fault,
            client: ClosedLoop | None) -> dict[str, Any]:
    if client is not None:
        client.start()
        time.sleep(3)  # a baseline before the fault
    window = traffic.run(fault)
    time.sleep(3)
    if client is not None:
        client.finish()
    result = traffic.summary(window)
    result["problems"] = traffic.problems(window)
    if client is not None:
        result["client"] = client.window(window.killed_at, window.healed_at)
        result["baseline"] = client.window(0, window.killed_at)
        result["records"] = client.records
    return result


def quorum_case(cloud: cloud_mod.Cloud, traffic: serverloss.Traffic) -> dict[str, Any]:
    nodes = cloud.galera.nodes()
    survivor, lost = nodes[-1], nodes[:-1]
    killed_at = time.time()
    for node in lost:
        cloud.galera.kill(node)
    answers = []
    while time.time() < killed_at + QUORUM_LOST_FOR:
        started = time.time()
        try:
            status = requests.get(cloud.api_url + "/v1/routers", timeout=15,
                                  headers=cloud_mod.ADMIN_HEADERS).status_code
        except requests.RequestException as exc:
            status = type(exc).__name__
        answers.append((started, time.time() - started, status))
        time.sleep(0.2)
    restarted_at = time.time()
    cloud.galera.bootstrap(survivor)
    for node in lost:
        cloud.galera.start_node(node)
    healed_at = time.time()
    first_active = None
    while time.time() < healed_at + 60 and first_active is None:
        try:
            ok, _ = _create_until_active(cloud)
        except requests.RequestException:
            ok = False
        if ok:
            first_active = time.time()
    window = serverloss.Window("quorum", killed_at, restarted_at, healed_at)
    traffic.windows.append(window)
    first_503 = next((a for a in answers if a[2] == 503), None)
    return {
        **traffic.summary(window),
        "problems": traffic.problems(window),
        "first_503_after_s": round(first_503[0] + first_503[1] - killed_at, 2)
        if first_503 else None,
        "answer_statuses": sorted({str(a[2]) for a in answers}),
        "answer_max_s": round(max(a[1] for a in answers), 3) if answers else None,
        "create_active_after_heal_s": round(first_active - healed_at, 2)
        if first_active else None,
        "answers": answers,
    }


def plot(results: dict[str, dict[str, Any]], traffic: serverloss.Traffic, prefix: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, res in results.items():
        t0 = res["killed_at"]
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
        records = res.get("records") or [(a[0], a[1], a[2] == 503, str(a[2]))
                                         for a in res.get("answers", [])]
        ok = [(r[0] - t0, r[1]) for r in records if r[2]]
        bad = [(r[0] - t0, r[1]) for r in records if not r[2]]
        if ok:
            top.scatter(*zip(*ok, strict=False), s=4, label="answered")
        if bad:
            top.scatter(*zip(*bad, strict=False), s=12, color="red", marker="x",
                        label="failed")
        top.set_ylabel("request seconds")
        top.set_yscale("log")
        if ok or bad:
            top.legend(loc="upper right")
        for ip in traffic.steady.values():
            times = [t - t0 for t in traffic.sweep.replies.get(ip, ())
                     if res["killed_at"] - 5 <= t <= res["healed_at"] + 5]
            gaps = [(a, b - a) for a, b in zip(times, times[1:], strict=False)]
            if gaps:
                bottom.plot([g[0] for g in gaps], [g[1] * 1000 for g in gaps], lw=0.8)
        bottom.set_ylabel("ping interval (ms)")
        bottom.set_xlabel(f"seconds since the {name} fault")
        for ax in (top, bottom):
            ax.axvline(0, color="red", lw=0.8)
            ax.axvline(res["restarted_at"] - t0, color="green", lw=0.8)
        top.set_title(f"{name}: fences {res['fences']}, moved {res['moved']}, "
                      f"longest ping gap {res['ping_gap_s'] * 1000:.0f} ms")
        fig.tight_layout()
        fig.savefig(f"{prefix}-{name}.png", dpi=110)
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", default="api,galera,rabbitmq,scheduler,quorum")
    parser.add_argument("--output", default=os.path.join(RESULTS, "service_failover"))
    args = parser.parse_args(argv)
    if not netlab.have_root():
        print("needs root (namespaces, private servers)", file=sys.stderr)
        return 2
    wanted = args.faults.split(",")
    results: dict[str, dict[str, Any]] = {}
    started = time.time()
    with cloud_mod.Cloud(topology="ha") as cloud:
        print(f"ha cloud up in {time.time() - started:.1f} s", flush=True)
        traffic = serverloss.Traffic(cloud, workload=False).start()
        try:
            faults = {f.name: f for f in serverloss.single_server_faults(cloud, down=DOWN)}
            clients = {"api": lambda: ClosedLoop(lambda: _get_routers(cloud)),
                       "galera": lambda: ClosedLoop(lambda: _create_until_active(cloud)),
                       "rabbitmq": lambda: ClosedLoop(lambda: _create_until_active(cloud)),
                       "scheduler": lambda: None}
            for name in wanted:
                print(f"== {name}", flush=True)
                if name == "quorum":
                    res = quorum_case(cloud, traffic)
                else:
                    res = measure(cloud, traffic, faults[name], clients[name]())
                if name == "scheduler":
                    res["takeover_s"] = _ring_takeover(cloud, res["killed_at"])
                    res["takeover_monitor_periods"] = (
                        round(res["takeover_s"] / cloud.check_interval, 1)
                        if res["takeover_s"] is not None else None)
                results[name] = res
                shown = {k: v for k, v in res.items() if k not in ("records", "answers")}
                print(json.dumps(shown, indent=1, default=str), flush=True)
            plot(results, traffic, args.output)
        finally:
            traffic.stop()
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output + ".json", "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d"), "down_s": DOWN,
                   "results": {k: {kk: vv for kk, vv in v.items() if kk != "records"}
                               for k, v in results.items()}}, f, indent=1, default=str)
    print(f"wrote {args.output}.json and {args.output}-<fault>.png")
    print(_table(results))
    return 0


def _table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["fault      failed  p50 s   p99 s   max s   gap ms  lost  fences moved"]
    for name, r in results.items():
        c = r.get("client") or {}
        lines.append(f"{name:<10} {c.get('failed', '-')!s:>6}  {c.get('p50_s')!s:<7} "
                     f"{c.get('p99_s')!s:<7} {c.get('max_s')!s:<7} "
                     f"{r['ping_gap_s'] * 1000:>6.0f}  {r['lost_pings']:>4}  "
                     f"{r['fences']:>6} {r['moved']:>5}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
