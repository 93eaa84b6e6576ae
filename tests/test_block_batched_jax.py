"""block_acceptance_batched(backend="jax") and its functional core spectheory.blocks.batched_jax.

References: the numpy functions of spectheory.blocks.batched (themselves checked against the
scalar rule in test_block_batched.py) for the arithmetic, exact enumeration
(block_acceptance(method="exact")) for the end-to-end law, the drawn row itself for draw_jax.
"""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from spectheory._validate import SpecTheoryInputError
from spectheory.blocks import (
    BatchedBlockAcceptance,
    Chain,
    Markov,
    block_acceptance,
    block_acceptance_batched,
)
from spectheory.blocks.batched import (
    _block_lengths,
    _draw,
    _sd_lengths,
    batch_model,
    block_h,
    sd_acceptance,
)
from spectheory.blocks.batched_jax import (
    block_h_jax,
    block_lengths_jax,
    draw_jax,
    sd_acceptance_jax,
    sd_lengths_jax,
)
from spectheory.solvers.jax_backend.solve import x64
from spectheory.verifiers.base import z_value

TINY = 1e-300


# ---------------------------------------------------------------------- random rows
def _rows(rng: np.random.Generator, n: int, V: int) -> np.ndarray:
    """``n`` probability rows of five kinds: Dirichlet(0.5) with exact zeros, the same with
    entries of mass 1e-300, near one-hot (1 and 1e-300 elsewhere), one-hot, uniform."""
    a = rng.dirichlet(np.full(V, 0.5), size=n)
    a[rng.random((n, V)) < 0.25] = 0.0
    a[:, 0] += 1e-3
    a /= a.sum(axis=1, keepdims=True)
    kind = rng.integers(0, 5, size=n)
    hot = rng.integers(0, V, size=n)
    tiny = rng.random((n, V)) < 0.3
    for r in range(n):
        if kind[r] == 1:
            a[r, tiny[r]] = TINY
        elif kind[r] == 2:
            a[r] = np.where(tiny[r], TINY, 0.0)
            a[r, hot[r]] = 1.0
        elif kind[r] == 3:
            a[r] = 0.0
            a[r, hot[r]] = 1.0
        elif kind[r] == 4:
            a[r] = 1.0 / V
    return a


def _block_inputs(seed: int, g: int, R: int, V: int):
    rng = np.random.default_rng(seed)
    ps = np.stack([_rows(rng, R, V) for _ in range(g + 1)])
    qs = np.stack([_rows(rng, R, V) for _ in range(g)])
    ps[:-1, : R // 8] = qs[:, : R // 8]  # p_i = q_i: denominator 0 in h_i, w stays 1
    # drafted tokens drawn from q (numpy's sampler), as block_acceptance_batched draws them
    xs = np.stack([_draw(qs[i], rng) for i in range(g)])
    return ps, qs, xs


@pytest.mark.parametrize("g", [1, 2, 4, 6])
def test_block_h_jax_equals_numpy(g: int) -> None:
    ps, qs, xs = _block_inputs(40 + g, g, R=500, V=12)
    want = block_h(ps, qs, xs)  # numpy reference
    with x64():
        got = np.asarray(jax.jit(block_h_jax)(ps, qs, xs))
    assert got.dtype == np.float64 and got.shape == (g, 500)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)
    # the inputs reach every regime: h = 0, h = 1 and strictly between
    assert (want == 0).any() and (want == 1).any() and ((want > 0) & (want < 1)).any()
    assert (want[(want > 0) & (want < 1e-250)]).size > 0  # weights of the 1e-300 masses


def test_block_h_jax_edge_tokens() -> None:
    """Hand-picked drafted tokens of draft mass 0 and 1e-300 (the den = 0 limit and a ratio of
    two tiny masses), against numpy."""
    V = 3
    q0 = np.array([[0.0, 0.5, 0.5], [TINY, 0.5, 0.5], [TINY, 0.5, 0.5], [0.0, 0.5, 0.5]])
    p0 = np.array([[0.2, 0.3, 0.5], [TINY, 0.5, 0.5], [0.0, 0.4, 0.6], [0.0, 0.4, 0.6]])
    q1 = np.tile([0.2, 0.3, 0.5], (4, 1))
    p1 = np.tile([0.1, 0.6, 0.3], (4, 1))
    p2 = np.tile([1.0 / V] * V, (4, 1))
    ps, qs = np.stack([p0, p1, p2]), np.stack([q0, q1])
    xs = np.array([[0, 0, 0, 0], [1, 1, 1, 1]])
    want = block_h(ps, qs, xs)
    # hand values (gamma = 2): h_2 = w_2 = min(w_1 p_1(x_2) / q_1(x_2), 1)
    w1 = np.array([1.0, 1.0, 0.0, 0.0])  # p/q -> limit 1, 1e-300/1e-300 = 1, 0, 0/0 -> 0
    np.testing.assert_array_equal(want[1], np.minimum(w1 * 0.6 / 0.3, 1.0))
    with x64():
        got = np.asarray(block_h_jax(ps, qs, xs))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)


def test_sd_acceptance_jax_equals_numpy() -> None:
    rng = np.random.default_rng(7)
    p = _rows(rng, 2000, 6)
    q = _rows(rng, 2000, 6)
    x = rng.integers(0, 6, size=2000)  # any token, including q(x) = 0 (the limit convention)
    px, qx = p[np.arange(2000), x], q[np.arange(2000), x]
    assert (qx == 0).any() and (qx == TINY).any()
    with x64():
        got = np.asarray(jax.jit(sd_acceptance_jax)(px, qx))
    np.testing.assert_allclose(got, sd_acceptance(px, qx), rtol=0, atol=1e-13)


@pytest.mark.parametrize("g", [1, 3, 5])
def test_lengths_equal_numpy(g: int) -> None:
    ps, qs, xs = _block_inputs(70 + g, g, R=3000, V=8)
    h = block_h(ps, qs, xs)
    rows = np.arange(xs.shape[1])
    acc = sd_acceptance(ps[np.arange(g)[:, None], rows, xs], qs[np.arange(g)[:, None], rows, xs])
    eta = np.random.default_rng(g).random(h.shape)
    eta[:, :50] = h[:, :50]  # ties eta == h: accepted (eta <= h)
    eta[:, 50:100] = acc[:, 50:100]
    with x64():
        lb = np.asarray(jax.jit(block_lengths_jax)(h, eta))
        ls = np.asarray(jax.jit(sd_lengths_jax)(acc, eta))
    np.testing.assert_array_equal(lb, _block_lengths(h, eta))
    np.testing.assert_array_equal(ls, _sd_lengths(acc, eta))
    assert len(np.unique(lb)) == g + 1 and len(np.unique(ls)) == g + 1  # every length occurs


# ---------------------------------------------------------------------- draw_jax
@pytest.mark.parametrize("V", [9, 50])  # 3 blocks of 3; 8 blocks of 8 with 14 padded zeros
def test_draw_jax_never_zero_mass(V: int) -> None:
    rng = np.random.default_rng(3)
    R = 900
    q = np.zeros((R, V))
    hot = rng.integers(0, V, size=R)
    q[np.arange(R), hot] = 1.0  # a single positive entry, anywhere (first, last, middle)
    q[300:600] = np.where(rng.random((300, V)) < 0.5, TINY, 0.0)  # only 1e-300 entries
    q[300:600, 0] = 0.0
    q[300:600, 4] = TINY  # at least one
    q[600:] = 0.0  # 1 - tiny in front, then tiny masses, trailing zeros (the top-end case)
    q[600:, 0] = 1.0
    q[600:, 1:5] = TINY
    q[600:750, -1] = TINY  # ... or one tiny mass in the last (padded) block
    pos = q > 0
    draw = jax.jit(draw_jax)
    with x64():
        for k in range(30):
            x = np.asarray(draw(jax.random.key(k), q))
            assert pos[np.arange(R), x].all(), k
    assert (x[:300] == hot[:300]).all()


@pytest.mark.parametrize("law", [0, 1])
def test_draw_jax_law_chi_square(law: int) -> None:
    # Power: a chi-square test at alpha = 1e-3 with df = 7 detects a deviation of Cohen's
    # effect size w = 0.05 with power 0.99 when N w^2 >= 45.4 (noncentral chi-square), i.e.
    # N >= 18,200 draws; we take N = 20,000 (one draw_jax call over N copies of the row).
    q = [
        np.array([0.3, 0.0, 0.2, 0.05, 0.0, 0.15, 0.1, 0.1, 0.05, 0.05]),
        np.array([0.0, 0.1, TINY, 0.2, 0.1, 0.1, 0.05, 0.25, 0.1, 0.1]),
    ][law]
    N = 20_000
    with x64():
        x = np.asarray(jax.jit(draw_jax)(jax.random.key(11 + law), np.tile(q, (N, 1))))
    counts = np.bincount(x, minlength=q.size)
    cells = q > 1e-6
    assert counts[~cells].sum() == 0  # zero and 1e-300 masses are never drawn
    assert cells.sum() == 8  # df = 7
    expected = N * q[cells] / q[cells].sum()
    chi2 = float(((counts[cells] - expected) ** 2 / expected).sum())
    assert chi2 < stats.chi2.isf(1e-3, df=7), chi2


# ---------------------------------------------------------------------- end to end
V_E2E, GAMMA = 4, 3
CONTEXTS = [(), (0,), (1,), (2,), (3,), (2, 1), (0, 3), (1, 1)]


def _markov_pair() -> tuple[Markov, Markov]:
    rng = np.random.default_rng(21)

    def table(zero: float) -> tuple[np.ndarray, np.ndarray]:
        a = rng.dirichlet(np.full(V_E2E, 0.8), size=V_E2E + 1)
        a[rng.random(a.shape) < zero] = 0.0  # exact zeros, but every row keeps some mass
        a[np.arange(V_E2E + 1), rng.integers(0, V_E2E, V_E2E + 1)] += 0.05
        a /= a.sum(axis=1, keepdims=True)
        return a[0], a[1:]

    return Markov(*table(0.2)), Markov(*table(0.2))


def _vectorised(m: Markov):
    """A batched Markov model that indexes the table for all rows at once."""
    T = np.stack(m.transition)

    def f(contexts: list[tuple[int, ...]]) -> np.ndarray:
        last = np.array([c[-1] if c else -1 for c in contexts], dtype=np.int64)
        out = T[np.maximum(last, 0)]
        out[last < 0] = m.initial
        return out

    return f


# z-tests: 2 verifiers x (1 mean + 4 pmf entries) = 10, Bonferroni to 1% overall: z = 3.29.
N_Z = 10
Z = z_value(1 - 0.01 / N_Z)
# Power: to detect a bias of delta = 0.025 tokens in the overall mean with power 0.99, with
# sd(tau) <= 1.2 (gamma = 3; the exact sds of this pair are below 1.2, asserted), the number of
# draws must satisfy R >= ((Z + z_0.99) * sd / delta)^2 = ((3.29 + 2.33) * 1.2 / 0.025)^2
# ~ 72,800; we take 8 contexts x 10,000 = 80,000.
S = 10_000


@pytest.fixture(scope="module")
def e2e() -> dict[str, tuple[BatchedBlockAcceptance, list]]:
    p, q = _markov_pair()
    out = {}
    for v in ("sd", "block"):
        res = block_acceptance_batched(
            _vectorised(p),
            _vectorised(q),
            Chain(GAMMA),
            v,
            contexts=CONTEXTS,
            samples=S,
            seed=123,
            backend="jax",
        )
        exact = [block_acceptance(p, q, Chain(GAMMA), v, context=c, method="exact") for c in CONTEXTS]
        out[v] = (res, exact)
    return out


def test_vectorised_model_is_the_markov_model() -> None:
    p, _ = _markov_pair()
    ctx = [(), (0,), (3, 2), (1, 0, 1)]
    np.testing.assert_array_equal(_vectorised(p)(ctx), batch_model(p)(ctx))


@pytest.mark.parametrize("verifier", ["sd", "block"])
def test_jax_backend_matches_exact(e2e, verifier: str) -> None:
    res, exact = e2e[verifier]
    assert isinstance(res, BatchedBlockAcceptance) and res.info["backend"] == "jax"
    assert res.lengths.shape == (len(CONTEXTS), S) and res.lengths.dtype == np.int64
    k = np.arange(GAMMA + 1)
    pmfs = np.array([e.length_pmf for e in exact])
    sds = np.sqrt(pmfs @ k**2 - np.array([e.mean for e in exact]) ** 2)
    assert sds.max() <= 1.2  # the power calculation's assumption
    want = float(np.mean([e.mean for e in exact]))
    # each context has S draws: var(mean) = sum_b var_b / (B^2 S)
    se = float(np.sqrt((sds**2).sum() / (len(CONTEXTS) ** 2 * S)))
    assert abs(res.mean - want) <= Z * se, (verifier, res.mean, want, se)
    # the pooled length law: binomial se of the equal-weight mixture (conservative: stratified)
    mix = pmfs.mean(axis=0)
    se_pmf = np.sqrt(mix * (1 - mix) / res.samples)
    assert np.all(np.abs(res.length_pmf - mix) <= Z * se_pmf + 1e-12), (res.length_pmf, mix)


def test_block_beats_sd_on_this_pair(e2e) -> None:
    # exact: block verification >= token-level SD (Sun et al.); strict on this pair, and the
    # Monte Carlo sees it
    b, s = e2e["block"], e2e["sd"]
    gap = np.mean([e.mean for e in b[1]]) - np.mean([e.mean for e in s[1]])
    assert gap > 0.02
    assert b[0].mean - s[0].mean > gap - Z * np.hypot(b[0].stderr, s[0].stderr)


def test_jax_same_model_accepts_everything_and_is_seeded() -> None:
    m = Markov([0.3, 0.7], [[0.6, 0.4], [0.1, 0.9]])
    for v in ("sd", "block"):
        r = block_acceptance_batched(
            batch_model(m),
            batch_model(m),
            Chain(3),
            v,
            contexts=[(), (1,)],
            samples=50,
            seed=1,
            backend="jax",
        )
        assert np.all(r.lengths == 3)
    p, q = _markov_pair()
    kw = {"contexts": CONTEXTS, "samples": 200, "backend": "jax"}
    a = block_acceptance_batched(_vectorised(p), _vectorised(q), Chain(2), "block", seed=4, **kw)
    b = block_acceptance_batched(_vectorised(p), _vectorised(q), Chain(2), "block", seed=4, **kw)
    c = block_acceptance_batched(_vectorised(p), _vectorised(q), Chain(2), "block", seed=5, **kw)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    assert not np.array_equal(a.lengths, c.lengths)


def test_jax_lockstep_call_counts() -> None:
    m = Markov([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]])
    calls: dict[str, list[int]] = {"t": [], "d": []}

    def wrap(key: str, model: Markov):
        f = batch_model(model)

        def g(ctxs):
            calls[key].append(len(ctxs))
            return f(ctxs)

        return g

    B, s, g = 5, 3, 4
    block_acceptance_batched(
        wrap("t", m),
        wrap("d", m),
        Chain(g),
        "block",
        contexts=[(0,)] * B,
        samples=s,
        seed=0,
        backend="jax",
    )
    assert calls["d"] == [B * s] * g
    assert calls["t"] == [B * s * (g + 1)]


# ---------------------------------------------------------------------- errors, imports
def test_bad_backend_name() -> None:
    f = batch_model(Markov([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]]))
    for bad in ("torch", "JAX", None, 1):
        with pytest.raises(ValueError, match="argument 'backend'") as e:
            block_acceptance_batched(f, f, Chain(2), "sd", contexts=[(0,), (1,)], backend=bad)
        assert isinstance(e.value, SpecTheoryInputError)
        assert "'numpy'" in str(e.value) and "'jax'" in str(e.value)


def _const(row: list[float], n_extra: int = 0):
    return lambda c: np.tile(np.asarray(row, dtype=float), (len(c) + n_extra, 1))


@pytest.mark.parametrize(
    ("target", "draft", "name", "match"),
    [
        (None, _const([0.5, 0.5], 1), "draft_batch", "shape"),
        (None, _const([0.6, 0.6]), "draft_batch", "sums"),
        (None, _const([np.nan, 1.0]), "draft_batch", "finite"),
        (None, _const([-0.5, 1.5]), "draft_batch", "finite"),
        (_const([0.5, 0.5], 1), None, "target_batch", "shape"),
        (_const([1 / 3] * 3), None, "target_batch", "V ="),
        (_const([np.inf, 0.0]), None, "target_batch", "finite"),
    ],
)
def test_bad_model_outputs_jax(target, draft, name: str, match: str) -> None:
    f = batch_model(Markov([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]]))
    with pytest.raises(ValueError, match=f"argument '{name}'.*{match}"):
        block_acceptance_batched(
            target or f, draft or f, Chain(2), "block", contexts=[(0,), (1,)], backend="jax"
        )


def test_import_spectheory_does_not_import_jax() -> None:
    code = (
        "import sys, spectheory, spectheory.blocks, spectheory.blocks.batched;"
        "assert 'jax' not in sys.modules, 'jax imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_functions_inside_user_jit() -> None:
    """The core composes inside one user jit: draw, gather, verify (float32 here, the caller's
    dtype), matching the same steps run one by one."""
    rng = np.random.default_rng(5)
    g, R, V = 3, 64, 6
    ps = jnp.asarray(rng.dirichlet(np.ones(V), size=(g + 1, R)), dtype=jnp.float32)
    qs = jnp.asarray(rng.dirichlet(np.ones(V), size=(g, R)), dtype=jnp.float32)

    def pipeline(key):
        ks = jax.random.split(key, g + 1)
        xs = jnp.stack([draw_jax(ks[i], qs[i]) for i in range(g)])
        eta = jax.random.uniform(ks[g], (g, R), dtype=jnp.float32)
        return xs, block_lengths_jax(block_h_jax(ps, qs, xs), eta)

    xs, lengths = jax.jit(pipeline)(jax.random.key(0))
    assert lengths.dtype == jnp.int32 and xs.shape == (g, R)
    h = block_h(np.asarray(ps, np.float64), np.asarray(qs, np.float64), np.asarray(xs))
    ks = jax.random.split(jax.random.key(0), g + 1)
    eta = np.asarray(jax.random.uniform(ks[g], (g, R), dtype=jnp.float32), np.float64)
    far = np.abs(eta - h).min(axis=0) > 1e-5  # rows not decided by float32 rounding
    assert far.mean() > 0.9
    np.testing.assert_array_equal(np.asarray(lengths)[far], _block_lengths(h, eta)[far])
