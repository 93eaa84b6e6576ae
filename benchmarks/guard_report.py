"""Run the guard's sweep (tests/guard_core.py, the families of tests/test_guard.py::test_guard_sweep)
and print the worst error per quantity; writes benchmarks/results/guard.json.

    .venv/bin/python benchmarks/guard_report.py [--per-family 2] [--seed 2017]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import guard_core as G  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--per-family", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2017)
    args = ap.parse_args()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tally = G.sweep(seed=args.seed, per_family=args.per_family)
    dt = time.perf_counter() - t0
    print(f"{'quantity':48s} worst error")
    for k, v in sorted(tally.worst.items()):
        print(f"{k:48s} {v:.3g}")
    print()
    for k, v in sorted(tally.counts.items()):
        print(f"{k:48s} {v}")
    print(f"\nfailures: {len(tally.failures)}  ({dt:.1f} s)")
    for f in tally.failures[:20]:
        print("  ", f)
    out = ROOT / "benchmarks" / "results" / "guard.json"
    out.write_text(json.dumps({
        "seed": args.seed, "per_family": args.per_family, "atol": G.ATOL, "rtol": G.RTOL,
        "families": list(G.FAMILIES), "epsilons": list(G.EPSILONS),
        "temperatures": list(G.TEMPERATURES), "worst": tally.worst, "counts": tally.counts,
        "failures": tally.failures, "seconds": dt,
    }, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
