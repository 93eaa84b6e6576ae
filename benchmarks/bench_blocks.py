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
from pathlib import Path

import numpy as np
from bench_core import best_of  # same directory (the script's own folder is on sys.path)

from spectheory import blocks
from spectheory.blocks import Chain, Chains, Tree, block_acceptance

OUT = Path(__file__).parent / "results" / "bench_blocks.json"


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


#: Structures of the verifier-vs-optimum table (small enough for exact enumeration at V = 3).
TABLE_STRUCTURES = (
    Chain(3),
    Chains(2, 2),
    Tree((-1, 0, 0, 1), "iid"),
    Tree.branching((2, 1), "wor"),
    Tree.branching((2, 2), "wor"),
)


def lossless_rules(structure) -> list[str]:
    out = []
    for name in blocks.block_verifier_names():
        try:
            v = blocks.block_verifier(name, blocks.drafts.as_tree(structure))
        except ValueError:
            continue
        if v.lossless and name != "naive":
            out.append(name)
    return out


def optimum_rows(pairs: list[tuple], label: str) -> list[dict]:
    """Mean accepted draft tokens per call of every lossless rule, the lossless bound and the
    coupling bound, averaged over ``pairs`` of (target, draft) per structure; also the largest
    excess of a block-level rule over token-level "optimal" (the per-node alpha* recursion)."""
    from spectheory.blocks import block_bound

    rows = []
    for s in TABLE_STRUCTURES:
        names = lossless_rules(s)
        vals: dict[str, list[float]] = {n: [] for n in [*names, "lossless", "coupling"]}
        excess = []
        for target, draft in pairs:
            got = {n: block_acceptance(target, draft, s, n).mean for n in names}
            for n, v in got.items():
                vals[n].append(v)
            lo = block_bound(target, draft, s, kind="lossless").value
            co = block_bound(target, draft, s, kind="coupling").value
            vals["lossless"].append(lo)
            vals["coupling"].append(co)
            assert all(v <= lo + 1e-9 for v in got.values()) and lo <= co + 1e-9
            if "optimal" in got:
                best_block = max(
                    (got[n] for n in ("block", "multipath", "traversal") if n in got), default=None
                )
                if best_block is not None:
                    excess.append(best_block - got["optimal"])
        row = {"pairs": label, "structure": s.describe(),
               "mean": {n: float(np.mean(v)) for n, v in vals.items()},
               "instances": len(pairs)}
        if excess:
            row["block_minus_per_node_alpha_star_max"] = float(max(excess))
            row["block_beats_per_node_alpha_star"] = int(sum(e > 1e-12 for e in excess))
        rows.append(row)
        cells = "  ".join(f"{n}={v:.4f}" for n, v in row["mean"].items())
        print(f"{label:<10} {s.describe():<40} {cells}")
        if excess:
            print(f"{'':<10} best block-level rule above per-node alpha* ('optimal' down the tree): "
                  f"max {max(excess):+.4f}, on {row['block_beats_per_node_alpha_star']} of "
                  f"{len(excess)} instances")
    return rows


def random_pairs(count: int) -> list[tuple]:
    rng = np.random.default_rng(7)
    return [blocks.random_pair(3, 4, rng) for _ in range(count)]


def smollm2_pairs(count: int) -> list[tuple]:
    """SmolLM2-135M (target) and its 4-layer-skipped self-draft, coarse-grained to K = 3 tokens
    (the target's top 2 and "other") at ``count`` contexts of the builtin text."""
    from spectheory import models
    from spectheory.blocks.real import CausalLM

    target, tok = models.load_model("smollm2")
    draft = models.layer_skip(target, 4)
    ids = tok(models.builtin_text())["input_ids"][:400]
    T, D = CausalLM(target, maxsize=512), CausalLM(draft, maxsize=512)
    starts = np.linspace(20, len(ids) - 1, count).astype(int)
    return [blocks.lumped(T, D, 3, context=ids[:s]) for s in starts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-smollm2", action="store_true", help="skip the SmolLM2 rows")
    args = ap.parse_args()
    result = {
        "machine": platform.machine(), "cpus": os.cpu_count(), "loadavg": os.getloadavg(),
        "python": platform.python_version(), "scaling": scaling(args.quick),
    }
    table = optimum_rows(random_pairs(5 if args.quick else 20), "random")
    if not args.no_smollm2:
        table += optimum_rows(smollm2_pairs(4 if args.quick else 12), "SmolLM2")
    result["optimum_table"] = table
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
