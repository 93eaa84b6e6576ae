"""Sampling without replacement at any n: the chain evaluator and optimal_acceptance.

References are independent of the code under test: exact ``fractions.Fraction`` arithmetic over
subsets (the sequential law of sampling without replacement), the explicit LP (``method="lp"``),
brute force over all subsets (``method="subsets"``), the hypergeometric closed form for uniform
``q``, and the worked example of theory.md section 8.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spectheory as stt
from spectheory.solvers.wor import wor_chain, wor_prob_all_in

#: The issue's accuracy contract for Q(H^n) and alpha*.
EXACT_TOL = 1e-10
#: Agreement expected between two float64 exact methods (LP / subsets / chain).
METHOD_TOL = 1e-9
#: Slack on the reported error bound (the bound itself is an estimate near rounding level).
BOUND_SLACK = 1e-14


# --------------------------------------------------------------------------- exact reference
def exact_chain(qf: list[Fraction], n: int) -> list[Fraction]:
    """Exact Q(H_k^n) for the prefixes H_k = {0..k-1}, by a DP over subsets D of the first draws:
    Pr(first |D| draws form D) = sum_{i in D} Pr(D - i) q_i / (1 - q(D - i))."""
    V = len(qf)
    prob: dict[int, Fraction] = {0: Fraction(1)}
    mass: dict[int, Fraction] = {0: Fraction(0)}
    by_size: list[list[int]] = [[0]]
    for _ in range(n):
        layer = []
        for D in by_size[-1]:
            for i in range(V):
                if D >> i & 1 or qf[i] == 0:
                    continue
                E = D | 1 << i
                w = prob[D] * qf[i] / (1 - mass[D])
                if E in prob:
                    prob[E] += w
                else:
                    prob[E] = w
                    mass[E] = mass[D] + qf[i]
                    layer.append(E)
        by_size.append(layer)
    out = []
    for k in range(1, V + 1):
        inside = (1 << k) - 1
        out.append(sum((prob[D] for D in by_size[n] if D & ~inside == 0), Fraction(0)))
    return out


def to_fracs(weights: list[int]) -> list[Fraction]:
    s = sum(weights)
    return [Fraction(w, s) for w in weights]


def check_chain(qf: list[Fraction], n: int) -> None:
    q = np.array([float(x) for x in qf])
    ch = wor_chain(q, n)
    ref = exact_chain(qf, n)
    for k, r in enumerate(ref):
        err = abs(float(r) - ch.Q[k])
        assert err <= EXACT_TOL, (k, float(r), ch.Q[k])
        assert err <= ch.error[k] + BOUND_SLACK, (k, err, ch.error[k])


# --------------------------------------------------------------------------- chain vs Fraction
@settings(max_examples=40, derandomize=True)
@given(
    w=st.lists(st.integers(1, 1000), min_size=2, max_size=7),
    n=st.integers(1, 6),
)
def test_chain_matches_fraction_enumeration(w: list[int], n: int) -> None:
    n = min(n, len(w))
    check_chain(to_fracs(w), n)


@settings(max_examples=25, derandomize=True)
@given(
    w=st.lists(st.integers(0, 50), min_size=3, max_size=7),
    n=st.integers(2, 6),
)
def test_chain_with_exact_zeros(w: list[int], n: int) -> None:
    support = sum(1 for x in w if x > 0)
    if support == 0:
        w[0] = 1
        support = 1
    check_chain(to_fracs(w), min(n, support))


@pytest.mark.parametrize("n", [2, 3, 4, 5])
@pytest.mark.parametrize("exp", [8, 15, 30])
def test_chain_low_temperature(n: int, exp: int) -> None:
    """q one-hot up to 10**-exp: the deflation path (exact up to rounding)."""
    small = [Fraction(k, 10**exp) for k in (1, 3, 2, 7, 5)]
    big = 1 - sum(small)
    for pos in (0, 2, 5):
        qf = [*small[:pos], big, *small[pos:]]
        check_chain(qf, n)


def test_chain_machine_precision_one_hot() -> None:
    """q = (1 - 4e-17, 1e-17, ...): one-hot to machine precision."""
    small = [Fraction(1, 10**17)] * 4
    qf = [*small[:2], 1 - sum(small), *small[2:]]
    for n in (2, 3, 4, 5):
        check_chain(qf, n)


def test_chain_two_peaks() -> None:
    small = [Fraction(1, 10**12), Fraction(2, 10**12), Fraction(1, 10**13), Fraction(9, 10**13)]
    qf = [small[0], Fraction(1, 2) - sum(small), small[1], Fraction(1, 2), *small[2:]]
    assert sum(qf) == 1
    for n in (2, 3, 4, 5, 6):
        check_chain(qf, n)


def test_chain_n_equals_support() -> None:
    qf = to_fracs([5, 0, 3, 9, 0, 1])
    check_chain(qf, 4)


def test_uniform_hypergeometric_large_vocab() -> None:
    """Uniform q (the high-temperature limit) at V = 128k: Q(H_k^n) = prod_{j<n} (k-j)/(V-j)."""
    V, n = 131072, 3
    ch = wor_chain(np.full(V, 1.0 / V), n)
    k = np.arange(1, V + 1, dtype=np.float64)
    ref = np.ones(V)
    for j in range(n):
        ref *= np.maximum(k - j, 0.0) / (V - j)
    np.testing.assert_allclose(ch.Q, ref, rtol=0, atol=EXACT_TOL)
    assert float(np.max(ch.error)) <= EXACT_TOL


def test_near_uniform_large_vocab_is_bracketed() -> None:
    """Near-uniform q at V = 128k: Q lies between the chain-rule bounds
    prod_j (S - j qmax)/(1 - j qmax) <= Q(H^n) <= Q(H^2) S^(n-2), and the bound is small."""
    rng = np.random.default_rng(7)
    V, n = 131072, 4
    q = 1.0 + 1e-3 * rng.random(V)
    q /= q.sum()
    ch = wor_chain(q, n)
    ch2 = wor_chain(q, 2)
    S = np.cumsum(q)
    upper = ch2.Q * S ** (n - 2)
    qmax = q.max()
    lower = np.ones(V)
    for j in range(n):
        lower *= np.maximum(S - j * qmax, 0.0) / (1 - j * qmax)
    assert np.all(ch.Q <= upper + EXACT_TOL)
    assert np.all(ch.Q >= lower - EXACT_TOL)
    assert float(np.max(ch.error)) <= EXACT_TOL


def test_single_set_matches_chain() -> None:
    rng = np.random.default_rng(3)
    q = rng.dirichlet(np.ones(9))
    H = np.array([1, 0, 1, 1, 0, 0, 1, 1, 0], dtype=bool)
    qf = [Fraction(x) for x in q.tolist()]
    order = [*np.flatnonzero(H).tolist(), *np.flatnonzero(~H).tolist()]
    ref = exact_chain([qf[i] for i in order], 4)[int(H.sum()) - 1]
    val, err = wor_prob_all_in(q, H, 4)
    assert abs(val - float(ref)) <= EXACT_TOL
    assert abs(val - float(ref)) <= err + BOUND_SLACK


# --------------------------------------------------------------------------- optimal_acceptance
def test_worked_example_theory_section_8() -> None:
    r = stt.optimal_acceptance([0.6, 0.3, 0.1], stt.WithoutReplacement([0.2, 0.3, 0.5], 2))
    assert r.method == "prefix"
    assert abs(r.value - 31 / 35) <= EXACT_TOL
    assert "error_bound" in r.info and r.info["error_bound"] <= EXACT_TOL


@settings(max_examples=30, derandomize=True)
@given(
    wp=st.lists(st.integers(0, 60), min_size=3, max_size=6),
    wq=st.lists(st.integers(0, 60), min_size=3, max_size=6),
    n=st.integers(2, 5),
)
def test_auto_matches_lp_and_subsets(wp: list[int], wq: list[int], n: int) -> None:
    V = min(len(wp), len(wq))
    wp, wq = wp[:V], wq[:V]
    if sum(wp) == 0:
        wp[0] = 1
    support = sum(1 for x in wq if x > 0)
    if support < 2:
        wq[0] = wq[1] = 1
        support = sum(1 for x in wq if x > 0)
    n = min(n, support)
    p = np.array(wp, dtype=float) / sum(wp)
    q = np.array(wq, dtype=float) / sum(wq)
    scheme = stt.WithoutReplacement(q, n)
    auto = stt.optimal_acceptance(p, scheme)
    assert auto.method == "prefix"
    lp = stt.optimal_acceptance(p, scheme, method="lp")
    sub = stt.optimal_acceptance(p, scheme, method="subsets")
    assert abs(auto.value - lp.value) <= METHOD_TOL
    assert abs(auto.value - sub.value) <= METHOD_TOL
    assert stt.certify(auto, p, scheme).ok


def test_ties_in_ratio() -> None:
    """p = q (every ratio ties): Q_wor(H^n) <= q(H)^n <= p(H), so alpha* = 1 exactly."""
    q = np.array([0.25, 0.25, 0.125, 0.125, 0.25])
    for n in (2, 3, 4, 5):
        r = stt.optimal_acceptance(q, stt.WithoutReplacement(q, n))
        assert abs(r.value - 1.0) <= EXACT_TOL
    p = np.array([0.1, 0.1, 0.3, 0.3, 0.2])
    s = stt.WithoutReplacement(q, 3)
    a = stt.optimal_acceptance(p, s)
    b = stt.optimal_acceptance(p, s, method="subsets")
    assert abs(a.value - b.value) <= METHOD_TOL


def test_exact_value_against_fraction_subset_min() -> None:
    """alpha* from Fraction arithmetic: min over all subsets H of 1 + p(H) - Q(H^n)."""
    import itertools

    pf = to_fracs([3, 1, 4, 1, 5, 9])
    qf = to_fracs([2, 7, 1, 8, 2, 8])
    n = 4
    best = Fraction(1)
    for r in range(1, 7):
        for H in itertools.combinations(range(6), r):
            order = [*H, *[i for i in range(6) if i not in H]]
            Q = exact_chain([qf[i] for i in order], n)[r - 1]
            best = min(best, 1 + sum(pf[i] for i in H) - Q)
    p = np.array([float(x) for x in pf])
    q = np.array([float(x) for x in qf])
    res = stt.optimal_acceptance(p, stt.WithoutReplacement(q, n))
    assert abs(res.value - float(best)) <= EXACT_TOL


def test_monotone_in_n_and_above_iid() -> None:
    """alpha*_wor is non-decreasing in n and >= alpha*_iid (theory.md sections 2 and 4)."""
    rng = np.random.default_rng(11)
    V = 300
    p = rng.dirichlet(np.ones(V) * 0.5)
    q = rng.dirichlet(np.ones(V) * 0.5)
    prev = 0.0
    for n in (1, 2, 3, 5, 8):
        w = stt.optimal_acceptance(p, stt.WithoutReplacement(q, n)).value
        i = stt.optimal_acceptance(p, stt.IID(q, n)).value
        assert w >= prev - EXACT_TOL
        assert w >= i - EXACT_TOL
        prev = w


def test_large_vocab_certified() -> None:
    rng = np.random.default_rng(5)
    V, n = 4096, 8
    z = rng.normal(size=V) * 2
    q = np.exp(z) / np.exp(z).sum()
    p = np.exp(z + 0.5 * rng.normal(size=V))
    p /= p.sum()
    s = stt.WithoutReplacement(q, n)
    r = stt.optimal_acceptance(p, s)
    assert r.method == "prefix"
    assert r.info["error_bound"] <= EXACT_TOL
    cert = stt.certify(r, p, s)
    assert cert.ok, cert


def test_batched_rows_match() -> None:
    rng = np.random.default_rng(2)
    P = rng.dirichlet(np.ones(8), size=3)
    Qm = rng.dirichlet(np.ones(8), size=3)
    r = stt.optimal_acceptance(P, stt.WithoutReplacement(Qm, 4))
    for b in range(3):
        one = stt.optimal_acceptance(P[b], stt.WithoutReplacement(Qm[b], 4))
        assert abs(r.value[b] - one.value) <= EXACT_TOL
        assert np.array_equal(r.witness[b], one.witness)


def test_too_few_tokens_raises() -> None:
    with pytest.raises(ValueError, match=r"'q'.*fewer than n = 3"):
        stt.WithoutReplacement([0.5, 0.5, 0.0], 3)
    with pytest.raises(ValueError, match="'q'"):
        wor_chain(np.array([0.5, 0.5, 0.0]), 3)


def test_prob_all_in_large_vocab_uses_race() -> None:
    """Scheme.prob_all_in at a vocabulary too large to enumerate agrees with the chain."""
    rng = np.random.default_rng(9)
    V, n = 500, 6
    q = rng.dirichlet(np.ones(V))
    s = stt.WithoutReplacement(q, n)
    H = rng.random(V) < 0.7
    val = float(s.prob_all_in(H))
    ref, err = wor_prob_all_in(q, H, n)
    assert abs(val - ref) <= EXACT_TOL
    assert math.isfinite(err) and err <= EXACT_TOL
