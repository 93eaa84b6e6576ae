"""Bad input is a ValueError that names the argument, the batch row and the problem."""

from __future__ import annotations

import numpy as np
import pytest

import spectheory as st
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
