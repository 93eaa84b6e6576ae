"""From logits to optimal acceptance: how decoding knobs change alpha*.

A synthetic target/draft pair of logits over V = 32,768 tokens (Zipf-like target, a noisy draft) is
turned into sampling distributions with spectheory.logits (temperature, top-k, top-p, min-p, applied
to both models as a decoder would), and alpha* is computed for i.i.d., without-replacement and
greedy drafts. Real model logits work the same way (spectheory.models.next_token_logits).

Run: python examples/logits_to_bound.py
"""

from __future__ import annotations

import numpy as np

import spectheory as st
from spectheory.logits import Sampling


def main() -> None:
    rng = np.random.default_rng(0)
    V = 32_768
    target = -1.2 * np.log(np.arange(1, V + 1)) + 0.5 * rng.standard_normal(V)
    draft = target + 0.8 * rng.standard_normal(V)
    knobs = [Sampling(1.0), Sampling(0.7), Sampling(1.0, top_k=50), Sampling(1.0, top_p=0.9),
             Sampling(1.0, min_p=0.05), Sampling(0.0)]
    print(f"{'knobs':<22}{'sum min(p,q)':>13}{'iid n=2':>9}{'wor n=2':>9}{'greedy n=2':>11}"
          f"{'iid n=4':>9}")
    for s in knobs:
        p, q = s(target), s(draft)
        row = [np.minimum(p, q).sum()]
        for make, n in ((st.IID, 2), (st.WithoutReplacement, 2), (st.Greedy, 2), (st.IID, 4)):
            try:
                row.append(float(st.optimal_acceptance(p, make(q, n)).value))
            except ValueError:  # e.g. fewer than n tokens of positive mass (T = 0)
                row.append(float("nan"))
        print(f"{s.describe():<22}" + "".join(f"{v:>{w}.4f}" for v, w in
                                              zip(row, (13, 9, 9, 11, 9), strict=True)))


if __name__ == "__main__":
    main()
