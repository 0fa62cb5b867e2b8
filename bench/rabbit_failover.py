"""RPC across the loss of one node of a 3-node RabbitMQ cluster, per set of
``[oslo_messaging_rabbit]`` options.

    sudo .venv/bin/python -m bench.rabbit_failover            # every candidate
    sudo .venv/bin/python -m bench.rabbit_failover --candidates lab,fast \\
        --faults client,server --repeat 2

One private 3-node cluster (lab.rabbitcluster.RabbitCluster, quorum queues)
serves every trial. A trial starts an oslo.messaging RPC server (threading
executor, like clouddisco's scheduler) and a client that calls every 20 ms
(timeout 2 s, ``retry=0``, through a ``clouddisco.rpc.Courier`` like
``SchedulerAPI``) and casts every 20 ms (``retry=0``), all over the
multi-host transport URL. Once calls flow it kills (kill -9) one node:

* ``client``: the node holding the client's reply-queue connection (the
  client's publishers may sit there too, and so may the server);
* ``server``: the node holding the server's consumer connection, which is
  also the leader of the server's quorum queues (declared there);
* ``freeze``: SIGSTOP of the client's node for ``--freeze-window`` s (a
  hung host, or a partition that drops packets: its sockets stay open, only
  timeouts and heartbeats notice), then SIGCONT.

Then it watches for ``--window`` seconds (after the thaw, for a freeze),
stops sending, waits up to 5 s for the last casts, and restarts a killed
node (which rejoins). Each trial runs in a vhost of its own, deleted after.
Reported per trial: calls that failed, the longest wait for a successful
call (``stall``: last success before the fault to the first after, or any
longer gap up to the end of the window), casts the sender saw fail
(``retry=0``: it knows, clouddisco resends) and casts *lost* (confirmed by
the broker, never delivered), duplicates, the longest gap in cast
deliveries at the server, and the number of "Reconnected" log lines with
the time of the last one.

Writes bench/results/rabbit_failover.json and .png (``--output``).

Results (2-core Debian 12, RabbitMQ 3.10.8, oslo.messaging 18.3.1, kombu
5.7; ``--faults client,server --repeat 3 --window 10``; cluster up in 16.4 s
with all nodes booting at once, as start() then did; a killed node rejoined
in 6.3-10.1 s; n = 3 per row)::

    candidate     fault   failed  stall max  stall p50  cast fail  lost
    defaults      client       1     2.04s      1.10s          1      0
    defaults      server     223     2.14s      1.42s        253      0
    lab           client      47     8.34s      7.35s         36      0
    lab           server      53     1.11s      1.10s         60      0
    lab-delay0    client      25     0.60s      0.30s         41      0
    lab-delay0    server       0     0.70s      0.35s          7      0
    fast          client      10     0.21s      0.11s         19      0
    fast          server      44     0.84s      0.48s         71      0
    fast-shuffle  client      27     0.47s      0.08s         32      0
    fast-shuffle  server     115     0.80s      0.60s         73      0
    fast-tq       client       0     0.52s      0.23s          2      0
    fast-tq       server       0     0.41s      0.35s         22      0
    fast-mirror   client       0     0.54s      0.15s          0      0
    fast-mirror   server      35     0.51s      0.48s          3      0

No cast was ever lost or duplicated: quorum queues and publisher confirms
keep every cast the broker took. ("failed" calls and casts are ones whose
sender was told at once, ``MessageDeliveryFailure`` on a pooled connection
to the dead node with ``retry=0``; clouddisco retries those.)

What decides the stall is ``kombu_reconnect_delay``, whose help text speaks
of consumer-cancel notifications but which oslo.messaging sleeps on every
failed attempt of ``Connection.ensure()``. After a crash the reply-queue
consumer logs 6-7 "unreachable" rounds before it reconnects (its kombu
connection stays pointed at the dead node for several rounds), so with the
default 1 s calls stall 7-8 s (``lab``, 4 runs of 5; ``defaults`` 1-10 s).
With 0 every candidate stays under 1 s. The other options matter little
for a crash: kill -9 on loopback closes the sockets at once, so heartbeats
play no part, and the surviving nodes answer at the first try, so the
backoff never grows. ``rabbit_transient_quorum_queue`` (quorum reply and
fanout queues) made calls fail least, but puts a Raft group on every node
for every client process and fanout consumer; once they piled up, restarts
of a node took 17-24 s instead of 6-9 s. A classic-queue mirroring policy
(``fast-mirror``, ``ha-mode: all``, deprecated, gone in RabbitMQ 4) does
as well as the plain ``fast`` set and buys nothing.

A hung node (``--faults freeze``, SIGSTOP for 30 s, n = 1-2, see
rabbit_failover_freeze*.json) is another matter: with every candidate and
RabbitMQ's default net_ticktime (60 s) calls stalled for the whole freeze
and came back 0.02-1.3 s after it ended; nothing was lost. oslo.messaging
cannot route around it: a publish on a pooled connection to the hung node
blocks until the socket times out (``heartbeat_timeout_threshold``: the
heartbeat thread cannot take the connection lock meanwhile), the courier
queues calls behind it (``BrokerBusy``), and the reply consumer, once it
notices, fails again every 5 s (kombu's connect timeout) until the thaw,
even with a quorum reply queue (``fast-tq``). Only ``kombu_failover_strategy = shuffle``
together with ``net_ticktime = 10`` on the brokers (``--net-ticktime 10``)
got calls back during the freeze: after 12.3 and 21.2 s.

Recommended, and what ``lab.rabbitcluster.FAILOVER_SETTINGS`` holds::

    [oslo_messaging_rabbit]
    rabbit_quorum_queue = true
    kombu_reconnect_delay = 0
    rabbit_retry_interval = 1
    rabbit_retry_backoff = 0
    rabbit_interval_max = 1
    heartbeat_timeout_threshold = 4
    heartbeat_rate = 2
    kombu_failover_strategy = shuffle
    # rabbit_transient_quorum_queue stays false (see above)

Reproduce::

    .venv/bin/python -m bench.rabbit_failover --faults client,server --repeat 3
    .venv/bin/python -m bench.rabbit_failover --faults freeze \
        --candidates lab,fast,fast-tq --window 8 \
        --output bench/results/rabbit_failover_freeze
    .venv/bin/python -m bench.rabbit_failover --faults freeze \
        --candidates fast-shuffle --window 8 --repeat 2 --net-ticktime 10 \
        --output bench/results/rabbit_failover_freeze_shuffle_tick10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from lab import netlab
from lab import rabbitcluster

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

QUORUM = {"rabbit_quorum_queue": True}
# What lab/cloud.py writes today.
LAB = {**QUORUM, "rabbit_retry_interval": 1, "rabbit_retry_backoff": 1,
       "rabbit_interval_max": 2, "heartbeat_timeout_threshold": 6}
FAST = {**QUORUM, "kombu_reconnect_delay": 0.0, "rabbit_retry_interval": 1,
        "rabbit_retry_backoff": 0, "rabbit_interval_max": 1,
        "heartbeat_timeout_threshold": 4, "heartbeat_rate": 2}

# name -> (oslo_messaging_rabbit options, mirror classic queues by policy)
CANDIDATES: dict[str, tuple[dict[str, Any], bool]] = {
    "defaults": (dict(QUORUM), False),
    "lab": (LAB, False),
    "lab-delay0": ({**LAB, "kombu_reconnect_delay": 0.0}, False),
    "fast": (FAST, False),
    "fast-shuffle": ({**FAST, "kombu_failover_strategy": "shuffle"}, False),
    "fast-tq": ({**FAST, "rabbit_transient_quorum_queue": True}, False),
    "fast-mirror": (FAST, True),
}

FAULTS = ("client", "server", "freeze")


def one_trial(cluster: rabbitcluster.RabbitCluster, candidate: str, fault: str,
              window: float, freeze_window: float) -> dict[str, Any]:
    settings, mirror = CANDIDATES[candidate]
    # A vhost per trial: deleting it drops the trial's queues at once, so
    # leftovers (reply queues live 30 min) do not slow later restarts.
    vhost = f"cdt-{candidate}-{fault}-{netlab._hex(2)}"
    url = cluster.add_vhost(vhost)
    if mirror:
        cluster.rabbitmqctl("set_policy", "-p", vhost, "--apply-to", "queues",
                            rabbitcluster.CLASSIC_MIRROR_POLICY[0],
                            rabbitcluster.CLASSIC_MIRROR_POLICY[1],
                            json.dumps(rabbitcluster.CLASSIC_MIRROR_POLICY[2]))
    traffic = rabbitcluster.RpcTraffic(url, settings)
    victim = None
    frozen = False
    try:
        traffic.start()
        time.sleep(1.0)  # steady state: every connection made
        ports = traffic.ports()
        role_port = (ports["client_reply"] if fault in ("client", "freeze")
                     else ports["server_listen"])
        if not role_port:
            raise RuntimeError(f"cannot tell which node to fail: {ports}")
        victim = cluster.index_of(role_port[0])
        leader = cluster.queue_leader(traffic.topic, vhost=vhost)
        roles = sorted(role for role, ps in ports.items()
                       if cluster.node(victim).port in ps)
        if leader == victim:
            roles.append("leader")
        t_fault = time.monotonic()
        if fault == "freeze":
            cluster.freeze(victim)
            frozen = True
            time.sleep(freeze_window)
            # The hung node comes back: does the traffic, and is anything
            # lost? It did not stay away past net_ticktime, so it is still
            # a member.
            cluster.thaw(victim)
            frozen = False
            t_thaw = time.monotonic()
            time.sleep(window)
        else:
            cluster.kill(victim)
            time.sleep(window)
        t_end = time.monotonic()
        traffic.stop_traffic(drain=5.0)
        result = traffic.summary(t_fault, t_end)
        if fault == "freeze":
            result["thawed_at_s"] = round(t_thaw - t_fault, 3)
            after = traffic.summary(t_thaw, t_end)
            result["stall_after_thaw_s"] = after["first_call_ok_after_s"]
        result["calls_timeline"] = [
            (round(t0 - t_fault, 3), round(t1 - t_fault, 3), ok)
            for t0, t1, ok, _ in traffic.calls if t_fault - 2 < t1 < t_end]
        result["log_after_fault"] = [
            (round(t - t_fault, 3), level, msg[:200])
            for t, level, msg in traffic.log if t > t_fault][:60]
    finally:
        if frozen and victim is not None:
            cluster.thaw(victim)
        traffic.stop()
        rejoin = None
        if victim is not None:
            if fault == "freeze":
                try:
                    cluster.wait_running(3, timeout=20)
                except TimeoutError:
                    cluster.kill(victim)
                    rejoin = cluster.start_node(victim)
            else:
                rejoin = cluster.start_node(victim)
        cluster.delete_vhost(vhost)
    result.update({"candidate": candidate, "fault": fault, "victim": victim,
                   "victim_roles": roles,
                   "rejoin_s": round(rejoin, 2) if rejoin is not None else None,
                   "settings": settings, "mirror_classic": mirror})
    return result


def aggregate(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    keys = sorted({(t["candidate"], t["fault"]) for t in trials},
                  key=lambda k: (list(CANDIDATES).index(k[0]), FAULTS.index(k[1])))
    for cand, fault in keys:
        ts = [t for t in trials if (t["candidate"], t["fault"]) == (cand, fault)]
        rows.append({
            "candidate": cand, "fault": fault, "trials": len(ts),
            "calls_failed": sum(t["calls_failed"] for t in ts),
            "stall_max_s": max(t["call_stall_s"] for t in ts),
            "stall_median_s": statistics.median(t["call_stall_s"] for t in ts),
            "casts_failed": sum(t["casts_failed"] for t in ts),
            "casts_lost": sum(t["casts_lost"] for t in ts),
            "cast_duplicates": sum(t["cast_duplicates"] for t in ts),
            "cast_gap_max_s": max(t["cast_gap_s"] for t in ts),
            "last_reconnect_max_s": max((t["last_reconnect_s"] or 0.0) for t in ts),
        })
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (f"{'candidate':<13} {'fault':<7} {'n':>2} {'failed':>6} {'stall max':>9} "
            f"{'stall p50':>9} {'cast fail':>9} {'lost':>4} {'dup':>4} "
            f"{'cast gap':>8} {'reconn':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['candidate']:<13} {r['fault']:<7} {r['trials']:>2} "
              f"{r['calls_failed']:>6} {r['stall_max_s']:>8.2f}s "
              f"{r['stall_median_s']:>8.2f}s {r['casts_failed']:>9} "
              f"{r['casts_lost']:>4} {r['cast_duplicates']:>4} "
              f"{r['cast_gap_max_s']:>7.2f}s {r['last_reconnect_max_s']:>5.1f}s")


def plot(rows: list[dict[str, Any]], trials: list[dict[str, Any]], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faults = [f for f in FAULTS if any(r["fault"] == f for r in rows)]
    fig, axes = plt.subplots(len(faults), 1, figsize=(10, 1.2 + 0.5 * len(rows)),
                             squeeze=False)
    for ax, fault in zip(axes[:, 0], faults, strict=True):
        frows = [r for r in rows if r["fault"] == fault]
        for y, r in enumerate(frows):
            mine = [t for t in trials if (t["candidate"], t["fault"]) == (r["candidate"], fault)]
            for k, t in enumerate(mine):
                # One line per repeat, stacked within the candidate's row.
                yk = y + 0.6 * (k - (len(mine) - 1) / 2) / max(1, len(mine))
                ok = [t1 for _, t1, good in t["calls_timeline"] if good]
                bad = [t1 for _, t1, good in t["calls_timeline"] if not good]
                ax.plot(ok, [yk] * len(ok), "|", color="tab:green", markersize=4)
                ax.plot(bad, [yk] * len(bad), "x", color="tab:red", markersize=4)
            ax.text(1.0, y, f" stall {r['stall_max_s']:.1f}s, lost {r['casts_lost']}",
                    transform=ax.get_yaxis_transform(), va="center", fontsize=8)
        ax.set_yticks(range(len(frows)), [r["candidate"] for r in frows])
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"fault: {fault} node (kill -9 at 0 s)" if fault != "freeze"
                     else "fault: client node frozen (SIGSTOP at 0 s)", fontsize=10)
        ax.set_xlabel("seconds after the fault (| call ok, x call failed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help="comma-separated, of: " + ", ".join(CANDIDATES))
    parser.add_argument("--faults", default="client,server",
                        help="comma-separated, of: " + ", ".join(FAULTS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--window", type=float, default=12.0,
                        help="seconds watched after each fault")
    parser.add_argument("--freeze-window", type=float, default=30.0,
                        help="seconds a frozen node stays frozen")
    parser.add_argument("--net-ticktime", type=int, default=0,
                        help="the cluster's net_ticktime (s; default: RabbitMQ's 60)")
    parser.add_argument("--output", default=os.path.join(RESULTS, "rabbit_failover"))
    args = parser.parse_args(argv)
    candidates = [c for c in args.candidates.split(",") if c]
    faults = [f for f in args.faults.split(",") if f]
    for c in candidates:
        if c not in CANDIDATES:
            parser.error(f"unknown candidate {c!r}")
    for f in faults:
        if f not in FAULTS:
            parser.error(f"unknown fault {f!r}")
    if not netlab.have_root():
        parser.error(netlab.ROOT_REASON)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)

    trials: list[dict[str, Any]] = []
    config = [f"net_ticktime = {args.net_ticktime}"] if args.net_ticktime else []
    cluster = rabbitcluster.RabbitCluster(3, config=config)
    try:
        cluster.start()
        print(f"cluster of 3 up in {cluster.last_start_seconds:.1f}s", file=sys.stderr)
        for r in range(args.repeat):
            for cand in candidates:
                for fault in faults:
                    t = one_trial(cluster, cand, fault, args.window,
                                  args.freeze_window)
                    trials.append(t)
                    print(f"[{r + 1}/{args.repeat}] {cand:<13} {fault:<7} node {t['victim']}"
                          f" ({','.join(t['victim_roles'])}): failed {t['calls_failed']},"
                          f" stall {t['call_stall_s']:.2f}s, casts failed"
                          f" {t['casts_failed']} lost {t['casts_lost']}"
                          f" dup {t['cast_duplicates']}, rejoin {t['rejoin_s']}s",
                          file=sys.stderr, flush=True)
        bring_up = cluster.last_start_seconds
    finally:
        cluster.destroy()
    rows = aggregate(trials)
    print_table(rows)
    with open(args.output + ".json", "w") as f:
        json.dump({"bring_up_s": bring_up, "window_s": args.window,
                   "freeze_window_s": args.freeze_window,
                   "net_ticktime": args.net_ticktime or 60,
                   "argv": sys.argv[1:] if argv is None else argv,
                   "candidates": {c: {"settings": CANDIDATES[c][0],
                                      "mirror_classic": CANDIDATES[c][1]}
                                  for c in candidates},
                   "rows": rows, "trials": trials}, f, indent=1)
    plot(rows, trials, args.output + ".png")
    print(f"wrote {args.output}.json and .png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
