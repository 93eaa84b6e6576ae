"""How far do deployed verifiers fall below alpha*?  A synthetic study at V = 32k.

Target: a Zipf law over 32,000 tokens (p(k) ~ 1/k^1.1) with a random permutation of the ranks;
draft: the same logits perturbed by Gaussian noise (a "weaker model"). Both are tempered at
T in {0.3, 0.7, 1.0}; for n in {2, 4, 8} drafts the script prints spectheory.gap's table
(alpha* per draft scheme, each verifier's acceptance and its gap), over a few positions.

Runs in a few seconds on a laptop CPU.
"""

from __future__ import annotations

import numpy as np

import spectheory as st

V = 32_000
POSITIONS = 3
ZIPF_S = 1.1
NOISE = 0.8
SEED = 0
#: Monte Carlo paths per position for RRS without replacement at n >= 4 (no exact form there).
MC_PATHS = 64


def tempered(logits: np.ndarray, T: float) -> np.ndarray:
    z = logits / T
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def main() -> None:
    rng = np.random.default_rng(SEED)
    ranks = np.arange(1, V + 1)
    base = -ZIPF_S * np.log(ranks)
    target_logits = np.stack([base[rng.permutation(V)] for _ in range(POSITIONS)])
    draft_logits = target_logits + NOISE * rng.standard_normal(target_logits.shape)
    for T in (0.3, 0.7, 1.0):
        p = tempered(target_logits, T)
        q = tempered(draft_logits, T)
        for n in (2, 4, 8):
            verifiers = ["sd", "rrs", "rrs_wor", "kseq", "greedy"] + (["spechub"] if n == 2 else [])
            report = st.gap(p, q, n, verifiers=verifiers, mc_samples=MC_PATHS, seed=SEED)
            print(f"\n=== temperature {T}, n = {n} ===")
            print(report.table())


if __name__ == "__main__":
    main()
