"""Tests of spectheory.logits: logits -> probabilities for numpy, torch and JAX.

References are independent: a float64 softmax written out here, Hugging Face's own logits
processors (when transformers is installed), and the definitions of the filters.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as hst

from spectheory._validate import as_distribution
from spectheory.logits import Sampling, probs, to_numpy
from spectheory.tolerances import SUM_ATOL_FLOAT32

#: Agreement of two float64 computations of the same softmax.
F64_TOL = 1e-12
#: Agreement of float32 probabilities with a float64 reference (relative, for entries >= 1e-30).
F32_REL_TOL = 1e-5
#: Agreement of torch/JAX float32 outputs with numpy float32 outputs.
LIB_TOL = 1e-6
#: Temperature small enough that softmax(l/T) is within this tolerance of the T = 0 limit.
LIMIT_TOL = 1e-9

finite_rows = hst.lists(
    hst.floats(min_value=-30, max_value=30, allow_nan=False), min_size=1, max_size=40
)


def ref_softmax(x: np.ndarray) -> np.ndarray:
    """Float64 softmax with the max subtracted (the reference)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@settings(max_examples=60)
@given(finite_rows, hst.floats(min_value=0.05, max_value=5.0))
def test_plain_softmax_matches_reference(row: list[float], t: float) -> None:
    x = np.array(row)
    np.testing.assert_allclose(probs(x, temperature=t), ref_softmax(x / t), atol=F64_TOL)


def test_temperature_zero_is_argmax_with_ties_split() -> None:
    p = probs(np.array([[1.0, 3.0, 3.0, -np.inf], [0.0, -1.0, 5.0, 2.0]]), temperature=0)
    np.testing.assert_array_equal(p, [[0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0]])


@settings(max_examples=30)
@given(hst.lists(hst.integers(min_value=-50, max_value=50), min_size=2, max_size=30, unique=True))
def test_temperature_zero_is_the_limit(row: list[int]) -> None:
    # distinct integer logits: the gap is >= 1, so T = 0.02 is within e^-50 of one-hot
    x = np.array(row, dtype=np.float64)
    np.testing.assert_allclose(probs(x, temperature=0.02), probs(x, temperature=0),
                               atol=LIMIT_TOL)


@settings(max_examples=40)
@given(finite_rows, hst.integers(min_value=1, max_value=45))
@example([0.0, 1.0, 2.7e-291], 2)  # distinct logits that a shift by the max would round together
def test_top_k_keeps_the_k_largest(row: list[float], k: int) -> None:
    x = np.array(row)
    p = probs(x, top_k=k)
    kept = p > 0
    kth = np.sort(x)[::-1][min(k, len(x)) - 1]
    np.testing.assert_array_equal(kept, x >= kth)  # ties at the threshold are kept
    np.testing.assert_allclose(p[kept], ref_softmax(x[kept]), atol=F64_TOL)


@settings(max_examples=40)
@given(finite_rows, hst.floats(min_value=0.01, max_value=1.0))
def test_top_p_keeps_the_smallest_nucleus(row: list[float], top_p: float) -> None:
    x = np.array(row)
    full = ref_softmax(x)
    p = probs(x, top_p=top_p)
    kept = p > 0
    # enough mass, and minimal: without its least likely kept token (and ties), the nucleus would
    # have less than top_p
    assert full[kept].sum() >= min(top_p, 1.0) - F64_TOL
    smallest = full[kept].min()
    assert full[kept & (full > smallest)].sum() < top_p + F64_TOL
    # every dropped token is less likely than every kept one
    if (~kept).any():
        assert full[~kept].max() <= smallest
    np.testing.assert_allclose(p[kept], full[kept] / full[kept].sum(), atol=F64_TOL)


@settings(max_examples=40)
@given(finite_rows, hst.floats(min_value=0.0, max_value=1.0))
def test_min_p_threshold(row: list[float], min_p: float) -> None:
    x = np.array(row)
    full = ref_softmax(x)
    p = probs(x, min_p=min_p)
    # compare away from the boundary (the logit-space test is exact, the probability test rounds)
    clear = np.abs(full - min_p * full.max()) > 1e-12
    np.testing.assert_array_equal((p > 0)[clear], (full >= min_p * full.max())[clear])


def test_matches_transformers_logits_processors() -> None:
    """Hugging Face's TemperatureLogitsWarper -> TopK -> TopP -> MinP is the reference."""
    torch = pytest.importorskip("torch")
    tr = pytest.importorskip("transformers")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 500)) * 3.0
    for t, k, tp, mp in [(0.7, 50, 0.9, None), (1.3, None, 0.8, 0.05), (1.0, 10, None, 0.1)]:
        procs = [tr.TemperatureLogitsWarper(t)]
        if k is not None:
            procs.append(tr.TopKLogitsWarper(k))
        if tp is not None:
            procs.append(tr.TopPLogitsWarper(tp))
        if mp is not None:
            procs.append(tr.MinPLogitsWarper(mp))
        z = torch.from_numpy(x.copy())
        for proc in procs:
            z = proc(None, z)
        want = torch.softmax(z, dim=-1).numpy()
        got = probs(x, temperature=t, top_k=k, top_p=tp, min_p=mp)
        np.testing.assert_array_equal(got > 0, want > 0)
        np.testing.assert_allclose(got, want, atol=F64_TOL)


@pytest.mark.parametrize("lib", ["torch", "jax"])
def test_libraries_agree_and_keep_their_type(lib: str) -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 2000)) * 4).astype(np.float32)
    knobs = {"temperature": 0.8, "top_k": 300, "top_p": 0.95, "min_p": 0.001}
    ref = probs(x, **knobs)
    if lib == "torch":
        torch = pytest.importorskip("torch")
        arr = torch.from_numpy(x)
        out = probs(arr, **knobs)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    else:
        jnp = pytest.importorskip("jax.numpy")
        out = probs(jnp.asarray(x), **knobs)
        assert type(out).__module__.startswith("jax") and out.dtype == jnp.float32
    got = to_numpy(out)
    assert ref.dtype == np.float32
    np.testing.assert_array_equal(got > 0, ref > 0)
    np.testing.assert_allclose(got, ref, atol=LIB_TOL)


@pytest.mark.parametrize("lib", ["numpy", "torch", "jax"])
def test_float32_stable_at_256k(lib: str) -> None:
    """V = 262,144 float32 logits with a huge range: no overflow, sums within the documented
    float32 tolerance, entries equal to a float64 reference to float32 precision."""
    V = 262_144
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((2, V)) * 8).astype(np.float32)
    x[0, 7] = 1.0e4  # would overflow exp() without the max shift
    x[1] += 5.0e3
    ref = ref_softmax(x.astype(np.float64) / 0.9)
    if lib == "numpy":
        out = probs(x, temperature=0.9)
    elif lib == "torch":
        torch = pytest.importorskip("torch")
        out = probs(torch.from_numpy(x), temperature=0.9)
    else:
        jnp = pytest.importorskip("jax.numpy")
        out = probs(jnp.asarray(x), temperature=0.9)
    got = to_numpy(out)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    assert np.all(np.abs(got.astype(np.float64).sum(axis=1) - 1.0) <= SUM_ATOL_FLOAT32)
    as_distribution(got, "p")  # the core accepts it as is
    big = ref > 1e-30
    np.testing.assert_allclose(got[big], ref[big], rtol=F32_REL_TOL, atol=0)


def test_batched_equals_row_by_row() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 300)) * 2
    s = Sampling(temperature=1.2, top_k=40, top_p=0.9, min_p=0.02)
    batch = s(x)
    for b in range(5):
        np.testing.assert_array_equal(batch[b], s(x[b]))


def test_masked_tokens_and_integer_input() -> None:
    p = probs(np.array([0.0, -np.inf, 0.0]))
    np.testing.assert_array_equal(p, [0.5, 0.0, 0.5])
    q = probs([1, 2, 3])
    assert q.dtype == np.float64
    np.testing.assert_allclose(q, ref_softmax(np.array([1.0, 2.0, 3.0])), atol=F64_TOL)


@pytest.mark.parametrize(
    ("x", "kw", "match"),
    [
        ([[0.0, 1.0], [np.nan, 0.0]], {}, r"'logits', row 1: entry 0 is NaN"),
        ([0.0, np.inf], {}, r"'logits': entry 1 is \+inf"),
        ([[0.0, 1.0], [-np.inf, -np.inf]], {}, r"'logits', row 1: every logit is -inf"),
        ([[[0.0]]], {}, r"'logits': expected shape \(V,\) or \(B, V\)"),
        ([], {}, r"empty vocabulary"),
        ([0.0, 1.0], {"temperature": -1}, r"'temperature': must be finite and >= 0"),
        ([0.0, 1.0], {"top_k": 0}, r"'top_k': must be >= 1"),
        ([0.0, 1.0], {"top_k": 1.5}, r"'top_k': must be an integer"),
        ([0.0, 1.0], {"top_p": 0.0}, r"'top_p': must lie in \(0, 1\]"),
        ([0.0, 1.0], {"min_p": 1.5}, r"'min_p': must lie in \[0, 1\]"),
    ],
)
def test_bad_input_names_argument_row_and_problem(x: object, kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        probs(np.array(x, dtype=np.float64), **kw)


def test_torch_validation_names_row() -> None:
    torch = pytest.importorskip("torch")
    x = torch.zeros((3, 4))
    x[2, 1] = math.nan
    with pytest.raises(ValueError, match=r"'logits', row 2: entry 1 is NaN"):
        probs(x)


def test_sampling_validates_at_construction() -> None:
    with pytest.raises(ValueError, match="top_p"):
        Sampling(top_p=2.0)
    assert Sampling(0.7, top_k=5).describe() == "T=0.7, top_k=5"
