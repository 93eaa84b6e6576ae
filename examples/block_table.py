"""Block-level verifiers against the optimum: accepted draft tokens per target call.

For a few random tabular target/draft pairs (V = 3, conditionals depending on the last two
tokens) and a few draft structures (one chain, two i.i.d. chains, trees drafted i.i.d. and without
replacement), the script prints the expected number of accepted draft tokens per call of every
lossless block-level verifier that applies to the structure (token-level rules applied node by
node, and "block", "multipath", "traversal") next to two bounds of ``spectheory.blocks.block_bound``:
``lossless`` (the best lossless one-call verifier of that draft structure, an LP) and ``coupling``
(the best coupling of the drafts with a target block, an upper bound on ``lossless``).

Values are exact (enumeration of the draft realisations and of each rule's output law). Runs in a
few seconds on a laptop CPU.
"""

from __future__ import annotations

import time

import numpy as np

from spectheory import verifiers
from spectheory.blocks import Chain, Chains, Tree, block_acceptance, block_bound, random_pair
from spectheory.blocks.verify import BLOCK_RULES, block_verifier

V = 3
INSTANCES = (0, 1, 2)
STRUCTURES = (
    Chain(2),
    Chains(2, 2),
    Tree((-1, 0, 0, 1), "iid"),  # an irregular tree: two drafts, the first extended
    Tree.branching((2, 1), "wor"),
)

def rules_for(drafts) -> list[str]:
    from spectheory.blocks import rules  # noqa: F401  (registers the block-level rules)

    names = [n for n in verifiers.names() if n != "naive"] + sorted(BLOCK_RULES)
    out = []
    for name in names:
        try:
            v = block_verifier(name, drafts.tree)
        except ValueError:
            continue
        if v.lossless:  # lossy rules are not bounded by the lossless optimum
            out.append(name)
    return out


def value(target, draft, drafts, rule: str) -> str:
    return f"{block_acceptance(target, draft, drafts, rule).mean:.4f}"


def main() -> None:
    t0 = time.perf_counter()
    for seed in INSTANCES:
        target, draft = random_pair(V, 3, np.random.default_rng(seed))
        print(f"instance {seed}: random V = {V} target and draft (Dirichlet(1) conditionals)")
        for drafts in STRUCTURES:
            cells = [f"{r}={value(target, draft, drafts, r)}" for r in rules_for(drafts)]
            for kind in ("lossless", "coupling"):
                b = block_bound(target, draft, drafts, kind=kind)
                cells.append(f"[{kind} {b.value:.4f}]")
            print(f"  {drafts.describe():<36} " + "  ".join(cells))
    print(f"(accepted draft tokens per target call; {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
