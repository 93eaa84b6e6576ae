"""Two identical drafts: Khisti et al.'s closed form, the acceptance-equals-one condition and the
canonical decomposition on a small example (arXiv 2410.18234).

Run: python examples/two_drafts.py
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

import spectheory as st
from spectheory import canonical, two_drafts
from spectheory.verifiers.khisti import KhistiIS


def main() -> None:
    p = np.array([0.6, 0.3, 0.1])
    q = np.array([0.2, 0.3, 0.5])
    print(f"p = {p.tolist()}, q = {q.tolist()}, two i.i.d. drafts")

    # 1. closed form: min_S p(S) + q(S^c)^2 + 2 q(S) q(S^c), over ratio-order prefixes
    cf = two_drafts.optimal_acceptance(p, q)
    lp = st.optimal_acceptance(p, st.IID(q, 2), method="lp")
    exact = two_drafts.optimal_acceptance(
        [Fraction(3, 5), Fraction(3, 10), Fraction(1, 10)],
        [Fraction(1, 5), Fraction(3, 10), Fraction(1, 2)],
    )
    print("\n[closed form]")
    print(f"  alpha* = {cf.value:.12f}   minimising S = {cf.witness_tokens().tolist()}")
    print(f"  exact  = {exact.info['exact_value']}      LP check = {lp.value:.12f}")

    # 2. the condition alpha* = 1 <=> p(S) >= q(S)^2 for all S; singletons are not enough
    trap_p, trap_q = [0.3, 0.3, 0.4], [0.4, 0.4, 0.2]
    t = two_drafts.acceptance_is_one(trap_p, trap_q)
    print("\n[acceptance = 1 ?]")
    print(f"  p = {trap_p}, q = {trap_q}: every p(y) >= q(y)^2, yet alpha* = 1 is {bool(t)}")
    print(
        f"  violating S = {t.witness_tokens()}: p(S) = {t.p_S:.2f} < q(S)^2 = {t.Q_S:.2f} "
        f"(margin {t.margin:+.2f}, alpha* = {1 + t.margin:.2f})"
    )
    region = two_drafts.acceptance_one_region(trap_q, 2, order=[2, 0, 1])
    print("  targets in ratio order (2, 0, 1): alpha* = 1 iff " + "; ".join(region.describe()))

    # 3. canonical decomposition: selection rule beta + single-draft SD from r to p
    sel = canonical.optimal_selection(p, st.IID(q, 2))
    print("\n[canonical decomposition]")
    print(f"  optimal selection law r = {np.round(sel.r, 6).tolist()}")
    print(f"  two-step acceptance sum min(p, r) = {sel.value:.12f} (= alpha*)")
    ok = bool(canonical.achievable(sel.r, st.IID(q, 2), atol=1e-10))
    print(f"  r achievable (r(S) >= q(S)^2 for all S): {ok}")
    first = canonical.induced_law(st.IID(q, 2), lambda t: np.eye(3)[t[0]])
    hit = canonical.draft_hit_probability(p, st.IID(q, 2), lambda t: np.eye(3)[t[0]])
    print(
        f"  'take the first draft': r = q, sum min(p, r) = "
        f"{canonical.two_step_acceptance(p, first):.4f} but Pr(Y in drafts) = {hit:.4f}"
    )

    # 4. Khisti's weighted importance sampling with the s-truncated pair LP
    k = KhistiIS(s=2)
    print("\n[Khisti weighted IS, s = 2]")
    print(
        f"  two-step {k.two_step_acceptance(p, q, 2):.6f}, exact {k.acceptance(p, q, 2):.6f}, "
        f"output law {np.round(k.output_law(p, q, 2), 12).tolist()}"
    )


if __name__ == "__main__":
    main()
