"""The JAX without-replacement fast path (``spectheory.solvers.jax_backend.wor_moments``).

References: the brute-force subset form (exact enumeration of ordered draws, small V) and the
numpy path ``spectheory.solvers.prefix._prefix_wor`` (bucketed fast path / reference chain, itself
tested against exact enumeration and an independent quadrature in ``tests/test_wor*.py``). The
contract checked on every instance: a row whose error estimate is finite is within it of the
reference; rows outside the contract say so (``error = inf``) and the API recomputes them with
numpy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import spectheory as st
from spectheory.solvers.jax_backend import core
from spectheory.solvers.jax_backend.solve import x64
from spectheory.solvers.jax_backend.wor_moments import WOR_FAST_RETRY, alpha_wor_fast
from spectheory.solvers.prefix import _prefix_wor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import families

#: Exact enumeration and the numpy path agree to the numpy contract (1e-11); the difference of
#: two float64 evaluations of the same chain is a few ulps more.
ULPS = 1e-14


def _fast(p: np.ndarray, q: np.ndarray, n: int, **kw: object) -> tuple[np.ndarray, np.ndarray]:
    with x64(p.dtype == np.float64):
        out = alpha_wor_fast(jnp.asarray(p), jnp.asarray(q), n, **kw)
        return np.asarray(out.value, np.float64), np.asarray(out.error, np.float64)


@pytest.mark.parametrize("n", [3, 4, 5])
@pytest.mark.parametrize(("groups", "candidates"), [(None, 8), (3, 1)])
def test_matches_subsets_with_zeros_and_ties(n: int, groups: int | None, candidates: int) -> None:
    """Small V with exact zeros in p and q and tied ratios, against exact enumeration; with one
    candidate group out of three the pruning bound must carry the error (value within it)."""
    rng = np.random.default_rng(100 + n)
    V = 9
    p = rng.dirichlet(np.ones(V), size=4)
    q = rng.dirichlet(np.ones(V), size=4)
    p[0, :2] = 0.0  # zero target mass
    q[1, 3] = 0.0  # zero draft mass: ratio inf
    q[2] = np.full(V, 1.0 / V)
    p[2] = np.repeat([0.05, 0.1, 0.183333333333333], 3)  # three tied ratio groups
    p /= p.sum(1, keepdims=True)
    q /= q.sum(1, keepdims=True)
    exact = st.optimal_acceptance(p, st.WithoutReplacement(q, n), method="subsets").value
    v, e = _fast(p, q, n, groups=groups, candidates=candidates)
    assert np.all(np.isfinite(e))
    assert np.all(np.abs(v - exact) <= e + ULPS), (v - exact, e)
    if groups is None:
        assert np.max(np.abs(v - exact)) <= 1e-13


def test_underflow_regression_row() -> None:
    """A softmax row at temperature 0.5 (V = 32k, n = 16, mass outside the top 15 tokens 0.011)
    where the log-domain chain loses 4.7e-4 on chain values and 2e-7 on alpha* (an underflowed
    prefix e_{m-1} later multiplied by e^{0.847 t} - 1); the ring form is exact here."""
    rng = np.random.default_rng(1)
    rows = None
    for name, fam in families.FAMILIES.items():
        rows = [fam(rng, 32768) for _ in range(3)]
        if name == "temp_0.5":
            break
    assert rows is not None
    p = np.array([rows[1][0]])
    q = np.array([rows[1][1]])
    ref = _prefix_wor(p, q, 16)[0]
    v, e = _fast(p, q, 16)
    assert e[0] <= core.WOR_FAST_TOL
    assert abs(v[0] - ref[0]) <= e[0]
    with x64():
        old = np.asarray(core.alpha_wor_chain_with_order(jnp.asarray(p), jnp.asarray(q), 16).value)
    assert abs(old[0] - ref[0]) > 1e-8  # the instance does exercise the old chain's flaw


#: Families the fast path must take whole (no numpy fallback) at V = 8192: every family whose
#: draft is not peaked (near one-hot, greedy-like and temperature <= 0.1 drafts may fall back).
ON_DEVICE = [
    "temp_0.5", "temp_2", "topk_draft", "topp_both", "distilled", "quantised",
    "layer_skip", "ngram", "mixture", "ties_flat",
]  # fmt: skip


@pytest.mark.parametrize("n", [3, 8, 16])
def test_families_float64(n: int) -> None:
    """Every family of the benchmarks (2 rows each, V = 8192): within the reported estimate of the
    numpy path wherever the estimate is finite; the non-peaked families stay on the device."""
    rng = np.random.default_rng(7 + n)
    names = list(families.FAMILIES)
    pairs = [families.FAMILIES[nm](rng, 8192) for nm in names for _ in range(2)]
    p = np.array([a for a, _ in pairs])
    q = np.array([b for _, b in pairs])
    keep = (q > 0).sum(1) >= n
    p, q = p[keep], q[keep]
    labels = [nm for nm in names for _ in range(2)]
    labels = [lb for lb, k in zip(labels, keep, strict=True) if k]
    ref = _prefix_wor(p, q, n)[0]
    v, e = _fast(p, q, n)
    fin = np.isfinite(e)
    assert np.all(np.abs(v - ref)[fin] <= e[fin] + ULPS), [
        (lb, d, b) for lb, d, b, f in zip(labels, v - ref, e, fin, strict=True) if f
    ]
    for lb, err in zip(labels, e, strict=True):
        if lb in ON_DEVICE:
            assert err <= core.WOR_FAST_TOL, (lb, err)


@pytest.mark.parametrize("n", [3, 16])
def test_families_float32(n: int) -> None:
    """float32 inputs against float64 numpy on the same (rounded, renormalised) inputs: within
    the reported estimate (which includes the float32 rounding contract, 1e-6)."""
    rng = np.random.default_rng(70 + n)
    names = ["temp_2", "topp_both", "distilled", "mixture", "ties_flat", "layer_skip"]
    pairs = [families.FAMILIES[nm](rng, 8192) for nm in names]
    p32 = np.array([a for a, _ in pairs], np.float32)
    q32 = np.array([b for _, b in pairs], np.float32)
    p64 = p32.astype(np.float64)
    q64 = q32.astype(np.float64)
    p64 /= p64.sum(1, keepdims=True)
    q64 /= q64.sum(1, keepdims=True)
    ref = _prefix_wor(p64, q64, n)[0]
    v, e = _fast(p32, q32, n)
    assert np.all(e <= core.WOR_FAST_TOL32), e
    assert np.all(np.abs(v - ref) <= e), (v - ref, e)


def test_api_retry_and_fallback_rows() -> None:
    """Four rows: a temperature-2 pair (first device pass), a near one-hot draft (masses
    1e-300..1e-12 beside 1 - eps: range 1e13) and a draft at temperature 0.01 (mass outside the
    top 3 tokens 1e-21: range 1e23), both taken by the second device pass, and a draft whose mass
    outside its top 3 tokens is 4e-302 (a range beyond 1e30: outside both passes, recomputed with
    numpy and listed). Values within the reported bound of the numpy path."""
    rng = np.random.default_rng(5)
    V = 4096
    odd = np.full(V, 1e-305)
    odd[0] = 1.0
    odd[1:4] = 1e-200
    pairs = [
        families.FAMILIES["temp_2"](rng, V),
        families.near_one_hot(rng, V),
        families.FAMILIES["temp_0.01"](rng, V),
        (families.FAMILIES["temp_2"](rng, V)[0], odd),
    ]
    p = np.array([a for a, _ in pairs])
    q = np.array([b for _, b in pairs])
    r = st.optimal_acceptance(p, st.WithoutReplacement(q, 4), backend="jax")
    ref = _prefix_wor(p, q, 4)[0]
    assert r.info["numpy_fallback_rows"] == [3]
    assert r.info["device_retry_rows"] == 2
    assert r.value[3] == ref[3]
    assert np.all(np.abs(r.value - ref) <= r.info["error_bound"])
    assert r.info["error_bound"] <= core.WOR_FAST_TOL
    k = r.info["prefix_length"]
    assert [int(w.sum()) for w in r.witness] == [int(x) for x in k]
    # a memory budget of one byte: one row per chunk in both passes, the same answers
    tiny = st.optimal_acceptance(p, st.WithoutReplacement(q, 4), backend="jax", max_chunk_bytes=1)
    assert tiny.info["num_chunks"] == 4
    np.testing.assert_array_equal(tiny.value, r.value)
    np.testing.assert_array_equal(tiny.witness, r.witness)


def test_core_marks_rows_outside_the_contract() -> None:
    """The functional core returns nan, not an unvouched number, where the estimate is too big."""
    rng = np.random.default_rng(6)
    p, q = families.near_one_hot(rng, 4096)
    with x64():
        v, _ = core.alpha_wor(jnp.asarray(p), jnp.asarray(q), 8)
        out = alpha_wor_fast(jnp.asarray(p), jnp.asarray(q), 8)
    assert not np.isfinite(float(out.error)) or float(out.error) > core.WOR_FAST_TOL
    assert np.isnan(float(v))


def test_one_hot_draft_rest_masses() -> None:
    """A draft one-hot to 1e-15 (temperature 0.05): 1 - q_i of the top token must be the sum of
    the others, not cumsum - q (which cancelled to 10% and put alpha* off by 7e-7 for n = 4 and
    n = 2 alike); JAX and numpy agree on the rest masses to rounding and on alpha*."""
    from spectheory.schemes import exclusive_sums as np_exclusive

    rng = np.random.default_rng(5)
    rows = [families.FAMILIES["greedy_draft"](rng, 32768) for _ in range(4)]
    p = np.array([rows[2][0]])
    q = np.array([rows[2][1]])
    with x64():
        rest = np.asarray(core.exclusive_sums(jnp.asarray(q)))
    ref_rest = np_exclusive(q)
    assert np.max(np.abs(rest - ref_rest) / ref_rest) <= 1e-12
    for n in (2, 4):
        r = st.optimal_acceptance(p, st.WithoutReplacement(q, n), backend="jax")
        ref = _prefix_wor(p, q, n)[0]
        assert abs(r.value[0] - ref[0]) <= max(r.info["error_bound"], 1e-14)


@pytest.mark.parametrize("family", ["near_one_hot_q", "near_one_hot_both", "low_temperature",
                                    "zeros", "ties", "disjoint"])  # fmt: skip
def test_guard_families_against_fractions(family: str) -> None:
    """The guard's adversarial families (masses 1e-300..1e-12 beside 1 - eps, temperatures
    0.01-0.1, exact zeros, ties, disjoint supports; ``tests/guard_core.py``) at V = 5 and 6:
    the fast path (default, with the pruning forced to one candidate group, and the API's second
    pass) and the API,
    against alpha* from the subset dual in Fraction arithmetic on the exact float inputs
    (``guard_core.exact_alpha_star``, tuple laws recomputed by ``exact_refs.exact_tuple_probs``).
    Every row with a finite estimate is within it; the API within its reported bound."""
    import guard_core as G
    from exact_refs import exact_tuple_probs, fractions

    rng = np.random.default_rng(len(family) * 7919)
    checked = 0
    for V in (5, 6):
        for _ in range(4):
            p, q = G.instance(family, rng, V)
            for n in (3, 4):
                if int((q > 0).sum()) < n:
                    continue
                scheme = st.WithoutReplacement(q, n)
                tuples, probs = exact_tuple_probs(scheme, fractions(q))
                exact = float(G.exact_alpha_star(fractions(p), tuples, probs))
                for kw in ({}, {"groups": 3, "candidates": 1}, WOR_FAST_RETRY):
                    v, e = _fast(p[None], q[None], n, **kw)
                    if np.isfinite(e[0]):
                        assert abs(v[0] - exact) <= e[0] + ULPS, (family, V, n, kw, v[0], exact, e)
                        checked += 1
                r = st.optimal_acceptance(p, scheme, backend="jax")
                assert abs(float(r.value) - exact) <= r.info["error_bound"] + ULPS, (family, V, n)
    assert checked > 0
