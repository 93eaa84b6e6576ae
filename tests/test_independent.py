"""Independent drafts from different models: the "submodular" method and its certificate.

References: brute force over all subsets (numpy here, ``method="subsets"``), the explicit LP
(``method="lp"``), exact ``Fraction`` arithmetic for the ratio-order counterexample.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spectheory as stt
from spectheory.solvers.submodular import greedy_vertex, product_submodular_min
from spectheory.solvers.subsets import all_masks

#: Agreement between two float64 exact methods.
METHOD_TOL = 1e-9
#: Slack for base-polytope inequalities x(S) <= F(S) (float64 sums of a handful of terms).
POLY_TOL = 1e-12


def brute(p: np.ndarray, qs: list[np.ndarray]) -> float:
    M = all_masks(len(p)).astype(np.float64)
    prod = np.ones(len(M))
    for q in qs:
        prod *= M @ q
    return float(np.min(1.0 + M @ p - prod))


def dist(w: list[int]) -> np.ndarray:
    a = np.array(w, dtype=np.float64)
    if a.sum() == 0:
        a[0] = 1.0
    return a / a.sum()


weights = st.lists(st.integers(0, 40), min_size=6, max_size=6)


@settings(max_examples=1000, derandomize=True)
@given(wp=weights, w1=weights, w2=weights, V=st.integers(2, 6))
def test_matches_brute_force_many_instances(
    wp: list[int], w1: list[int], w2: list[int], V: int
) -> None:
    p, q1, q2 = dist(wp[:V]), dist(w1[:V]), dist(w2[:V])
    s = stt.Independent([q1, q2])
    r = stt.optimal_acceptance(p, s)
    assert r.method == "submodular"
    ref = brute(p, [q1, q2])
    assert abs(r.value - ref) <= METHOD_TOL
    assert r.info["lower_bound"] <= ref + METHOD_TOL
    assert r.status is stt.Status.OPTIMAL
    assert stt.certify(r, p, s).ok


@settings(max_examples=120, derandomize=True)
@given(wp=weights, w1=weights, w2=weights, w3=weights, V=st.integers(2, 6),
       three=st.booleans())
def test_matches_lp(
    wp: list[int], w1: list[int], w2: list[int], w3: list[int], V: int, three: bool
) -> None:
    qs = [dist(w1[:V]), dist(w2[:V])] + ([dist(w3[:V])] if three else [])
    p = dist(wp[:V])
    s = stt.Independent(qs)
    r = stt.optimal_acceptance(p, s, method="submodular")
    lp = stt.optimal_acceptance(p, s, method="lp")
    assert abs(r.value - lp.value) <= METHOD_TOL
    assert r.info["gap"] <= METHOD_TOL


def test_ratio_order_counterexample() -> None:
    """Found by our search (random rounded Dirichlet weights, V = 5): the best prefix of every
    natural single sort order misses alpha*; the minimiser {0, 2, 4} is verified with exact
    Fraction arithmetic over all 32 subsets and by method="subsets"."""
    a, b, c = [15, 12, 1, 61, 12], [26, 20, 53, 1, 1], [12, 1, 16, 53, 19]
    pf = [Fraction(x, sum(a)) for x in a]
    q1f = [Fraction(x, sum(b)) for x in b]
    q2f = [Fraction(x, sum(c)) for x in c]
    exact = min(
        (1 + sum(pf[i] for i in H) - sum(q1f[i] for i in H) * sum(q2f[i] for i in H), H)
        for r in range(6)
        for H in itertools.combinations(range(5), r)
    )
    assert exact == (Fraction(9269, 10201), (0, 2, 4))
    p, q1, q2 = (np.array(x, dtype=np.float64) / sum(x) for x in (a, b, c))
    orders = {
        "p/q1": p / q1,
        "p/q2": p / q2,
        "p/mean": p / ((q1 + q2) / 2),
        "p/geomean": p / np.sqrt(q1 * q2),
        "p/max": p / np.maximum(q1, q2),
        "p/min": p / np.minimum(q1, q2),
        "p/(q1 q2)": p / (q1 * q2),
        "p - q1 q2": p - q1 * q2,
        "p/Pr(drafted)": p / (q1 + q2 - q1 * q2),
    }
    for name, key in orders.items():
        o = np.argsort(key, kind="stable")
        best = min(
            1 + p[o[:k]].sum() - q1[o[:k]].sum() * q2[o[:k]].sum() for k in range(6)
        )
        assert best > float(exact[0]) + 1e-3, name
    s = stt.Independent([q1, q2])
    sub = stt.optimal_acceptance(p, s, method="subsets")
    assert abs(sub.value - float(exact[0])) <= METHOD_TOL
    r = stt.optimal_acceptance(p, s)
    assert abs(r.value - float(exact[0])) <= METHOD_TOL
    assert r.witness_tokens().tolist() == [0, 2, 4]


def test_base_point_is_in_base_polytope() -> None:
    """The certificate x satisfies x(S) <= F(S) for all S and x(Omega) = F(Omega); hence
    sum_i min(x_i, 0) <= min F (Edmonds), checked by brute force."""
    rng = np.random.default_rng(4)
    V = 8
    p = rng.dirichlet(np.ones(V))
    qs = rng.dirichlet(np.ones(V), size=2)
    res = product_submodular_min(p, qs)
    M = all_masks(V).astype(np.float64)
    F = M @ p - (M @ qs[0]) * (M @ qs[1])
    assert np.all(M @ res.x <= F + POLY_TOL)
    assert abs(res.x.sum() - F[-1]) <= POLY_TOL
    assert res.lower <= F.min() + POLY_TOL
    assert abs(res.value - F.min()) <= METHOD_TOL


def test_greedy_vertex_chain() -> None:
    rng = np.random.default_rng(1)
    V = 7
    p = rng.dirichlet(np.ones(V))
    qs = rng.dirichlet(np.ones(V), size=3)
    order = rng.permutation(V)
    x, chain = greedy_vertex(order, p, qs)
    for k in range(1, V + 1):
        S = order[:k]
        F = p[S].sum() - np.prod([q[S].sum() for q in qs])
        assert abs(chain[k - 1] - F) <= POLY_TOL
        assert abs(x[S].sum() - F) <= POLY_TOL


def test_three_models_against_subsets() -> None:
    rng = np.random.default_rng(8)
    for _ in range(20):
        V = 7
        p = rng.dirichlet(np.ones(V) * 0.5)
        qs = list(rng.dirichlet(np.ones(V) * 0.5, size=3))
        r = stt.optimal_acceptance(p, stt.Independent(qs))
        assert abs(r.value - brute(p, qs)) <= METHOD_TOL


def test_medium_vocab_certified() -> None:
    rng = np.random.default_rng(12)
    V = 2000
    p = rng.dirichlet(np.ones(V))
    qs = [rng.dirichlet(np.ones(V)), rng.dirichlet(np.ones(V))]
    s = stt.Independent(qs)
    r = stt.optimal_acceptance(p, s)
    assert r.status is stt.Status.OPTIMAL
    assert r.info["gap"] <= METHOD_TOL
    assert stt.certify(r, p, s).ok


def test_batched_rows() -> None:
    rng = np.random.default_rng(3)
    P = rng.dirichlet(np.ones(5), size=4)
    Q1 = rng.dirichlet(np.ones(5), size=4)
    Q2 = rng.dirichlet(np.ones(5), size=4)
    r = stt.optimal_acceptance(P, stt.Independent([Q1, Q2]))
    for b in range(4):
        assert abs(r.value[b] - brute(P[b], [Q1[b], Q2[b]])) <= METHOD_TOL


def test_method_refuses_other_schemes() -> None:
    with pytest.raises(ValueError, match="submodular"):
        stt.optimal_acceptance([0.5, 0.5], stt.IID([0.5, 0.5], 2), method="submodular")
