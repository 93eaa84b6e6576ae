"""Setup and sampling time of the optimal verifier (spectheory.verifiers.Optimal, layout rule).

For V in {1k, 32k, 128k} and n in {2, 4, 8} on CPU (numpy): the per-position setup (H* by the
sorted prefix, then the exact layout; wall and process CPU time, the machine being shared) and
the sampling time per verified tuple (N tuples through
``LayoutRule.sample_many``; drawing the drafts is not timed). Targets and drafts are LM-like:
Gumbel logits, the draft logits perturbed by Gaussian noise of scale ``--noise``.

Prints a table and writes JSON to benchmarks/results/bench_optimal_verifier.json (or
bench_optimal_verifier_quick.json with --quick: V = 1k only, finishes in seconds). Configurations
whose setup is predicted to exceed ``--max-setup-s`` (from the same n at the previous V, assuming
growth like V^1.5; the exact layout costs O(F) per sequentially placed token, F free intervals)
are skipped and reported as such. No JAX backend exists for this rule yet.
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
    ap.add_argument("--quick", action="store_true", help="V = 1k only (seconds)")
    ap.add_argument("--noise", type=float, default=1.0)
    ap.add_argument("--tuples", type=int, default=None, help="tuples per sampling measurement")
    ap.add_argument("--max-setup-s", type=float, default=120.0)
    args = ap.parse_args()
    vocab = [1_000] if args.quick else [1_000, 32_000, 128_000]
    ns = [2, 4, 8]
    N = args.tuples or (2_000 if args.quick else 20_000)
    rows = []
    last: dict[int, tuple[int, float]] = {}
    for V in vocab:
        for n in ns:
            rng = np.random.default_rng(1000 * n + V)
            p, q = _instance(rng, V, args.noise)
            if n in last:
                V0, t0 = last[n]
                est = t0 * (V / V0) ** 1.5
                if est > args.max_setup_s:
                    rows.append({"V": V, "n": n, "skipped": f"predicted setup {est:.0f} s"})
                    print(f"V={V:>7} n={n}  skipped (predicted setup {est:.0f} s)", flush=True)
                    continue
            t, c = time.perf_counter(), time.process_time()
            rule = layout_rule(p, q, n)
            setup, setup_cpu = time.perf_counter() - t, time.process_time() - c
            last[n] = (V, setup_cpu)
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
                "sample_us_per_tuple": 1e6 * samp / N,
                "sequential_groups": rule.info["sequential_groups"],
                "pieces": rule.info["pieces"],
            }
            rows.append(row)
            print(
                f"V={V:>7} n={n}  alpha*={alpha:.6f}"
                f"  |acc-alpha*|={abs(row['acceptance_minus_alpha']):.1e}"
                f"  setup={row['setup_ms']:9.1f} ms (cpu {row['setup_cpu_ms']:9.1f})"
                f"  sample={row['sample_us_per_tuple']:6.2f} us/tuple"
                f"  sequential={row['sequential_groups']:>6}  pieces={row['pieces']:>6}",
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
        "rows": rows,
    }
    name = "bench_optimal_verifier_quick.json" if args.quick else "bench_optimal_verifier.json"
    path = Path(__file__).resolve().parent / "results" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"[{note}] wrote {path}")


if __name__ == "__main__":
    main()
