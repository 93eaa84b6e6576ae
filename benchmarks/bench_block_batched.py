"""Block level over many contexts: block_acceptance_batched vs a loop of
block_acceptance(method="mc") per context (issue 16, "Block level").

A random order-1 Markov pair (:class:`spectheory.blocks.Markov`) with V = 1000 and Dirichlet(1)
rows; B random contexts of 8 tokens; Chain(gamma = 4); verifiers "sd" and "block". The batched
models index the transition table for all rows at once (what one batched forward of a real model
does); the loop calls the per-context models through :func:`block_acceptance`. Both draw
``samples = 2`` blocks per context (the scalar function needs at least 2).

Usage::

    python benchmarks/bench_block_batched.py            # B = 1000 and 4000
    python benchmarks/bench_block_batched.py --quick    # B = 200 and 400

Prints a table and writes ``benchmarks/results/bench_block_batched.json``. Timings are best of
``reps`` wall-clock runs (the loop: one run) on the machine it runs on (stated in the JSON with
the load average).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from spectheory.blocks import Chain, Markov, block_acceptance, block_acceptance_batched

OUT = Path(__file__).parent / "results" / "bench_block_batched.json"
V, GAMMA, CTX_LEN, SAMPLES = 1000, 4, 8, 2


def markov(rng: np.random.Generator) -> tuple[Markov, np.ndarray, np.ndarray]:
    init = rng.dirichlet(np.ones(V))
    T = rng.dirichlet(np.ones(V), size=V)
    return Markov(init, T), init, T


def batched(init: np.ndarray, T: np.ndarray):
    def f(contexts: list[tuple[int, ...]]) -> np.ndarray:
        last = np.fromiter((c[-1] if c else -1 for c in contexts), dtype=np.int64,
                           count=len(contexts))
        out = T[np.maximum(last, 0)]
        out[last < 0] = init
        return out

    return f


def timed(fn, reps: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    (p, pi, pT), (q, qi, qT) = markov(rng), markov(rng)
    P, Q = batched(pi, pT), batched(qi, qT)
    rows = []
    print("| B | verifier | batched | loop of block_acceptance(mc) | speed-up | batched mean "
          "| loop mean |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for B in (200, 400) if args.quick else (1000, 4000):
        contexts = [tuple(int(t) for t in rng.integers(0, V, CTX_LEN)) for _ in range(B)]
        for v in ("sd", "block"):
            t_b, res = timed(
                lambda v=v, contexts=contexts: block_acceptance_batched(
                    P, Q, Chain(GAMMA), v, contexts=contexts, samples=SAMPLES, seed=1
                ),
                args.reps,
            )

            def loop(v=v, contexts=contexts) -> float:
                return float(np.mean([
                    block_acceptance(p, q, Chain(GAMMA), v, context=c, method="mc",
                                     samples=SAMPLES, seed=i).mean
                    for i, c in enumerate(contexts)
                ]))

            t_l, loop_mean = timed(loop, 1)
            rows.append({
                "B": B, "verifier": v, "gamma": GAMMA, "V": V, "samples_per_context": SAMPLES,
                "batched_s": t_b, "loop_s": t_l, "speedup": t_l / t_b,
                "batched_mean": res.mean, "batched_stderr": res.stderr, "loop_mean": loop_mean,
            })
            r = rows[-1]
            print(f"| {B} | {v} | {t_b * 1e3:.0f} ms | {t_l * 1e3:.0f} ms | {r['speedup']:.0f}x "
                  f"| {res.mean:.3f} ± {res.stderr:.3f} | {loop_mean:.3f} |", flush=True)
    result = {
        "machine": platform.machine(), "cpus": os.cpu_count(), "loadavg": os.getloadavg(),
        "python": platform.python_version(), "numpy": np.__version__, "quick": args.quick,
        "reps": args.reps, "rows": rows,
    }
    if not args.quick:
        OUT.write_text(json.dumps(result, indent=1, default=float))
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
