"""Time each verifier's exact acceptance at V = 128k (a batch of positions, n in {2, 4, 8}).

Prints a table and writes JSON to benchmarks/results/bench_verifiers.json (or
bench_verifiers_quick.json with --quick, which uses V = 8k and finishes in seconds).

RRS without replacement is exact in O(V log V) only for n = 2; for n > 2 its row times the
unbiased path estimator (acceptance_mc, MC_PATHS paths) instead and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from bench_core import best_of  # same directory (the script's own folder is on sys.path)

from spectheory import verifiers as V

RULES = ["sd", "rrs", "rrs_wor", "kseq", "spechub", "greedy", "naive"]
#: Paths of the RRS-without-replacement estimator where the exact value is out of reach.
MC_PATHS = 50


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="V = 8k, one repeat (seconds)")
    ap.add_argument("--vocab", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    args = ap.parse_args()
    Vn = args.vocab or (8_192 if args.quick else 131_072)
    B = args.batch or (2 if args.quick else 8)
    repeats = 1 if args.quick else 3
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((B, Vn)) * 2.0
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    ql = logits + 0.7 * rng.standard_normal((B, Vn))
    q = np.exp(ql - ql.max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    rows = []
    for n in (2, 4, 8):
        for name in RULES:
            if name == "spechub" and n != 2:
                continue
            v = V.get(name)()
            if v.exact_feasible(p, q, n):
                kind = "exact"
                t = best_of(lambda v=v, n=n: v.acceptance(p, q, n), repeats)
                value = float(np.mean(v.acceptance(p, q, n)))
            else:
                kind = f"mc({MC_PATHS} paths)"
                t0 = time.perf_counter()
                ests = [
                    v.acceptance_mc(p[b], q[b], n, np.random.default_rng(b), MC_PATHS)
                    for b in range(B)
                ]
                t = time.perf_counter() - t0
                value = float(np.mean([e.mean for e in ests]))
            rows.append(
                {"verifier": name, "n": n, "V": Vn, "B": B, "kind": kind,
                 "seconds": t, "ms_per_position": 1e3 * t / B, "mean_acceptance": value}
            )
    print(f"V = {Vn}, B = {B} positions, best of {repeats} (2-core CPU, under load)")
    print(f"{'verifier':<9} {'n':>2}  {'kind':<18} {'ms/position':>12}  {'mean acc':>9}")
    for r in rows:
        print(f"{r['verifier']:<9} {r['n']:>2}  {r['kind']:<18} {r['ms_per_position']:>12.3f}  "
              f"{r['mean_acceptance']:>9.6f}")
    out = Path(__file__).parent / "results" / (
        "bench_verifiers_quick.json" if args.quick else "bench_verifiers.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "note": "CPU timings taken on a shared 2-core machine under load by other jobs",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "repeats": repeats,
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out.name}")


if __name__ == "__main__":
    main()
