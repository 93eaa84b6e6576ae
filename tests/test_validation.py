"""Bad input is a ValueError that names the argument, the batch row and the problem."""

from __future__ import annotations

import numpy as np
import pytest

import spectheory as st
from spectheory import verifiers as SV
from spectheory.tolerances import SUM_ATOL_FLOAT32, SUM_ATOL_FLOAT64

Q = [0.2, 0.3, 0.5]


@pytest.mark.parametrize(
    ("bad", "pattern"),
    [
        ([0.5, float("nan"), 0.5], r"argument 'q': entry 1 is nan"),
        ([0.5, float("inf"), 0.5], r"argument 'q': entry 1 is inf"),
        ([0.6, -0.1, 0.5], r"argument 'q': entry 1 is negative"),
        ([0.5, 0.4], r"argument 'q': entries sum to 0\.9"),
        ([], r"argument 'q': empty vocabulary"),
        ([[[0.5, 0.5]]], r"argument 'q': expected shape \(V,\) or \(B, V\)"),
        (["a", "b"], r"argument 'q'"),
    ],
)
def test_bad_q_is_named(bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        st.IID(bad, 2)


def test_batch_row_is_named():
    q = np.array([[0.5, 0.5, 0.0], [0.5, 0.6, 0.0], [0.2, 0.2, 0.6]])
    with pytest.raises(ValueError, match=r"argument 'q', row 1: entries sum to 1\.1"):
        st.IID(q, 2)
    q[1] = [0.5, np.nan, 0.5]
    with pytest.raises(ValueError, match=r"argument 'q', row 1: entry 1 is nan"):
        st.IID(q, 2)


def test_bad_p_is_named_and_shape_mismatch():
    scheme = st.IID(Q, 2)
    with pytest.raises(ValueError, match=r"argument 'p': entry 0 is negative"):
        st.optimal_acceptance([-0.1, 0.6, 0.5], scheme)
    with pytest.raises(ValueError, match=r"argument 'p': vocabulary size 4 does not match"):
        st.optimal_acceptance([0.25] * 4, scheme)
    batched = st.IID(np.tile(Q, (3, 1)), 2)
    with pytest.raises(ValueError, match=r"argument 'p': batch size 2 does not match"):
        st.optimal_acceptance(np.tile(Q, (2, 1)), batched)
    with pytest.raises(ValueError, match=r"argument 'scheme'"):
        st.optimal_acceptance(Q, Q)


@pytest.mark.parametrize("n", [0, -1, 2.5, True, "2"])
def test_bad_n(n):
    with pytest.raises(ValueError, match=r"argument 'n'"):
        st.IID(Q, n)


def test_without_replacement_needs_n_tokens():
    with pytest.raises(ValueError, match=r"argument 'q': only 2 tokens have positive probability, "
                                         r"fewer than n = 3"):
        st.WithoutReplacement([0.5, 0.5, 0.0], 3)
    with pytest.raises(ValueError, match=r"argument 'q', row 1: only 1 tokens"):
        st.WithoutReplacement([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], 2)
    with pytest.raises(ValueError, match=r"argument 'q'.*fewer than n = 3"):
        st.Greedy([0.5, 0.5, 0.0], 3)
    with pytest.raises(ValueError, match=r"argument 'q'.*fewer than n = 2"):
        st.Hub([1.0, 0.0])


def test_independent_and_joint_validation():
    with pytest.raises(ValueError, match=r"argument 'qs\[1\]': shape \(2,\) differs"):
        st.Independent([Q, [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"argument 'qs\[0\]': entries sum"):
        st.Independent([[0.5, 0.6, 0.0], Q])
    with pytest.raises(ValueError, match=r"argument 'qs'"):
        st.Independent([])
    with pytest.raises(ValueError, match=r"argument 'tuples': token id 3 is out of range"):
        st.Joint([[0, 3]], [1.0], V=3)
    with pytest.raises(ValueError, match=r"argument 'probs': length 1 does not match 2 tuples"):
        st.Joint([[0, 1], [1, 2]], [1.0])


def test_sum_tolerance_depends_on_dtype_and_normalize_is_explicit():
    off64 = np.array([0.2, 0.3, 0.5]) * (1 + 10 * SUM_ATOL_FLOAT64)
    with pytest.raises(ValueError, match="pass normalize=True"):
        st.IID(off64, 2)
    # the same relative error is inside the float32 tolerance for float32 input
    st.IID(off64.astype(np.float32), 2)
    off32 = (np.array([0.2, 0.3, 0.5]) * (1 + 10 * SUM_ATOL_FLOAT32)).astype(np.float32)
    with pytest.raises(ValueError, match="float32"):
        st.IID(off32, 2)
    scheme = st.IID([2.0, 3.0, 5.0], 2, normalize=True)
    np.testing.assert_allclose(scheme.q, Q, rtol=0, atol=1e-15)
    r = st.optimal_acceptance([6, 3, 1], scheme, normalize=True)
    assert abs(r.value - 0.76) <= 1e-12  # theory.md section 8
    with pytest.raises(ValueError, match="cannot normalize a row that sums to 0"):
        st.IID([0.0, 0.0], 1, normalize=True)


def test_method_errors_are_clear():
    with pytest.raises(ValueError, match=r"argument 'method': unknown method 'magic'"):
        st.optimal_acceptance(Q, st.IID(Q, 2), method="magic")
    with pytest.raises(ValueError, match=r"'prefix' does not apply"):
        st.optimal_acceptance([0.5, 0.5], st.Joint([[0, 1]], [1.0]), method="prefix")
    with pytest.raises(ValueError, match=r"'subsets' does not apply"):
        st.optimal_acceptance(np.full(25, 0.04), st.IID(np.full(25, 0.04), 2), method="subsets")


def test_schemes_are_frozen_and_arrays_read_only():
    s = st.IID(Q, 2)
    with pytest.raises(AttributeError):
        s.q = np.ones(3) / 3
    with pytest.raises(ValueError):
        s.q[0] = 1.0


# ---------------------------------------------------------------------- issue 17, item 4
def test_joint_vocabulary_size_must_be_an_integer():
    for bad in (2.5, "3", True, 3.0):
        with pytest.raises(st.SpecTheoryInputError, match=r"argument 'V'"):
            st.Joint([[0, 1]], [1.0], V=bad)
    assert st.Joint([[0, 1]], [1.0], V=np.int64(3)).V == 3


def test_joint_ragged_tuples_are_named():
    with pytest.raises(st.SpecTheoryInputError, match=r"argument 'tuples'"):
        st.Joint([[0, 1], [2]], [0.5, 0.5])


def test_certify_checks_its_arguments():
    r4 = st.optimal_acceptance([0.25] * 4, st.IID([0.25] * 4, 2), method="lp")
    s3 = st.IID([0.2, 0.3, 0.5], 2)
    with pytest.raises(st.SpecTheoryInputError, match=r"argument 'p'.*V = 3"):
        st.certify(r4, [0.25] * 4, s3)
    with pytest.raises(st.SpecTheoryInputError, match=r"argument 'result'.*V = 3"):
        st.certify(r4, [0.2, 0.3, 0.5], s3)
    for bad in (None, 0.76):
        with pytest.raises(st.SpecTheoryInputError, match=r"argument 'result'"):
            st.certify(bad, [0.25] * 4, st.IID([0.25] * 4, 2))


def _sample_args(name):
    """A valid (p, q, drafts) for the sampler of rule ``name``."""
    p, q = [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]
    return p, q, {"spechub": [2, 0], "greedy": [2, 0]}.get(name, [2, 1])


@pytest.mark.parametrize("name", SV.names())
@pytest.mark.parametrize("bad", [None, 0, np.random.RandomState(0), "seed"])
def test_every_sampler_checks_rng(name, bad):
    rule = SV.get(name)()
    p, q, drafts = _sample_args(name)
    rule.sample(p, q, drafts, np.random.default_rng(0))  # the arguments are valid
    with pytest.raises(st.SpecTheoryInputError, match=r"argument 'rng'"):
        rule.sample(p, q, drafts, bad)
    with pytest.raises(st.SpecTheoryInputError, match=r"argument 'rng'"):
        rule.acceptance_mc(p, q, len(drafts), bad, samples=10)


def test_khisti_non_numeric_q_is_named():
    for bad in (["a", "b", "c"], np.array(["a", "b", "c"]), [[0.5, 0.5], [1.0]]):
        with pytest.raises(st.SpecTheoryInputError, match=r"argument 'q'"):
            SV.acceptance("khisti", [0.6, 0.3, 0.1], bad, 2)


def test_unknown_backend_is_named_with_the_choices():
    with pytest.raises(st.SpecTheoryInputError, match=r"argument 'backend'.*'bogus'.*jax, numpy"):
        st.optimal_acceptance([0.5, 0.5], st.IID([0.5, 0.5], 2), backend="bogus")


def test_float16_tolerance_scales_with_the_dtype_epsilon():
    from spectheory._validate import sum_tolerance
    from spectheory.tolerances import SUM_EPS_FACTOR

    # Correctly rounded float16 values of the distribution
    # [0.28519340, 0.41544149, 0.21284248, 0.08652263]: they sum to 1.0001220703125.
    row = np.array([0.28515625, 0.41552734375, 0.212890625, 0.0865478515625], dtype=np.float16)
    assert float(row.astype(np.float64).sum()) == 1.0001220703125
    st.IID(row, 2)  # accepted: within SUM_EPS_FACTOR float16 epsilons
    assert sum_tolerance(np.float16) == SUM_EPS_FACTOR * float(np.finfo(np.float16).eps)
    assert sum_tolerance(np.float32) == SUM_ATOL_FLOAT32
    assert sum_tolerance(np.float64) == SUM_ATOL_FLOAT64
    with pytest.raises(ValueError, match=r"argument 'q'.*float16"):
        st.IID(np.array([0.5, 0.52], dtype=np.float16), 2)  # 1.02: far beyond rounding
