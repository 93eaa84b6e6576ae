"""Tests of the JAX port of the optimal verifier (spectheory.verifiers.optimal_jax), on CPU JAX.

Ground truths, each independent of the JAX construction:

* the numpy layout (spectheory.verifiers.optimal.layout_rule) and alpha* of the numpy sorted-prefix
  solver, in float64;
* the exact output law of a built JAX layout, by enumerating every draft multiset and integrating the
  max-position selection per tuple (``LayoutRule.selection_probs`` on the converted pieces);
* theory.md section 8: p = (0.6, 0.3, 0.1), q = (0.2, 0.3, 0.5), n = 2 gives alpha* = 19/25.

Compilations are shared (fixed shapes: small instances are padded to V = 7 with p = q = 0 tokens), so
the file runs in about half a minute on 2 cores.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from instances import chi2_top_and_rest, enumerate_iid_law

import spectheory as st
from spectheory.verifiers.optimal import layout_rule

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from spectheory.solvers.jax_backend.solve import x64  # noqa: E402
from spectheory.verifiers.optimal_jax import (  # noqa: E402
    FLOAT32_ACCEPTANCE_BOUND,
    FLOAT64_AGREEMENT,
    layout_sample,
    layout_setup,
    to_layout_rule,
)

#: Output law (L1) and acceptance by exact enumeration (the issue's contract).
EXACT_TOL = 1e-9
#: Monte Carlo: number of standard errors allowed (fixed seeds).
MC_SIGMAS = 5.0
#: Padded vocabulary of the small exact instances (one compilation per n).
V_SMALL = 7


def _small(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random instance with V <= 7 (zeros, ties, p = q), padded to V_SMALL with p = q = 0."""
    V = int(rng.integers(2, V_SMALL + 1))
    p = rng.dirichlet(np.ones(V) * rng.choice([0.3, 1.0, 3.0]))
    q = rng.dirichlet(np.ones(V) * rng.choice([0.3, 1.0, 3.0]))
    kind = rng.integers(5)
    if kind == 0:
        p[rng.integers(V)] = 0.0
        p /= p.sum()
    elif kind == 1:
        q[rng.integers(V)] = 0.0
        q /= q.sum()
    elif kind == 2:
        q = p.copy()
    elif kind == 3:  # tied ratios
        q = np.round(q, 1) + 0.05
        q /= q.sum()
        p = q.copy()
        p[0], p[1] = p[0] + p[1] / 2, p[1] / 2
    pad = np.zeros(V_SMALL - V)
    return np.concatenate([p, pad]), np.concatenate([q, pad])


def _lm_like(rng: np.random.Generator, V: int, scale: float, noise: float) -> tuple[np.ndarray,
                                                                                    np.ndarray]:
    z = rng.gumbel(size=V) * scale
    p = np.exp(z - z.max())
    p /= p.sum()
    zq = z + noise * rng.standard_normal(V)
    q = np.exp(zq - zq.max())
    q /= q.sum()
    return p, q


# ------------------------------------------------------------------------ exact enumeration
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_exact_enumeration_float64(n: int) -> None:
    """Eight random small instances per n (plus degenerate rows), one batched call: the output law
    of every row equals p and its acceptance equals alpha*, by exact enumeration."""
    rng = np.random.default_rng(800 + n)
    rows = [_small(rng) for _ in range(8)]
    pad = np.zeros(V_SMALL - 3)
    rows.append((np.r_[1.0, 0.0, 0.0, pad], np.r_[1 / 3, 1 / 3, 1 / 3, pad]))  # one-hot p
    rows.append((np.r_[0.5, 0.5, 0.0, pad], np.r_[0.0, 0.0, 1.0, pad]))  # disjoint supports
    P = np.array([r[0] for r in rows])
    Q = np.array([r[1] for r in rows])
    with x64(True):
        lay = layout_setup(P, Q, n)
    alpha = np.asarray(st.optimal_acceptance(P, st.IID(Q, n), method="prefix").value)
    for b, (p, q) in enumerate(rows):
        rule = to_layout_rule(lay, p, q, n, row=b)
        law, acc = enumerate_iid_law(rule, q, n)
        assert np.abs(law - p).sum() < EXACT_TOL, (b, law, p)
        assert abs(acc - alpha[b]) < EXACT_TOL
        assert abs(float(lay.acceptance[b]) - alpha[b]) < EXACT_TOL


def test_worked_example() -> None:
    """theory.md section 8: alpha* = 19/25 (exact fraction), reached by the JAX layout."""
    p = np.array([0.6, 0.3, 0.1, 0, 0, 0, 0])
    q = np.array([0.2, 0.3, 0.5, 0, 0, 0, 0])
    with x64(True):
        lay = layout_setup(p[None], q[None], 2)
    assert abs(float(lay.acceptance[0]) - 19 / 25) < FLOAT64_AGREEMENT
    assert abs(float(lay.alpha[0]) - 19 / 25) < FLOAT64_AGREEMENT
    assert list(np.flatnonzero(np.asarray(lay.witness[0]))) == [1, 2]


# ------------------------------------------------------------------------ numpy agreement
@pytest.mark.parametrize("n", [1, 4, 8])
def test_matches_numpy_float64(n: int) -> None:
    """Per-token accepted mass equals the numpy layout's to 1e-12, acceptance equals alpha*."""
    rng = np.random.default_rng(900 + n)
    V = 3000
    rows = [_lm_like(rng, V, s, e) for s, e in ((2.0, 1.0), (0.5, 3.0), (8.0, 0.3))]
    p, q = _lm_like(rng, V, 1.0, 1.0)
    p[rng.random(V) < 0.2] = 0.0  # exact zeros in both
    q[rng.random(V) < 0.2] = 0.0
    rows.append((p / p.sum(), q / q.sum()))
    q = np.full(V, 1.0 / V)  # ties: uniform q, p on 5 levels
    p = rng.integers(1, 6, size=V).astype(float)
    rows.append((p / p.sum(), q))
    P = np.array([r[0] for r in rows])
    Q = np.array([r[1] for r in rows])
    with x64(True):
        lay = layout_setup(P, Q, n)
    alpha = np.asarray(st.optimal_acceptance(P, st.IID(Q, n)).value)
    acc = np.asarray(lay.accepted)
    for b, (p, q) in enumerate(rows):
        ref = layout_rule(p, q, n)
        assert np.max(np.abs(acc[b] - ref.accepted)) < FLOAT64_AGREEMENT
        assert abs(float(lay.acceptance[b]) - alpha[b]) < FLOAT64_AGREEMENT
        assert abs(float(lay.alpha[b]) - alpha[b]) < FLOAT64_AGREEMENT
        # Complementary slackness: r >= p on H*, r <= p off it (so a = p on H*).
        H = np.asarray(lay.witness[b]) & (q > 0)
        r = np.asarray(lay.selection[b])
        assert np.all(r[H] >= p[H] - FLOAT64_AGREEMENT)
        assert np.all(r[~H] <= p[~H] + FLOAT64_AGREEMENT)


def test_float32_bound_and_sampling_32k() -> None:
    """V = 32k, n = 4, float32 rows: acceptance within the documented bound of the float64 alpha*,
    and 100k tuples sampled per row (float32 layout) give the right acceptance and output law."""
    rng = np.random.default_rng(77)
    V, n, N = 32_000, 4, 100_000
    rows = [_lm_like(rng, V, 2.0, 1.0), _lm_like(rng, V, 1.0, 3.0)]
    P = np.array([r[0] for r in rows], dtype=np.float32)
    Q = np.array([r[1] for r in rows], dtype=np.float32)
    lay = layout_setup(jnp.asarray(P), jnp.asarray(Q), n)
    assert lay.acceptance.dtype == jnp.float32
    P64 = P.astype(np.float64)
    Q64 = Q.astype(np.float64)
    P64 /= P64.sum(axis=1, keepdims=True)
    Q64 /= Q64.sum(axis=1, keepdims=True)
    alpha = np.asarray(st.optimal_acceptance(P64, st.IID(Q64, n)).value)
    assert np.all(np.abs(np.asarray(lay.acceptance, dtype=np.float64) - alpha)
                  <= FLOAT32_ACCEPTANCE_BOUND)
    drafts = np.stack([st.IID(Q64[b], n).sample(rng, N) for b in range(2)], axis=1)  # (N, 2, n)
    out, acc = layout_sample(lay, jnp.asarray(drafts, dtype=jnp.int32), jax.random.key(5))
    out, acc = np.asarray(out), np.asarray(acc)
    assert out.shape == (N, 2) and acc.shape == (N, 2)
    for b in range(2):
        se = math.sqrt(alpha[b] * (1 - alpha[b]) / N)
        assert abs(acc[:, b].mean() - alpha[b]) < MC_SIGMAS * se + FLOAT32_ACCEPTANCE_BOUND
        # Chi-square over the 20 most likely tokens plus 10 equal-mass bins of the rest.
        chi2, df = chi2_top_and_rest(P64[b], out[:, b], 20, 10)
        assert chi2 < df + MC_SIGMAS * math.sqrt(2 * df)


def test_sampling_small_against_p() -> None:
    """float64, V = 6, n = 3: 200k sampled tuples reproduce p (per token, 5 sigma) and alpha*."""
    rng = np.random.default_rng(11)
    V, n, N = 6, 3, 200_000
    p = rng.dirichlet(np.ones(V))
    q = rng.dirichlet(np.ones(V))
    with x64(True):
        lay = layout_setup(p, q, n)
        drafts = st.IID(q, n).sample(rng, N)
        out, acc = layout_sample(lay, jnp.asarray(drafts), jax.random.key(0))
    freq = np.bincount(np.asarray(out), minlength=V) / N
    se = np.sqrt(p * (1 - p) / N)
    assert np.all(np.abs(freq - p) <= MC_SIGMAS * se)
    alpha = float(st.optimal_acceptance(p, st.IID(q, n)).value)
    assert abs(np.asarray(acc).mean() - alpha) <= MC_SIGMAS * math.sqrt(alpha * (1 - alpha) / N)


# ------------------------------------------------------------------------ jit, shapes, errors
def test_fixed_shapes_under_user_jit() -> None:
    """The setup composes with the user's jit (fixed shapes: V + 1 slots, 2V - 1 pairs)."""
    rng = np.random.default_rng(3)
    B, V = 3, 16
    P = rng.dirichlet(np.ones(V), size=B).astype(np.float32)
    Q = rng.dirichlet(np.ones(V), size=B).astype(np.float32)

    @jax.jit
    def f(p: jax.Array, q: jax.Array) -> jax.Array:
        lay = layout_setup(p, q, 2)
        return lay.acceptance, lay.S, lay.pair_mass, lay.selection

    acc, S, pm, sel = f(jnp.asarray(P), jnp.asarray(Q))
    assert S.shape == (B, V + 1) and pm.shape == (B, 2 * V - 1) and sel.shape == (B, V)
    P64, Q64 = P.astype(np.float64), Q.astype(np.float64)
    P64 /= P64.sum(axis=1, keepdims=True)
    Q64 /= Q64.sum(axis=1, keepdims=True)
    ref = st.optimal_acceptance(P64, st.IID(Q64, 2)).value
    assert np.all(np.abs(np.asarray(acc, dtype=np.float64) - ref) <= FLOAT32_ACCEPTANCE_BOUND)


def test_bad_input_names_argument() -> None:
    with pytest.raises(ValueError, match="argument 'n'"):
        layout_setup(np.ones(3) / 3, np.ones(3) / 3, 0)
    with pytest.raises(ValueError, match="argument 'q'"):
        layout_setup(np.ones(3) / 3, np.ones(4) / 4, 2)


def test_import_spectheory_does_not_import_jax() -> None:
    code = (
        "import sys, spectheory, spectheory.verifiers.optimal_jax; "
        "assert 'jax' not in sys.modules, 'jax imported'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
