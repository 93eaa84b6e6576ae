"""Optimal acceptance table for a built-in target/draft pair.

A Zipf-like target over V = 1000 tokens and a draft that is the target at a higher temperature with
noise. Prints alpha* (the best acceptance any lossless verifier can reach) for several draft schemes
and numbers of drafts, with the size of the certificate set H* and a certificate check.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import numpy as np

import spectheory as st


def builtin_pair(V: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Target: Zipf(1.1) logits; draft: the target's logits at temperature 1.4 plus noise."""
    rng = np.random.default_rng(seed)
    logits = -1.1 * np.log(np.arange(1, V + 1)) + 0.3 * rng.standard_normal(V)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    dl = logits / 1.4 + 0.5 * rng.standard_normal(V)
    q = np.exp(dl - dl.max())
    q /= q.sum()
    return p, q


def main() -> None:
    p, q = builtin_pair()
    print(f"target/draft pair: V = {len(p)}, single-draft acceptance sum min(p, q) = "
          f"{np.minimum(p, q).sum():.6f}")
    print(f"{'scheme':<22}{'n':>3}  {'alpha*':>10}  {'|H*|':>6}  {'method':<8} certified")
    for n in (1, 2, 3, 4, 8):
        schemes = [st.IID(q, n), st.Greedy(q, n)]
        if n <= 3:
            schemes.append(st.WithoutReplacement(q, n))
        if n == 2:
            schemes.append(st.Hub(q))
        for scheme in schemes:
            r = st.optimal_acceptance(p, scheme)
            c = st.certify(r, p, scheme)
            print(f"{type(scheme).__name__:<22}{n:>3}  {r.value:>10.6f}  "
                  f"{int(r.witness.sum()):>6}  {r.method:<8} {c.ok}")


if __name__ == "__main__":
    main()
