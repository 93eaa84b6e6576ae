"""The fast paths on the benchmark's distribution families (``benchmarks/families.py``).

Every family of ``benchmarks/bench_families.py`` (temperature 0.01-2, top-k / top-p truncation
with exact zeros, distilled, quantised, layer-skip-like, n-gram-like, mixture, near one-hot with
masses 1e-300..1e-12 beside 1 - eps, ties, greedy-like drafts) at a small vocabulary, against the
reference methods: the full-sort prefix chain for i.i.d. drafts and the full stable sort +
``wor_chain`` (which deflates peaked drafts) without replacement. Peaked drafts, which the fast
path used to decline, now run its ring form (``docs/without_replacement.md`` section 7.10).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import families

from spectheory.solvers.fastprefix import prefix_iid_fast, prefix_iid_reference
from spectheory.solvers.prefix import _prefix_wor, prefix_order
from spectheory.solvers.wor import wor_chain
from spectheory.solvers.wor_fast import WOR_FAST_MAX_ERROR, wor_prefix_fast

#: The without-replacement contract (docs/without_replacement.md).
EXACT_TOL = 1e-10
#: Slack on the sum of the two reported error bounds (rounding-level estimates).
BOUND_SLACK = 1e-13
EPS = float(np.finfo(np.float64).eps)


def reference_alpha(p: np.ndarray, q: np.ndarray, n: int) -> tuple[float, float]:
    order = prefix_order(p[None, :], q[None, :])[0]
    ch = wor_chain(q[order], n)
    f = np.concatenate([[1.0], 1.0 + np.cumsum(p[order]) - ch.Q])
    return float(f.min()), float(np.max(ch.error, initial=0.0))


def subset_value_wor(p: np.ndarray, q: np.ndarray, mask: np.ndarray, n: int) -> float:
    """Value 1 + p(H) - Q(H^n) of the witness, by the reference chain with H first."""
    order = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])
    k = int(mask.sum())
    if k == 0:
        return 1.0
    ch = wor_chain(q[order], n)
    return 1.0 + float(np.sum(p[mask])) - float(ch.Q[k - 1])


@pytest.mark.parametrize("name", sorted(families.FAMILIES))
def test_iid_fast_on_family(name: str) -> None:
    V = 8192
    p, q = families.make(name, V, seed=1)
    for n in (2, 8, 16):
        v, _ = prefix_iid_fast(p[None], q[None], n)
        vr, _ = prefix_iid_reference(p[None], q[None], n)
        assert abs(v[0] - vr[0]) <= max(1e-15, (n + 2) * V * EPS), (n, v[0], vr[0])


@pytest.mark.parametrize("name", sorted(families.FAMILIES))
@pytest.mark.parametrize("n", [3, 4, 8])
def test_wor_fast_on_family(name: str, n: int) -> None:
    V = 4096
    p, q = families.make(name, V, seed=2)
    if int(np.count_nonzero(q)) < n:
        pytest.skip("fewer positive draft entries than drafts")
    fr = wor_prefix_fast(p, q, n)
    ref, rerr = reference_alpha(p, q, n)
    if fr is None:
        # the only declines left: integration ranges beyond WOR_FAST_RING_T_MAX (masses that
        # underflow next to a dominant token) -- the caller's reference chain answers
        assert name in ("temp_0.01",), name
        info: dict[str, object] = {}
        v, _ = _prefix_wor(p[None], q[None], n, info)
        assert abs(v[0] - ref) <= EXACT_TOL
        return
    assert fr.error <= WOR_FAST_MAX_ERROR
    assert abs(fr.value - ref) <= EXACT_TOL, (fr.value, ref)
    assert abs(fr.value - ref) <= fr.error + rerr + BOUND_SLACK, (fr.value - ref, fr.error, rerr)
    # the witness is a prefix of the stable ratio order whose own value is the returned value
    order = prefix_order(p[None, :], q[None, :])[0]
    k = int(fr.mask.sum())
    assert np.array_equal(np.sort(order[:k]), np.flatnonzero(fr.mask))
    assert abs(subset_value_wor(p, q, fr.mask, n) - fr.value) <= fr.error + rerr + BOUND_SLACK


@pytest.mark.parametrize(
    ("top", "lo", "hi", "n"),
    [(1.0, -300, -12, 3), (1.0, -300, -12, 6), (0.5, -40, -12, 4), (1.0, -20, -14, 5)],
)
def test_wor_ring_form_adversarial(top: float, lo: int, hi: int, n: int) -> None:
    """Masses log-uniform in [10^lo, 10^hi] beside one (or two, top = 0.5) dominant tokens, a
    target that disagrees: the ring form against the deflating reference."""
    V = 3000
    rng = np.random.default_rng([-lo, -hi, n])
    q = 10.0 ** rng.uniform(lo, hi, size=V)
    if top == 1.0:
        q[5] = 0.0
        q[5] = 1.0 - q.sum()
    else:
        q[5] = q[9] = 0.0
        q[5] = 0.5 - q.sum() / 2
        q[9] = 1.0 - q.sum()
    p = rng.dirichlet(np.full(V, 0.3))
    fr = wor_prefix_fast(p, q, n, min_v=0)
    ref, rerr = reference_alpha(p, q, n)
    assert fr is not None
    assert abs(fr.value - ref) <= min(EXACT_TOL, fr.error + rerr + BOUND_SLACK), (fr.value, ref)


def test_wor_low_temperature_pair_ties_and_zeros() -> None:
    """Temperature 0.05 on both sides, quantised logits (ties in q) and a top-k cut (zeros)."""
    V = 4096
    rng = np.random.default_rng(11)
    z = families.zipf_logits(rng, V)
    zq = np.round((z + 0.3 * rng.normal(size=V)) * 2) / 2
    cut = np.partition(zq, V - 300)[V - 300]
    p = families.softmax(z / 0.05)
    q = families.softmax(np.where(zq >= cut, zq, -np.inf) / 0.05)
    for n in (3, 5):
        fr = wor_prefix_fast(p, q, n)
        ref, rerr = reference_alpha(p, q, n)
        assert fr is not None
        assert abs(fr.value - ref) <= min(EXACT_TOL, fr.error + rerr + BOUND_SLACK)


def test_real_smollm2_rows() -> None:
    """Two stored rows of real SmolLM2 logits (temperature 0.3: peaked), n = 4."""
    rows = families.real_rows()
    if not rows:
        pytest.skip("benchmarks/results/smollm2_logits.npz not present")
    for _, p, q in (rows[1], rows[15]):
        fr = wor_prefix_fast(p, q, 4)
        ref, rerr = reference_alpha(p, q, 4)
        assert fr is not None
        assert abs(fr.value - ref) <= min(EXACT_TOL, fr.error + rerr + BOUND_SLACK)
        v, _ = prefix_iid_fast(p[None], q[None], 4)
        vr, _ = prefix_iid_reference(p[None], q[None], 4)
        assert abs(v[0] - vr[0]) <= 6 * p.size * EPS


def test_ring_form_no_overflow_real_row() -> None:
    """A real bigram draft at temperature 0.3, n = 16: candidate runs are formed up to the last
    quadrature node (one step beyond T), where a plain-form chain used to overflow and its values
    were dropped silently; no floating-point warning may occur now, and the value matches the
    reference."""
    import warnings

    rows = {label: (p, q) for label, p, q in families.real_rows()}
    if "smollm2_ngram_T0.3_pos27" not in rows:
        pytest.skip("benchmarks/results/smollm2_logits.npz not present")
    p, q = rows["smollm2_ngram_T0.3_pos27"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fr = wor_prefix_fast(p, q, 16)
    assert fr is not None and fr.info.get("ring") == 1.0
    ref, rerr = reference_alpha(p, q, 16)
    assert abs(fr.value - ref) <= min(EXACT_TOL, fr.error + rerr + BOUND_SLACK)
