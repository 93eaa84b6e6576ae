"""Tests of spectheory.canonical: the importance-sampling selection LP (canonical decomposition of
Khisti et al., arXiv 2410.18234), two-step acceptance and achievability.

Expected numbers: theory.md section 8 (worked example: alpha*_iid = 19/25, alpha*_wor = 31/35),
section 2 (trap, alpha* = 0.96), exact Fraction enumeration in this file, and the explicit LP
(``spectheory.optimal_acceptance(..., method="lp")``).
"""

from __future__ import annotations

import itertools
from fractions import Fraction as F

import numpy as np
import pytest
from instances import random_pair

import spectheory as st
from spectheory import canonical as cn
from spectheory.tolerances import CERT_GAP_TOL

#: Agreement between the selection LP and the max-flow LP (both HiGHS at 1e-10).
LP_TOL = 1e-8
#: Float agreement of sums that are exact up to rounding.
FLOAT_TOL = 1e-12

P_EX = np.array([0.6, 0.3, 0.1])
Q_EX = np.array([0.2, 0.3, 0.5])


def _random_pair(rng: np.random.Generator, V: int) -> tuple[np.ndarray, np.ndarray]:
    return random_pair(rng, V, 0.8)


def _schemes(rng: np.random.Generator, q: np.ndarray) -> list[st.Scheme]:
    V = len(q)
    out: list[st.Scheme] = [st.IID(q, 2), st.IID(q, 3)]
    if np.count_nonzero(q) >= 2:
        out.append(st.WithoutReplacement(q, 2))
    out.append(st.Independent([q, rng.dirichlet(np.ones(V))]))
    return out


# ---------------------------------------------------------------------- decomposition theorem
def test_worked_example_values() -> None:
    # theory.md section 8
    s = cn.optimal_selection(P_EX, st.IID(Q_EX, 2))
    assert s.value == pytest.approx(19 / 25, abs=LP_TOL) and s.status is st.Status.OPTIMAL
    s = cn.optimal_selection(P_EX, st.WithoutReplacement(Q_EX, 2))
    assert s.value == pytest.approx(31 / 35, abs=LP_TOL)
    # theory.md section 2: the trap, alpha* = 0.96
    s = cn.optimal_selection([0.3, 0.3, 0.4], st.IID([0.4, 0.4, 0.2], 2))
    assert s.value == pytest.approx(0.96, abs=LP_TOL)


def test_max_over_beta_equals_alpha_star_random() -> None:
    rng = np.random.default_rng(2410)
    checked = 0
    for _ in range(40):
        V = int(rng.integers(2, 5))
        p, q = _random_pair(rng, V)
        for sch in _schemes(rng, q):
            sel = cn.optimal_selection(p, sch)
            ref = st.optimal_acceptance(p, sch, method="lp")
            assert sel.status is st.Status.OPTIMAL
            assert sel.value == pytest.approx(ref.value, abs=LP_TOL)
            # the rule is valid: rows are distributions supported on their token sets
            np.testing.assert_allclose(sel.weights.sum(axis=1), 1.0, atol=FLOAT_TOL)
            inside = np.zeros_like(sel.weights, dtype=bool)
            for t, row in enumerate(sel.sets):
                inside[t, row[row >= 0]] = True
            assert np.all(sel.weights[~inside] == 0)
            # r is its induced law, achievable, and value = sum min(p, r)
            np.testing.assert_allclose(sel.r, sel.mass @ sel.weights, atol=FLOAT_TOL)
            assert sel.r.sum() == pytest.approx(1.0, abs=FLOAT_TOL)
            assert cn.achievable(sel.r, sch, atol=1e-9)
            assert cn.two_step_acceptance(p, sel.r) == pytest.approx(sel.value, abs=FLOAT_TOL)
            checked += 1
    assert checked >= 150


def test_optimal_beta_has_no_hidden_hits() -> None:
    # For the optimal rule the two-step acceptance is already Pr(Y in drafts).
    sch = st.IID(Q_EX, 2)
    sel = cn.optimal_selection(P_EX, sch)
    tuples, _ = sch.enumerate()
    B = np.array([sel.beta(t) for t in tuples])
    hit = cn.draft_hit_probability(P_EX, sch, B)
    assert hit == pytest.approx(sel.value, abs=LP_TOL)


# ---------------------------------------------------------------------- non-optimal beta
def _exact_hit_pick_first(p: list[F], q: list[F]) -> F:
    """Pr(Y in {x1, x2}) for 'select x1, then speculative sampling from q to p', two i.i.d.
    drafts, by exact enumeration (independent of the module)."""
    V = len(p)
    res = [max(p[y] - q[y], F(0)) for y in range(V)]
    tot = sum(res, F(0))
    rho = [x / tot for x in res] if tot > 0 else [F(0)] * V
    out = F(0)
    for x1, x2 in itertools.product(range(V), repeat=2):
        w = q[x1] * q[x2]
        if w == 0:
            continue
        acc = min(F(1), p[x1] / q[x1])
        hit_res = rho[x1] + (rho[x2] if x2 != x1 else F(0))
        out += w * (acc + (1 - acc) * hit_res)
    return out


def test_non_optimal_beta_two_step_strictly_below_true_hit() -> None:
    # beta = "take the first draft": r = q, two-step acceptance sum min(p, q) = 3/5.
    p = [F(3, 5), F(3, 10), F(1, 10)]
    q = [F(1, 5), F(3, 10), F(1, 2)]
    sch = st.IID(Q_EX, 2)
    first = lambda t: np.eye(3)[t[0]]  # noqa: E731
    r = cn.induced_law(sch, first)
    np.testing.assert_allclose(r, Q_EX, atol=FLOAT_TOL)
    two_step = cn.two_step_acceptance(p, q)
    assert two_step == F(3, 5)
    exact_hit = _exact_hit_pick_first(p, q)
    assert exact_hit == F(17, 25)
    hit = cn.draft_hit_probability(P_EX, sch, first)
    assert hit == pytest.approx(float(exact_hit), abs=FLOAT_TOL)
    assert hit > float(two_step) + 0.05  # strictly below the true Pr(Y in drafts)
    assert hit < 19 / 25  # and still below alpha*


def test_non_optimal_beta_random_lower_bound() -> None:
    rng = np.random.default_rng(77)
    strict = 0
    for _ in range(30):
        p, q = _random_pair(rng, 4)
        sch = st.IID(q, 2)
        tuples, _ = sch.enumerate()
        B = np.zeros((len(tuples), 4))
        for i, t in enumerate(tuples):
            w = rng.random(2)
            B[i, t[0]] += w[0] / w.sum()
            B[i, t[1]] += w[1] / w.sum()
        r = cn.induced_law(sch, B)
        two = cn.two_step_acceptance(p, r)
        hit = cn.draft_hit_probability(p, sch, B)
        alpha = st.optimal_acceptance(p, sch, method="lp").value
        assert two <= hit + FLOAT_TOL <= alpha + LP_TOL + FLOAT_TOL
        strict += hit > two + 1e-6
    assert strict >= 10


def test_beta_validation() -> None:
    sch = st.IID(Q_EX, 2)
    with pytest.raises(ValueError, match=r"'beta', row 0: puts mass on a token not among"):
        cn.induced_law(sch, lambda t: np.array([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"'beta'.*sum"):
        cn.induced_law(sch, lambda t: 0.5 * np.eye(3)[t[0]])
    with pytest.raises(ValueError, match="shape"):
        cn.induced_law(sch, np.ones((2, 3)))
    sel = cn.optimal_selection([0.5, 0.5, 0.0], st.IID([0.5, 0.5, 0.0], 2))
    with pytest.raises(ValueError, match="'drafts'"):
        sel.beta([2, 2])


# ---------------------------------------------------------------------- two-step acceptance
def test_two_step_acceptance_values() -> None:
    assert cn.two_step_acceptance(P_EX, Q_EX) == pytest.approx(0.6, abs=FLOAT_TOL)
    assert cn.two_step_acceptance([F(1, 3), F(2, 3)], [F(1, 2), F(1, 2)]) == F(5, 6)
    out = cn.two_step_acceptance(np.stack([P_EX, Q_EX]), Q_EX)
    np.testing.assert_allclose(out, [0.6, 1.0], atol=FLOAT_TOL)
    with pytest.raises(ValueError, match="'r'"):
        cn.two_step_acceptance(P_EX, [0.5, 0.6, 0.1])


# ---------------------------------------------------------------------- achievability
def test_achievable_trap_and_witness() -> None:
    sch = st.IID([0.4, 0.4, 0.2], 2)
    t = cn.achievable([0.3, 0.3, 0.4], sch)
    assert not t and t.witness_tokens() == [0, 1]
    assert t.margin == pytest.approx(0.6 - 0.64, abs=FLOAT_TOL)
    assert cn.achievable([0.4, 0.4, 0.2], sch)  # r = q (select the first draft)
    with pytest.raises(ValueError, match="'r'"):
        cn.achievable([0.3, 0.3], sch)
    with pytest.raises(ValueError, match="'scheme'"):
        cn.achievable([0.5, 0.5], [0.5, 0.5])  # type: ignore[arg-type]


def test_achievable_matches_lp_and_induced_laws() -> None:
    rng = np.random.default_rng(123)
    for _ in range(25):
        V = int(rng.integers(2, 5))
        _, q = _random_pair(rng, V)
        for sch in _schemes(rng, q):
            # every induced law of a random rule is achievable
            tuples, _ = sch.enumerate()
            B = np.zeros((len(tuples), V))
            for i, t in enumerate(tuples):
                w = rng.random(len(t))
                np.add.at(B[i], t, w / w.sum())
            assert cn.achievable(cn.induced_law(sch, B), sch, atol=1e-10)
            # an arbitrary r: achievable iff alpha*(r, Q) = 1 (LP)
            r = rng.dirichlet(np.ones(V))
            t = cn.achievable(r, sch)
            lp = st.optimal_acceptance(r, sch, method="lp").value
            assert t.margin == pytest.approx(min(lp - 1, 0.0), abs=LP_TOL)
            if not t:
                H = t.witness
                assert r[H].sum() < float(sch.prob_all_in(H))
            elif lp < 1 - CERT_GAP_TOL:
                pytest.fail("achievable() says yes but the LP finds a deficit")


def test_zeros() -> None:
    # drafts never propose token 2 but p needs it: alpha* = 1 - p(2) (H = {0, 1}).
    p = [0.2, 0.3, 0.5]
    q = [0.5, 0.5, 0.0]
    s = cn.optimal_selection(p, st.IID(q, 2))
    assert s.value == pytest.approx(0.5, abs=LP_TOL)
    assert s.r[2] == 0.0
    assert not cn.achievable(p, st.IID(q, 2))
