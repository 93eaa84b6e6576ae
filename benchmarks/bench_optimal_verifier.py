"""Setup and sampling time of the optimal verifier (spectheory.verifiers.Optimal, layout rule).

For V in {1k, 32k, 128k} and n in {2, 4, 8} on CPU (numpy): the per-position setup (H* by the
sorted prefix, then the exact slot-exchange layout; median and minimum over ``--repeats`` runs of
wall and process CPU time, the machine being shared) and the sampling time per verified tuple
(N tuples through ``LayoutRule.sample_many``; drawing the drafts is not timed). Targets and
drafts are LM-like: Gumbel logits, the draft logits perturbed by Gaussian noise of scale
``--noise``.

Prints a table and writes JSON to benchmarks/results/bench_optimal_verifier.json (or
bench_optimal_verifier_quick.json with --quick: V = 1k and 32k at n = 4 only, a few seconds).
No JAX backend exists for this rule yet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

import spectheory as st
from spectheory.verifiers.optimal import layout_rule

GOAL_MS = 10.0  # the goal: setup under 10 ms per position at V = 32k, n = 4 (CPU)


def _instance(rng: np.random.Generator, V: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    z = rng.gumbel(size=V) * 2.0
    p = np.exp(z - z.max())
    p /= p.sum()
    q = np.exp(z + noise * rng.standard_normal(V))
    q /= q.sum()
    return p, q


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="V = 1k and 32k at n = 4 (seconds)")
    ap.add_argument("--noise", type=float, default=1.0)
    ap.add_argument("--tuples", type=int, default=None, help="tuples per sampling measurement")
    ap.add_argument("--repeats", type=int, default=None, help="setup runs per configuration")
    args = ap.parse_args()
    configs = (
        [(1_000, 4), (32_000, 4)]
        if args.quick
        else [(V, n) for V in (1_000, 32_000, 128_000) for n in (2, 4, 8)]
    )
    N = args.tuples or (2_000 if args.quick else 20_000)
    R = args.repeats or (5 if args.quick else 11)
    rows = []
    for V, n in configs:
        rng = np.random.default_rng(1000 * n + V)
        p, q = _instance(rng, V, args.noise)
        walls, cpus = [], []
        for _ in range(R):
            t, c = time.perf_counter(), time.process_time()
            rule = layout_rule(p, q, n)
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        setup, setup_cpu = float(np.median(walls)), float(np.median(cpus))
        alpha = float(st.optimal_acceptance(p, st.IID(q, n)).value)
        drafts = st.IID(q, n).sample(rng, N)
        t = time.perf_counter()
        rule.sample_many(drafts, rng)
        samp = time.perf_counter() - t
        row = {
            "V": V,
            "n": n,
            "alpha_star": alpha,
            "acceptance_minus_alpha": rule.acceptance - alpha,
            "setup_ms": 1e3 * setup,
            "setup_cpu_ms": 1e3 * setup_cpu,
            "setup_cpu_min_ms": 1e3 * min(cpus),
            "repeats": R,
            "sample_us_per_tuple": 1e6 * samp / N,
            "exchanges": rule.info["exchanges"],
            "blocks": rule.info["blocks"],
            "pieces": rule.info["pieces"],
        }
        rows.append(row)
        print(
            f"V={V:>7} n={n}  alpha*={alpha:.6f}"
            f"  |acc-alpha*|={abs(row['acceptance_minus_alpha']):.1e}"
            f"  setup={row['setup_ms']:7.1f} ms (cpu {row['setup_cpu_ms']:6.1f},"
            f" min {row['setup_cpu_min_ms']:6.1f})"
            f"  sample={row['sample_us_per_tuple']:6.2f} us/tuple"
            f"  exchanges={row['exchanges']:>6}  pieces={row['pieces']:>6}",
            flush=True,
        )
    goal = next((r for r in rows if r["V"] == 32_000 and r["n"] == 4), None)
    note = "2-core CPU, under load (other developers' jobs running); numpy backend only"
    out = {
        "benchmark": "bench_optimal_verifier",
        "quick": args.quick,
        "conditions": note,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "numpy": np.__version__,
        "goal_setup_ms_V32k_n4": GOAL_MS,
        "measured_setup_ms_V32k_n4": None if goal is None else goal.get("setup_ms"),
        "measured_setup_cpu_ms_V32k_n4": None if goal is None else goal.get("setup_cpu_ms"),
        "rows": rows,
    }
    name = "bench_optimal_verifier_quick.json" if args.quick else "bench_optimal_verifier.json"
    path = Path(__file__).resolve().parent / "results" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"[{note}] wrote {path}")


if __name__ == "__main__":
    main()
