"""Block level: how block_acceptance (exact and Monte Carlo) scales with V, gamma and tree size,
and the verifier-vs-optimum table on random tabular instances.

Usage::

    python benchmarks/bench_blocks.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_blocks.py --quick    # smaller grid

Prints tables and writes ``benchmarks/results/bench_blocks.json``. Timings are best of ``reps``
wall-clock runs on the machine it runs on (stated in the JSON with the load average).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from spectheory import blocks
from spectheory.blocks import Chain, Chains, Tree, block_acceptance

OUT = Path(__file__).parent / "results" / "bench_blocks.json"


def best_of(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def scaling(quick: bool) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    grid = [
        ("Chain", lambda g: Chain(g), "sd", "iid"),
        ("Chains(2, g)", lambda g: Chains(2, g), "rrs", "iid"),
        ("branching (2,)*g wor", lambda g: Tree.branching((2,) * g, "wor"), "rrs_wor", "wor"),
    ]
    Vs = (2, 3, 4) if quick else (2, 3, 4, 6)
    gammas = (1, 2, 3) if quick else (1, 2, 3, 4)
    for name, make, rule, _scheme in grid:
        for V in Vs:
            for g in gammas:
                struct = make(g)
                tree = blocks.drafts.as_tree(struct)
                target, draft = blocks.random_pair(V, g + 1, rng)
                prob = blocks.BlockProblem(target, draft, struct)
                bound = prob.count_bound()
                row = {"structure": name, "V": V, "gamma": g, "nodes": tree.num_nodes,
                       "verifier": rule, "realisations_bound": bound}
                if bound <= 2e4:
                    row["exact_s"] = best_of(
                        lambda t=target, d=draft, s=struct, r=rule: block_acceptance(t, d, s, r), 2
                    )
                row["mc_1000_s"] = best_of(
                    lambda t=target, d=draft, s=struct, r=rule: block_acceptance(
                        t, d, s, r, method="mc", samples=1000, seed=0), 1
                )
                rows.append(row)
                ex = f"{row['exact_s'] * 1e3:9.1f}" if "exact_s" in row else "        -"
                print(f"{name:<22} V={V} gamma={g} nodes={tree.num_nodes:>3} "
                      f"realisations<={bound:>9.0f} exact {ex} ms   mc(1000) "
                      f"{row['mc_1000_s'] * 1e3:8.1f} ms")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    result = {
        "machine": platform.machine(), "cpus": os.cpu_count(), "loadavg": os.getloadavg(),
        "python": platform.python_version(), "scaling": scaling(args.quick),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
