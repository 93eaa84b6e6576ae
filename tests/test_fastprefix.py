"""The bucketed IID prefix path (spectheory.solvers.fastprefix) against the full-sort reference.

Every comparison is made three ways: the fast value against the reference value, the fast value
against the subset value of its own witness recomputed with math.fsum (so the witness certifies it),
and that certified value against the certified value of the reference's witness (neither may be
beaten by more than rounding).
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

import spectheory as st
from spectheory.solvers.fastprefix import (
    FAST_MIN_V,
    bucket_mantissa_bits,
    prefix_iid_fast,
    prefix_iid_reference,
)
from spectheory.tolerances import CERT_GAP_TOL

#: Two optimal witnesses have the same exact subset value; recomputed with math.fsum, their values
#: differ only by the final roundings of 1 + p(H) - q(H)^n (a few ulp of 1).
CERTIFIED_ATOL: float = 1e-15


def value_atol(V: int, n: int) -> float:
    """Allowed error of a *returned* value (fast or reference) against the fsum value of a set.

    Both paths accumulate prefix sums in floating point (the reference sequentially, the fast
    path per bucket), error up to ~V ulp for p(H) and ~n V ulp for q(H)^n in the worst case.
    """
    return max(CERTIFIED_ATOL, (n + 2) * V * float(np.finfo(np.float64).eps))


def _fsum_value(p: np.ndarray, q: np.ndarray, H: np.ndarray, n: int) -> float:
    """Subset value 1 + p(H) - q(H)^n with correctly rounded sums (independent of both paths)."""
    return 1.0 + math.fsum(p[H].tolist()) - min(math.fsum(q[H].tolist()), 1.0) ** n


def _check(p: np.ndarray, q: np.ndarray, n: int, **kw: object) -> None:
    p2, q2 = np.atleast_2d(p), np.atleast_2d(q)
    V = p2.shape[1]
    v, H = prefix_iid_fast(p2, q2, n, min_v=1, **kw)
    vr, Hr = prefix_iid_reference(p2, q2, n)
    assert v.shape == vr.shape and H.shape == Hr.shape and H.dtype == np.bool_
    np.testing.assert_allclose(v, vr, rtol=0, atol=value_atol(V, n))
    for b in range(p2.shape[0]):
        own = _fsum_value(p2[b], q2[b], H[b], n)
        ref = _fsum_value(p2[b], q2[b], Hr[b], n)
        assert abs(own - v[b]) <= value_atol(V, n), (b, own, v[b])  # the witness certifies v
        assert abs(own - ref) <= CERTIFIED_ATOL, (b, own, ref)  # same optimum, certified


def _dist(rng: np.random.Generator, V: int, kind: str) -> np.ndarray:
    """Adversarial distributions: ties, zeros, one-hot, 1e-300 masses, huge ratio ranges."""
    if kind == "dirichlet":
        w = rng.dirichlet(np.ones(V))
    elif kind == "ties":
        w = rng.integers(1, 4, size=V).astype(np.float64)
    elif kind == "zeros":
        w = rng.random(V) * (rng.random(V) < 0.5)
        if w.sum() == 0:
            w[rng.integers(V)] = 1.0
    elif kind == "onehot":
        w = np.zeros(V)
        w[rng.integers(V)] = 1.0
    elif kind == "tiny":
        w = rng.random(V)
        w[rng.random(V) < 0.5] = 1e-300
    elif kind == "range":  # ratios spanning ~600 decades (float32 under/overflow of the key)
        w = 10.0 ** rng.uniform(-300, 0, size=V)
    elif kind == "logits":
        w = np.exp(3.0 * rng.standard_normal(V))
    else:  # pragma: no cover
        raise AssertionError(kind)
    return w / w.sum()


KINDS = ["dirichlet", "ties", "zeros", "onehot", "tiny", "range", "logits"]


@settings(max_examples=400)
@given(
    seed=hst.integers(0, 2**32 - 1),
    V=hst.integers(1, 64),
    pk=hst.sampled_from(KINDS),
    qk=hst.sampled_from(KINDS),
    n=hst.integers(1, 6),
    m=hst.integers(0, 9),
)
def test_fast_equals_reference_adversarial(
    seed: int, V: int, pk: str, qk: str, n: int, m: int
) -> None:
    rng = np.random.default_rng(seed)
    _check(_dist(rng, V, pk), _dist(rng, V, qk), n, mantissa_bits=m)


@settings(max_examples=60)
@given(seed=hst.integers(0, 2**32 - 1), B=hst.integers(2, 6), V=hst.integers(1, 40),
       n=hst.integers(1, 4), m=hst.integers(0, 6))
def test_fast_batch_equals_reference(seed: int, B: int, V: int, n: int, m: int) -> None:
    """Batches mix row kinds, so some rows win at a boundary, some inside a bucket, some at 0."""
    rng = np.random.default_rng(seed)
    p = np.stack([_dist(rng, V, KINDS[int(rng.integers(len(KINDS)))]) for _ in range(B)])
    q = np.stack([_dist(rng, V, KINDS[int(rng.integers(len(KINDS)))]) for _ in range(B)])
    _check(p, q, n, mantissa_bits=m)
    # per row, the batch answer is the single-row answer
    v, H = prefix_iid_fast(p, q, n, min_v=1, mantissa_bits=m)
    for b in range(B):
        vb, Hb = prefix_iid_fast(p[b : b + 1], q[b : b + 1], n, min_v=1, mantissa_bits=m)
        assert v[b] == vb[0]
        assert np.array_equal(H[b], Hb[0])


def _brute_force_fraction(p: list[Fraction], q: list[Fraction], n: int) -> Fraction:
    """alpha* = min_H 1 + p(H) - q(H)^n over all 2^V subsets, in exact rational arithmetic."""
    V = len(p)
    best = Fraction(1)
    for bits in itertools.product([0, 1], repeat=V):
        pH = sum((p[i] for i in range(V) if bits[i]), Fraction(0))
        qH = sum((q[i] for i in range(V) if bits[i]), Fraction(0))
        best = min(best, 1 + pH - qH**n)
    return best


@settings(max_examples=40)
@given(
    p_int=hst.lists(hst.integers(0, 6), min_size=1, max_size=8),
    q_int=hst.lists(hst.integers(0, 6), min_size=1, max_size=8),
    n=hst.integers(1, 4),
    m=hst.integers(0, 4),
)
def test_fast_matches_exact_rational_brute_force(
    p_int: list[int], q_int: list[int], n: int, m: int
) -> None:
    """Small integer weights give many exact ties; the oracle is exact Fraction brute force."""
    V = min(len(p_int), len(q_int))
    p_int, q_int = p_int[:V], q_int[:V]
    if sum(p_int) == 0 or sum(q_int) == 0:
        return
    pf = [Fraction(x, sum(p_int)) for x in p_int]
    qf = [Fraction(x, sum(q_int)) for x in q_int]
    exact = _brute_force_fraction(pf, qf, n)
    p = np.array([float(x) for x in pf])
    q = np.array([float(x) for x in qf])
    v, H = prefix_iid_fast(p[None], q[None], n, min_v=1, mantissa_bits=m)
    assert abs(v[0] - float(exact)) <= value_atol(V, n)
    pH = sum((pf[i] for i in range(V) if H[0, i]), Fraction(0))
    qH = sum((qf[i] for i in range(V) if H[0, i]), Fraction(0))
    assert 1 + pH - qH**n == exact  # the witness is optimal, exactly


def test_worked_example_theory_section_8() -> None:
    """theory.md section 8: p = (.6, .3, .1), q = (.2, .3, .5), n = 2 gives 19/25, H* = {1, 2}."""
    p = np.array([[0.6, 0.3, 0.1]])
    q = np.array([[0.2, 0.3, 0.5]])
    for m in (0, 3, 7):
        v, H = prefix_iid_fast(p, q, 2, min_v=1, mantissa_bits=m)
        assert abs(v[0] - 19 / 25) <= value_atol(3, 2)
        assert H[0].tolist() == [False, True, True]


def test_single_draft_is_one_minus_tv() -> None:
    """n = 1: alpha* = sum_y min(p(y), q(y)) (theory.md section 2), here at V = 50_000."""
    rng = np.random.default_rng(7)
    p, q = _dist(rng, 50_000, "logits"), _dist(rng, 50_000, "logits")
    v, _ = prefix_iid_fast(p[None], q[None], 1)
    expected = math.fsum(np.minimum(p, q).tolist())
    assert abs(v[0] - expected) <= value_atol(50_000, 1)


@pytest.mark.parametrize("kind", ["logits", "dirichlet", "range", "tiny", "zeros", "ties"])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_fast_equals_reference_large_vocabulary(kind: str, n: int) -> None:
    rng = np.random.default_rng(11 + n)
    V = 40_000
    p = _dist(rng, V, kind)
    # draft: a perturbation of p where that makes sense, else independent
    if kind == "logits":
        q = p * np.exp(rng.standard_normal(V))
        q /= q.sum()
    else:
        q = _dist(rng, V, kind)
    _check(p, q, n)


def test_everything_in_one_bucket() -> None:
    """p = q (every ratio 1) and p = q up to 1 ulp: the whole vocabulary is one candidate bucket."""
    rng = np.random.default_rng(3)
    q = _dist(rng, 5000, "dirichlet")
    _check(q, q, 2)
    p = q * (1.0 + 1e-12 * rng.standard_normal(5000))
    p /= p.sum()
    _check(p, q, 3)
    stats: dict[str, float] = {}
    v, _ = prefix_iid_fast(q[None], q[None], 2, min_v=1, stats=stats)
    # one bucket of a single ratio (a tie group): the chain is concave inside it, its ends are
    # boundaries, so nothing is sorted (the bound alone could not prune it)
    assert stats["sorted_fraction"] == 0.0
    assert abs(v[0] - 1.0) <= value_atol(5000, 2)  # p = q: alpha* = 1


def test_zero_mass_corner_cases() -> None:
    """q = 0 tokens (ratio +inf), p = q = 0 tokens (0/0), -0.0 entries, one-hot rows."""
    p = np.array([[0.5, 0.0, 0.0, 0.5, 0.0, 0.0]])
    q = np.array([[0.0, 0.0, 0.5, 0.0, 0.5, -0.0]])
    for n in (1, 2, 3):
        _check(p, q, n)  # disjoint supports: alpha* = 0 for every n
        v, H = prefix_iid_fast(p, q, n, min_v=1)
        assert v[0] == 0.0 and H[0].tolist() == [False, False, True, False, True, False]
    onehot = np.array([[0.0, 1.0, 0.0]])
    _check(onehot, onehot, 4)


def test_broadcast_q_and_batch_rows() -> None:
    rng = np.random.default_rng(5)
    V = 6000
    q = _dist(rng, V, "logits")
    p = np.stack([_dist(rng, V, "logits") for _ in range(3)])
    qb = np.broadcast_to(q, p.shape)
    v, H = prefix_iid_fast(p, qb, 2)
    vr, _ = prefix_iid_reference(p, np.ascontiguousarray(qb), 2)
    np.testing.assert_allclose(v, vr, rtol=0, atol=value_atol(V, 2))
    for b in range(3):
        assert abs(_fsum_value(p[b], q, H[b], 2) - v[b]) <= value_atol(V, 2)


def test_through_public_api_is_certified() -> None:
    """method="prefix" on IID above FAST_MIN_V runs the fast path; certify it."""
    rng = np.random.default_rng(9)
    V = 3 * FAST_MIN_V
    p, q = _dist(rng, V, "logits"), _dist(rng, V, "logits")
    scheme = st.IID(q, 2)
    r = st.optimal_acceptance(p, scheme, method="prefix")
    cert = st.certify(r, p, scheme)
    assert r.status is st.Status.OPTIMAL
    assert cert.ok and cert.value_error <= CERT_GAP_TOL
    vr, _ = prefix_iid_reference(p[None], q[None], 2)
    assert abs(r.value - vr[0]) <= value_atol(V, 2)
    pb = np.stack([p, _dist(rng, V, "logits")])
    rb = st.optimal_acceptance(pb, scheme, method="prefix")
    assert st.certify(rb, pb, scheme).ok


def test_bucket_bits_and_bad_argument() -> None:
    assert bucket_mantissa_bits(2**17) == 6 and bucket_mantissa_bits(10) == 3
    assert bucket_mantissa_bits(2**30) == 7
    p = np.full((1, 4), 0.25)
    with pytest.raises(ValueError, match="mantissa_bits"):
        prefix_iid_fast(p, p, 2, min_v=1, mantissa_bits=24)


def test_small_support_rows_equal_the_reference_bitwise() -> None:
    """Drafts with few positive entries (top-k truncation; V / 32 or fewer) take the shortcut on
    their support: value and witness are bitwise those of the full-sort reference, in a batch
    mixed with ordinary rows, with zeros of p inside the support, and with a positive-q ratio that
    overflows to +inf (that row is left to the bucketed path: within its tolerance)."""
    from spectheory.solvers.fastprefix import IID_SMALL_SUPPORT_DIV

    rng = np.random.default_rng(31)
    V = 8192
    p = rng.dirichlet(np.ones(V), size=4)
    q = np.zeros((4, V))
    supp = rng.choice(V, size=V // IID_SMALL_SUPPORT_DIV, replace=False)
    q[0, supp] = rng.dirichlet(np.ones(supp.size))
    q[1, supp[:50]] = rng.dirichlet(np.ones(50))
    p[1, supp[:10]] = 0.0  # ratio 0 inside the support
    p[1] /= p[1].sum()
    q[2] = rng.dirichlet(np.ones(V))  # ordinary row
    q[3, supp[:50]] = rng.dirichlet(np.ones(50))
    q[3, supp[0]] = 1e-320  # p / q overflows to inf: shortcut declines
    q[3] /= q[3].sum()
    for n in (1, 2, 8):
        v, m = prefix_iid_fast(p, q, n)
        vr, mr = prefix_iid_reference(p, q, n)
        assert np.array_equal(v[:2], vr[:2]) and np.array_equal(m[:2], mr[:2])
        assert np.all(np.abs(v - vr) <= (n + 2) * V * np.finfo(float).eps)
