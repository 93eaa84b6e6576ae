"""Exact rational solver (method="exact"): known values, agreement with the LP, errors."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction as F

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st_

import spectheory as st
from spectheory.solvers.exact import exact_prob_all_in, exact_subset_value

#: Float LP (HiGHS) vs exact rational value: the LP's own feasibility tolerance is 1e-10.
EXACT_VS_LP_TOL = 1e-8

# theory.md section 8 (worked example; values checked there against an LP).
P8 = [F(3, 5), F(3, 10), F(1, 10)]
Q8 = [F(1, 5), F(3, 10), F(1, 2)]


def _frac_dist(weights: list[int]) -> list[F]:
    total = sum(weights)
    return [F(w, total) for w in weights]


@st_.composite
def rational_dist(draw: st_.DrawFn, V: int, min_support: int = 1) -> list[F]:
    w = draw(st_.lists(st_.integers(0, 9), min_size=V, max_size=V))
    for i in range(min_support):  # guarantee enough positive entries
        w[i] = max(w[i], 1)
    perm = draw(st_.permutations(range(V)))
    return _frac_dist([w[j] for j in perm])


def _brute_min(p: list[F], scheme: st.Scheme) -> F:
    """Independent oracle: min over all 2^V sets of exact 1 + p(H) - Q(H^n)."""
    V = len(p)
    best = None
    for bits in itertools.product([False, True], repeat=V):
        H = np.array(bits)
        v = exact_subset_value(p, scheme, H)
        best = v if best is None else min(best, v)
    return best


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: st.IID(Q8, 2), F(19, 25)),
        (lambda: st.WithoutReplacement(Q8, 2), F(31, 35)),
        (lambda: st.Greedy(Q8, 2), F(4, 5)),
        (lambda: st.Hub(Q8), F(4, 5)),  # SpecHub attains the greedy alpha* for n = 2 (theory 6)
        (lambda: st.IID(Q8, 1), F(3, 5)),  # single draft 3/5 (theory 8)
    ],
)
@pytest.mark.parametrize("strategy", ["auto", "subsets"])
def test_theory_section8(make: Callable[[], st.Scheme], expected: F, strategy: str) -> None:
    r = st.optimal_acceptance(P8, make(), method="exact", strategy=strategy)
    assert isinstance(r.value, F)
    assert r.value == expected
    assert r.status is st.Status.OPTIMAL and r.method == "exact"
    assert r.witness.dtype == np.bool_ and r.witness.shape == (3,)
    assert exact_subset_value(P8, make(), r.witness) == expected


def test_iid_section8_witness() -> None:
    # theory.md section 8: H* = {1, 2}.
    r = st.optimal_acceptance(P8, st.IID(Q8, 2), method="exact")
    assert r.witness_tokens().tolist() == [1, 2]
    assert r.info["order"] == [2, 1, 0]  # ascending p/q: token 2, token 1, token 0


def test_singleton_trap_value() -> None:
    # theory.md section 2: p = (.3,.3,.4), q = (.4,.4,.2), n = 2 -> alpha* = 0.96, H* = {0, 1}.
    p = [F(3, 10), F(3, 10), F(2, 5)]
    q = [F(2, 5), F(2, 5), F(1, 5)]
    r = st.optimal_acceptance(p, st.IID(q, 2), method="exact", strategy="subsets")
    assert r.value == F(24, 25)
    assert r.witness_tokens().tolist() == [0, 1]
    assert min(r.info["subset_values"]) == r.value
    assert r.info["subset_values"][0b011] == F(24, 25)


def test_sympy_rational_inputs() -> None:
    R = sympy.Rational
    p = [R(3, 5), R(3, 10), R(1, 10)]
    q = [R(1, 5), R(3, 10), R(1, 2)]
    r = st.optimal_acceptance(p, st.IID(q, 2), method="exact")
    assert r.value == F(19, 25) and isinstance(r.value, F)
    r2 = st.optimal_acceptance(p, st.Independent([q, Q8]), method="exact")
    assert r2.value == F(19, 25)  # Independent with q_1 = q_2 is i.i.d.


def test_exact_normalize_integers() -> None:
    r = st.optimal_acceptance([6, 3, 1], st.IID([2, 3, 5], 2, normalize=True), method="exact",
                              normalize=True)
    assert r.value == F(19, 25)


def test_batch() -> None:
    p = [P8, [F(3, 10), F(3, 10), F(2, 5)]]
    r = st.optimal_acceptance(p, st.IID([Q8, [F(2, 5), F(2, 5), F(1, 5)]], 2), method="exact")
    assert r.value.dtype == object and r.value.tolist() == [F(19, 25), F(24, 25)]
    assert r.witness.shape == (2, 3)
    r1 = st.optimal_acceptance(p, st.IID(Q8, 2), method="exact")  # shared scheme row
    assert r1.value[0] == F(19, 25)


def test_joint_matches_iid() -> None:
    tuples = list(itertools.product(range(3), repeat=2))
    probs = [Q8[a] * Q8[b] for a, b in tuples]
    r = st.optimal_acceptance(P8, st.Joint(tuples, probs, V=3), method="exact")
    assert r.value == F(19, 25)


def test_exact_prob_all_in_wor_matches_float() -> None:
    s = st.WithoutReplacement([F(1, 2), F(1, 4), F(1, 8), F(1, 8)], 3)
    for bits in itertools.product([False, True], repeat=4):
        H = np.array(bits)
        # the float scheme's Q(H^n) is an independent implementation (series / closed forms)
        assert abs(float(exact_prob_all_in(s, H)) - float(s.prob_all_in(H))) <= EXACT_VS_LP_TOL


def test_auto_never_picks_exact() -> None:
    scheme = st.Independent([Q8, Q8])
    r = st.optimal_acceptance(P8, scheme)
    assert r.method != "exact"
    assert st.available_methods(scheme)["exact"] is None
    assert st.available_methods(st.IID([0.2, 0.3, 0.5], 2))["exact"] is not None


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"argument 'p'.*exact rational"):
        st.optimal_acceptance([0.6, 0.3, 0.1], st.IID(Q8, 2), method="exact")
    with pytest.raises(ValueError, match="floating-point"):
        st.optimal_acceptance(P8, st.IID([0.2, 0.3, 0.5], 2), method="exact")
    with pytest.raises(ValueError, match=r"argument 'q'.*not exactly 1"):
        st.IID([F(1, 3), F(1, 3), F(1, 3) + F(1, 10**12)], 2)
    with pytest.raises(ValueError, match=r"argument 'p', row 1.*not exactly 1"):
        st.optimal_acceptance([P8, [F(1, 3), F(1, 3), F(1, 3) + F(1, 10**12)]], st.IID(Q8, 2),
                              method="exact")
    with pytest.raises(ValueError, match="argument 'strategy'"):
        st.optimal_acceptance(P8, st.WithoutReplacement(Q8, 2), method="exact", strategy="prefix")
    with pytest.raises(ValueError, match="vocabulary size"):
        st.optimal_acceptance([*P8[:2], F(1, 10), F(0)], st.IID(Q8, 2), method="exact")


SCHEMES = ["iid", "wor", "greedy", "hub", "independent", "joint"]


@settings(max_examples=80, derandomize=True)
@given(data=st_.data(), V=st_.integers(2, 5), n=st_.integers(1, 3),
       kind=st_.sampled_from(SCHEMES))
def test_exact_equals_lp_and_brute_force(
    data: st_.DataObject, V: int, n: int, kind: str
) -> None:
    p = data.draw(rational_dist(V))
    q = data.draw(rational_dist(V, min_support=min(n, V)))
    if kind == "iid":
        scheme = st.IID(q, n)
    elif kind == "wor":
        scheme = st.WithoutReplacement(q, min(n, V))
    elif kind == "greedy":
        scheme = st.Greedy(q, min(n, V))
    elif kind == "hub":
        scheme = st.Hub(data.draw(rational_dist(V, min_support=2)))
    elif kind == "independent":
        scheme = st.Independent([q] + [data.draw(rational_dist(V)) for _ in range(n - 1)])
    else:
        T = data.draw(st_.integers(1, 6))
        tuples = [data.draw(st_.lists(st_.integers(0, V - 1), min_size=n, max_size=n))
                  for _ in range(T)]
        scheme = st.Joint(tuples, _frac_dist([data.draw(st_.integers(1, 5)) for _ in tuples]),
                          V=V)
    r = st.optimal_acceptance(p, scheme, method="exact")
    rs = st.optimal_acceptance(p, scheme, method="exact", strategy="subsets")
    lp = st.optimal_acceptance([float(x) for x in p], scheme, method="lp")
    assert isinstance(r.value, F)
    assert r.value == rs.value == _brute_min(p, scheme)
    assert exact_subset_value(p, scheme, r.witness) == r.value
    assert abs(float(r.value) - lp.value) <= EXACT_VS_LP_TOL
