"""What checking one RPC payload costs: ``jsonschema.validate`` (which checks
the schema itself every time, as ``rpc.validated`` once did) against the
validator ``rpc.validated`` now builds once.

    .venv/bin/python -m bench.rpc_validation [--number 2000]

Prints microseconds per validation for a state report (what every agent
sends every report_interval) and a 50-router status batch, and writes
bench/results/rpc_validation.json.
"""

import argparse
import datetime
import json
import os
import platform
import timeit
import uuid

import jsonschema

import clouddisco.cmd  # noqa: F401 - silences oslo's eventlet warning, as the commands do
from clouddisco import rpc

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

PAYLOADS = {
    # As agent/service.py's reporter sends it.
    "report_state": {"host": "network-node-17", "state": {
        "routers": 250, "namespace_prefix": "qrouter-", "driver": "netns",
        "lease_generation": 42}},
    "update_router_status": {"host": "network-node-17", "reports": {
        str(uuid.uuid4()): {"status": "ACTIVE", "reason": None} for _ in range(50)}},
}


def per_call_us(fn, number: int) -> float:
    # Best of 5 repeats: the least disturbed by the rest of the machine.
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000,
                        help="validations per timing repeat")
    args = parser.parse_args()
    results = {}
    for name, payload in PAYLOADS.items():
        schema = rpc.SCHEMAS[name]
        validator = rpc.compiled_validator(name)
        assert rpc.first_error(validator, payload) is None
        before = per_call_us(lambda p=payload, s=schema: jsonschema.validate(p, s),
                             max(args.number // 20, 50))
        after = per_call_us(lambda v=validator, p=payload: rpc.first_error(v, p),
                            args.number)
        results[name] = {"jsonschema_validate_us": round(before, 1),
                         "compiled_validator_us": round(after, 1),
                         "speedup": round(before / after, 1)}
        print(f"{name:22s} jsonschema.validate {before:9.1f} us   "
              f"compiled {after:7.1f} us   x{before / after:.0f}")
    os.makedirs(RESULTS, exist_ok=True)
    out = os.path.join(RESULTS, "rpc_validation.json")
    with open(out, "w") as f:
        json.dump({"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                   "python": platform.python_version(),
                   "jsonschema": _version("jsonschema"),
                   "results": results}, f, indent=2)
    print(f"wrote {out}")


def _version(dist: str) -> str:
    from importlib import metadata
    return metadata.version(dist)


if __name__ == "__main__":
    main()
