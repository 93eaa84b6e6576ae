"""Tests of spectheory.two_drafts: Khisti et al.'s closed form for two i.i.d. drafts, the
acceptance-equals-one condition and the region of targets with alpha* = 1.

Expected numbers come from theory.md section 8 (worked example), section 2 (the singleton-check
trap), exact Fraction arithmetic done in this file, or the explicit LP
(``spectheory.optimal_acceptance(..., method="lp")``).
"""

from __future__ import annotations

import itertools
from fractions import Fraction as F

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as hst

import spectheory as st
from spectheory import two_drafts as td
from spectheory.tolerances import CERT_GAP_TOL

#: Agreement between the closed form / condition and the HiGHS LP (LP tolerances are 1e-10).
LP_TOL = 1e-8
#: Instances whose alpha* lies this close to 1 are boundary cases for a float LP and are only
#: compared where the two answers cannot disagree legitimately.
BOUNDARY_BAND = 1e-7
#: Float agreement of two exact closed-form computations.
FLOAT_TOL = 1e-12

TRAP_P = (0.3, 0.3, 0.4)
TRAP_Q = (0.4, 0.4, 0.2)


def exact_min_subset(p: list[F], qs: list[list[F]]) -> tuple[F, list[int]]:
    """min over all S of p(S) - prod_j q_j(S) with Fractions, by brute force (the oracle)."""
    V = len(p)
    best, best_S = F(0), []
    for bits in itertools.product((0, 1), repeat=V):
        S = [i for i in range(V) if bits[i]]
        v = sum((p[i] for i in S), F(0))
        prod = F(1)
        for q in qs:
            prod *= sum((q[i] for i in S), F(0))
        if v - prod < best:
            best, best_S = v - prod, S
    return best, best_S


def random_instance(rng: np.random.Generator, V: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (p, q) with zeros, and p often close to q (so alpha* = 1 occurs)."""
    q = rng.dirichlet(np.full(V, 0.7))
    if rng.random() < 0.3:
        q[rng.integers(V)] = 0.0
        q = q / q.sum() if q.sum() > 0 else np.full(V, 1.0 / V)
    kind = rng.random()
    if kind < 0.15:
        p = q.copy()
    elif kind < 0.3:
        p = q**0.7 / np.sum(q**0.7)  # flatter than q: usually alpha* = 1
    elif kind < 0.5:
        eps = rng.choice([0.05, 0.2, 0.5])
        p = (1 - eps) * q + eps * rng.dirichlet(np.ones(V))
    else:
        p = rng.dirichlet(np.full(V, 0.7))
    if rng.random() < 0.3:
        p[rng.integers(V)] = 0.0
        p = p / p.sum() if p.sum() > 0 else np.full(V, 1.0 / V)
    return p, q


# ---------------------------------------------------------------------- closed form
def test_worked_example_theory_section_8() -> None:
    # theory.md section 8: alpha*_iid = 19/25 with H* = {1, 2}.
    r = td.optimal_acceptance([0.6, 0.3, 0.1], [0.2, 0.3, 0.5])
    assert r.value == pytest.approx(19 / 25, abs=FLOAT_TOL)
    assert r.witness_tokens().tolist() == [1, 2]
    assert r.status is st.Status.OPTIMAL and r.method == "two_drafts"
    cert = st.certify(r, [0.6, 0.3, 0.1], st.IID([0.2, 0.3, 0.5], 2))
    assert cert.ok


def test_worked_example_exact_value() -> None:
    r = td.optimal_acceptance([F(3, 5), F(3, 10), F(1, 10)], [F(1, 5), F(3, 10), F(1, 2)])
    assert r.info["exact_value"] == F(19, 25)


def test_trap_value() -> None:
    # theory.md section 2: alpha* = 0.96 for the singleton-check trap.
    r = td.optimal_acceptance(TRAP_P, TRAP_Q)
    assert r.value == pytest.approx(0.96, abs=FLOAT_TOL)
    assert r.witness_tokens().tolist() == [0, 1]
    lp = st.optimal_acceptance(TRAP_P, st.IID(TRAP_Q, 2), method="lp")
    assert r.value == pytest.approx(lp.value, abs=LP_TOL)
    exact = td.optimal_acceptance([F(3, 10), F(3, 10), F(2, 5)], [F(2, 5), F(2, 5), F(1, 5)])
    assert exact.info["exact_value"] == F(24, 25)


def test_closed_form_matches_lp_on_random_instances() -> None:
    rng = np.random.default_rng(20241023)
    n_checked = 0
    for _ in range(1500):
        V = int(rng.integers(1, 7))
        p, q = random_instance(rng, V)
        cf = td.optimal_acceptance(p, q)
        lp = st.optimal_acceptance(p, st.IID(q, 2), method="lp")
        assert lp.status is st.Status.OPTIMAL
        assert cf.value == pytest.approx(lp.value, abs=LP_TOL)
        # the witness reproduces the value through the subset form
        H = cf.witness
        assert 1 + p[H].sum() - q[H].sum() ** 2 == pytest.approx(cf.value, abs=FLOAT_TOL)
        n_checked += 1
    assert n_checked == 1500


def test_closed_form_matches_prefix_solver_batched() -> None:
    rng = np.random.default_rng(7)
    P = rng.dirichlet(np.ones(50), size=64)
    Q = rng.dirichlet(np.ones(50), size=64)
    cf = td.optimal_acceptance(P, Q)
    ref = st.optimal_acceptance(P, st.IID(Q, 2), method="prefix")
    np.testing.assert_allclose(cf.value, ref.value, atol=FLOAT_TOL)
    assert cf.witness.shape == (64, 50)
    single = td.optimal_acceptance(P[3], Q[3])
    assert single.value == pytest.approx(float(cf.value[3]), abs=FLOAT_TOL)


def test_closed_form_zeros() -> None:
    # q puts no mass on token 1: p(1) can never be matched; alpha* = 1 - 0.5 = 0.5 (LP check).
    r = td.optimal_acceptance([0.5, 0.5], [1.0, 0.0])
    assert r.value == pytest.approx(0.5, abs=FLOAT_TOL)
    assert r.witness_tokens().tolist() == [0]
    # p = q one-hot: alpha* = 1
    assert td.optimal_acceptance([0.0, 1.0, 0.0], [0.0, 1.0, 0.0]).value == pytest.approx(1.0)


def test_closed_form_bad_input_messages() -> None:
    with pytest.raises(ValueError, match=r"'p'.*sum"):
        td.optimal_acceptance([0.5, 0.4], [0.5, 0.5])
    with pytest.raises(ValueError, match="'q', row 1"):
        td.optimal_acceptance([0.5, 0.5], [[0.5, 0.5], [0.7, 0.7]])
    with pytest.raises(ValueError, match="vocabulary"):
        td.optimal_acceptance([0.5, 0.5], [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match=r"'p'.*9/10"):
        td.optimal_acceptance([F(1, 2), F(2, 5)], [F(1, 2), F(1, 2)])


# ---------------------------------------------------------------------- alpha* = 1
def test_trap_passes_singletons_but_fails() -> None:
    q = np.array(TRAP_Q)
    p = np.array(TRAP_P)
    assert np.all(p >= q**2)  # every singleton passes
    t = td.acceptance_is_one(TRAP_P, TRAP_Q)
    assert not t
    assert t.witness_tokens() == [0, 1]
    assert t.margin == pytest.approx(-0.04, abs=FLOAT_TOL)
    assert t.p_S == pytest.approx(0.6) and t.Q_S == pytest.approx(0.64)
    te = td.acceptance_is_one([F(3, 10), F(3, 10), F(2, 5)], [F(2, 5), F(2, 5), F(1, 5)])
    assert te.exact and not te and te.margin == F(-1, 25) and te.witness_tokens() == [0, 1]


def test_exact_boundary_cases() -> None:
    # p(S) == q(S)^2 exactly: holds (no tolerance involved).
    t = td.acceptance_is_one([F(1, 4), F(3, 4)], [F(1, 2), F(1, 2)])
    assert t and t.exact and t.margin == 0
    tiny = F(1, 10**30)
    t = td.acceptance_is_one([F(1, 4) - tiny, F(3, 4) + tiny], [F(1, 2), F(1, 2)])
    assert not t and t.margin == -tiny and t.witness_tokens() == [0]
    # three tokens: the pair {0, 1} is tight (1/9 + 1/3 = 4/9 = (2/3)^2).
    third = F(1, 3)
    q3 = [third, third, third]
    assert td.acceptance_is_one([F(1, 9), F(1, 3), F(5, 9)], q3)
    t = td.acceptance_is_one([F(1, 9), F(1, 3) - tiny, F(5, 9) + tiny], q3)
    assert not t and t.witness_tokens() == [0, 1] and t.margin == -tiny
    # a float check cannot see this violation: it is inside the documented tolerance.
    assert td.acceptance_is_one([1 / 9, 1 / 3, 5 / 9], [1 / 3, 1 / 3, 1 / 3])


def test_sympy_rational_inputs() -> None:
    R = sp.Rational
    t = td.acceptance_is_one([R(1, 4), R(3, 4)], [R(1, 2), R(1, 2)])
    assert t and t.exact
    t = td.acceptance_is_one([R(1, 5), R(4, 5)], [R(1, 2), R(1, 2)])
    assert not t and t.margin == F(1, 5) - F(1, 4)


def test_exact_n3_and_independent_boundary() -> None:
    # n = 3 i.i.d.: p(S) >= q(S)^3; q = (1/2, 1/2): p_0 = 1/8 is tight.
    assert td.acceptance_is_one([F(1, 8), F(7, 8)], [F(1, 2), F(1, 2)], 3)
    assert not td.acceptance_is_one([F(1, 9), F(8, 9)], [F(1, 2), F(1, 2)], 3)
    # independent drafts: Q(S^2) = q1(S) q2(S); {0}: 1/2 * 1/3 = 1/6 tight.
    q1, q2 = [F(1, 2), F(1, 2)], [F(1, 3), F(2, 3)]
    t = td.acceptance_is_one([F(1, 6), F(5, 6)], [q1, q2])
    assert t and t.exact
    t = td.acceptance_is_one([F(1, 7), F(6, 7)], [q1, q2])
    assert not t and t.margin == F(1, 7) - F(1, 6) and t.witness_tokens() == [0]


@settings(max_examples=150, deadline=None)
@given(
    V=hst.integers(1, 5),
    n=hst.integers(1, 3),
    data=hst.data(),
)
def test_exact_iid_matches_brute_force(V: int, n: int, data: hst.DataObject) -> None:
    def rational_dist() -> list[F]:
        w = data.draw(hst.lists(hst.integers(0, 6), min_size=V, max_size=V))
        if sum(w) == 0:
            w[0] = 1
        return [F(x, sum(w)) for x in w]

    p, q = rational_dist(), rational_dist()
    t = td.acceptance_is_one(p, q, n)
    best, _ = exact_min_subset(p, [q] * n)
    assert t.exact
    assert bool(t) == (best >= 0)
    if not t:
        assert t.margin == best
        S = t.witness_tokens()
        assert sum((p[i] for i in S), F(0)) - sum((q[i] for i in S), F(0)) ** n == best


@settings(max_examples=60, deadline=None)
@given(V=hst.integers(1, 5), data=hst.data())
def test_exact_independent_matches_brute_force(V: int, data: hst.DataObject) -> None:
    def rational_dist() -> list[F]:
        w = data.draw(hst.lists(hst.integers(0, 5), min_size=V, max_size=V))
        if sum(w) == 0:
            w[-1] = 1
        return [F(x, sum(w)) for x in w]

    p, q1, q2 = rational_dist(), rational_dist(), rational_dist()
    t = td.acceptance_is_one(p, [q1, q2])
    best, _ = exact_min_subset(p, [q1, q2])
    assert t.exact and bool(t) == (best >= 0)
    if not t:
        assert t.margin == best


def test_condition_matches_lp_on_random_instances() -> None:
    rng = np.random.default_rng(11)
    holds_count = fails_count = 0
    for _ in range(400):
        V = int(rng.integers(2, 6))
        n = int(rng.integers(2, 4))
        p, q = random_instance(rng, V)
        lp = st.optimal_acceptance(p, st.IID(q, n), method="lp").value
        t = td.acceptance_is_one(p, q, n)
        assert t.margin == pytest.approx(min(lp - 1, 0.0), abs=LP_TOL)
        if lp > 1 - CERT_GAP_TOL and t.margin > -CERT_GAP_TOL:
            assert t  # the LP says alpha* = 1 and no set is violated by more than the LP error
        elif lp < 1 - BOUNDARY_BAND:
            assert not t
        else:
            continue  # within the LP's accuracy of the boundary: not decidable from a float LP
        holds_count += bool(t)
        fails_count += not t
        if not t:
            H = t.witness
            assert p[H].sum() < q[H].sum() ** n
    assert holds_count > 20 and fails_count > 20  # both outcomes exercised


def test_condition_independent_and_schemes_match_lp() -> None:
    rng = np.random.default_rng(5)
    for _ in range(60):
        V = int(rng.integers(2, 6))
        p, q1 = random_instance(rng, V)
        q2 = 0.7 * q1 + 0.3 * rng.dirichlet(np.ones(V))
        sch = st.Independent([q1, q2])
        lp = st.optimal_acceptance(p, sch, method="lp").value
        for t in (td.acceptance_is_one(p, [q1, q2]), td.acceptance_is_one(p, sch)):
            assert t.margin == pytest.approx(min(lp - 1, 0.0), abs=LP_TOL)
        if np.count_nonzero(q1) >= 2:
            wor = st.WithoutReplacement(q1, 2)
            lpw = st.optimal_acceptance(p, wor, method="lp").value
            assert td.acceptance_is_one(p, wor).margin == pytest.approx(
                min(lpw - 1, 0.0), abs=LP_TOL
            )


def test_condition_large_vocabulary_is_fast_prefix() -> None:
    rng = np.random.default_rng(3)
    q = rng.dirichlet(np.ones(20_000))
    t = td.acceptance_is_one(q, q)  # p = q: q(S) >= q(S)^2 always
    assert t and t.method == "prefix"
    p = np.roll(q, 1)
    t = td.acceptance_is_one(p, q)
    ref = td.optimal_acceptance(p, q)
    assert not t and t.margin == pytest.approx(ref.value - 1, abs=1e-10)


def test_condition_bad_input() -> None:
    with pytest.raises(ValueError, match=r"'q'.*3 rows"):
        td.acceptance_is_one([0.5, 0.5], [[0.5, 0.5]] * 3, 2)
    with pytest.raises(ValueError, match="'n'"):
        td.acceptance_is_one([0.5, 0.5], st.IID([0.5, 0.5], 3), 4)
    with pytest.raises(ValueError, match=r"'p'.*negative"):
        td.acceptance_is_one([F(-1, 2), F(3, 2)], [F(1, 2), F(1, 2)])
    with pytest.raises(ValueError, match="'q'"):
        td.acceptance_is_one([0.5, 0.5], [0.2, 0.3, 0.5])


# ---------------------------------------------------------------------- the region
def test_region_prefix_inequalities_in_order_cone() -> None:
    rng = np.random.default_rng(9)
    q = np.array([0.4, 0.35, 0.25])
    reg = td.acceptance_one_region(q, 2)
    A, b = reg.inequalities()
    assert A.shape == (2, 3)
    Af, bf = reg.all_inequalities()
    assert Af.shape == (6, 3)
    seen_cone = 0
    for _ in range(500):
        p = 0.6 * q + 0.4 * rng.dirichlet(np.ones(3))
        holds = bool(td.acceptance_is_one(p, q))
        assert reg.contains(p) == holds
        assert bool(np.all(Af @ p >= bf - FLOAT_TOL)) == holds
        if reg.in_order_cone(p):
            seen_cone += 1
            assert bool(np.all(A @ p >= b - FLOAT_TOL)) == holds
    assert seen_cone > 20


def test_region_describe_and_sympy() -> None:
    reg = td.acceptance_one_region([0.4, 0.4, 0.2], 2, order=[2, 0, 1])
    assert reg.describe() == ["p[2] >= 0.04", "p[2] + p[0] >= 0.36"]
    rels = reg.as_sympy()
    p0, _p1, p2 = sp.symbols("p0:3")
    assert rels[1] == sp.Ge(p2 + p0, sp.Rational(9, 25))
    # the trap target violates the prefix {0, 1} in its own ratio order
    trap = td.acceptance_one_region(TRAP_Q, 2, order=[0, 1, 2])
    A, b = trap.inequalities()
    assert (A @ np.array(TRAP_P) < b).tolist() == [False, True]
    with pytest.raises(ValueError, match="'order'"):
        td.acceptance_one_region([0.5, 0.5], order=[0, 0])
