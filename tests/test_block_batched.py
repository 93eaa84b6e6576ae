"""block_acceptance_batched: Monte Carlo over many contexts in lockstep (issue 16, block level).

Losslessness is not re-proved here (the scalar rules are checked exactly elsewhere); we check
that the vectorised acceptance probabilities equal the scalar rule's on random rows, and that the
batched Monte Carlo agrees with block_acceptance(method="exact") and (method="mc") per context.
"""

from __future__ import annotations

import numpy as np
import pytest

from spectheory._validate import SpecTheoryInputError
from spectheory.blocks import (
    BatchedBlockAcceptance,
    Chain,
    Chains,
    Markov,
    Tabular,
    block_acceptance,
    block_acceptance_batched,
)
from spectheory.blocks.batched import batch_model, block_h, sd_acceptance
from spectheory.blocks.rules import _bv_weights
from spectheory.verifiers.base import z_value
from spectheory.verifiers.sd import accept_prob

GAMMA = 3
V = 4
# z-tests: 2 verifiers x 6 contexts x (1 mean + 4 pmf entries) against exact + 2 x 2 against mc
# = 64 tests, Bonferroni-corrected to 99% overall (two-sided z = 3.78)
N_TESTS = 64
Z = z_value(1 - 0.01 / N_TESTS)
# Power: to detect a per-context bias of delta = 0.05 tokens with power 0.99, with sd(tau) <= 1
# (gamma = 3 here; measured sds are 0.6-1.1), S >= ((Z + z_0.99) * sd / delta)^2
# = ((3.78 + 2.33) * 1 / 0.05)^2 ~ 14,900 draws per context.
S = 15_000


def _pair(seed: int) -> tuple[Tabular, Tabular]:
    rng = np.random.default_rng(seed)
    # every context of length < GAMMA + 2: contexts of length 1, then the GAMMA drafted tokens
    p = Tabular.random(V, GAMMA + 2, rng, concentration=0.7)
    q = Tabular.random(V, GAMMA + 2, rng, concentration=0.7)
    return p, q


CONTEXTS = [(0,), (1,), (2,), (3,), (1, 2), (3, 0)]


@pytest.fixture(scope="module")
def batched_runs() -> dict[str, BatchedBlockAcceptance]:
    p, q = _pair(11)
    return {
        v: block_acceptance_batched(
            batch_model(p), batch_model(q), Chain(GAMMA), v, contexts=CONTEXTS, samples=S, seed=5
        )
        for v in ("sd", "block")
    }


# ---------------------------------------------------------------------- vectorised == scalar
def _random_rows(rng: np.random.Generator, R: int, g: int, Vr: int):
    def rows(n: int) -> np.ndarray:
        a = rng.dirichlet(np.full(Vr, 0.5), size=n)
        a[rng.random((n, Vr)) < 0.2] = 0.0  # zeros, including on drafted tokens of p
        a[:, 0] += 1e-3  # keep every row non-empty
        return a / a.sum(axis=1, keepdims=True)

    ps = np.stack([rows(R) for _ in range(g + 1)])
    qs = np.stack([rows(R) for _ in range(g)])
    # some rows with q_i = p_i (denominator 0 in h_i, w = 1)
    ps[:-1, :5] = qs[:, :5]
    xs = np.empty((g, R), dtype=np.int64)
    for i in range(g):
        for r in range(R):
            xs[i, r] = rng.choice(Vr, p=qs[i, r])
    return ps, qs, xs


@pytest.mark.parametrize("g", [1, 2, 4])
def test_block_h_equals_scalar_rule(g: int) -> None:
    rng = np.random.default_rng(100 + g)
    R, Vr = 60, 7
    ps, qs, xs = _random_rows(rng, R, g, Vr)
    h = block_h(ps, qs, xs)
    for r in range(R):
        _w, hs, _res, _mass = _bv_weights(
            [ps[i, r] for i in range(g + 1)], [qs[i, r] for i in range(g)], list(xs[:, r]), 1.0
        )
        np.testing.assert_allclose(h[:, r], hs[1:], rtol=0, atol=1e-12)


def test_sd_acceptance_equals_scalar_rule() -> None:
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(5), size=200)
    q = rng.dirichlet(np.ones(5), size=200)
    x = rng.integers(0, 5, size=200)
    px, qx = p[np.arange(200), x], q[np.arange(200), x]
    want = np.array([accept_prob(a, b) for a, b in zip(px, qx, strict=True)])
    np.testing.assert_allclose(sd_acceptance(px, qx), want, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------- agreement in law
@pytest.mark.parametrize("verifier", ["sd", "block"])
def test_batched_mean_matches_exact_per_context(batched_runs, verifier: str) -> None:
    p, q = _pair(11)
    res = batched_runs[verifier]
    assert res.lengths.shape == (len(CONTEXTS), S)
    for b, ctx in enumerate(CONTEXTS):
        ex = block_acceptance(p, q, Chain(GAMMA), verifier, context=ctx, method="exact")
        k = np.arange(GAMMA + 1)
        sd = np.sqrt(ex.length_pmf @ k**2 - ex.mean**2)
        got = res.per_context_mean[b]
        assert abs(got - ex.mean) <= Z * sd / np.sqrt(S), (verifier, ctx, got, ex.mean)
        # the pmf too (per length, same z)
        pmf = np.bincount(res.lengths[b], minlength=GAMMA + 1) / S
        se = np.sqrt(ex.length_pmf * (1 - ex.length_pmf) / S)
        assert np.all(np.abs(pmf - ex.length_pmf) <= Z * se + 1e-12)


@pytest.mark.parametrize("verifier", ["sd", "block"])
def test_batched_mean_matches_scalar_mc(batched_runs, verifier: str) -> None:
    p, q = _pair(11)
    res = batched_runs[verifier]
    n = 2_000
    for b in (0, 4):
        mc = block_acceptance(
            p, q, Chain(GAMMA), verifier, context=CONTEXTS[b], method="mc", samples=n, seed=9
        )
        got = res.per_context_mean[b]
        se_got = res.lengths[b].std(ddof=1) / np.sqrt(S)
        assert abs(got - mc.mean) <= Z * np.hypot(se_got, mc.stderr)


def test_overall_result(batched_runs) -> None:
    res = batched_runs["block"]
    assert isinstance(res, BatchedBlockAcceptance)
    assert res.mean == pytest.approx(res.per_context_mean.mean(), abs=1e-12)
    assert res.tokens_per_call == res.mean + 1
    assert res.low < res.mean < res.high and res.contains(res.mean)
    assert res.samples == len(CONTEXTS) * S and res.info["contexts"] == len(CONTEXTS)
    assert res.length_pmf.sum() == pytest.approx(1.0)
    # block verification dominates sd on every context (Sun et al.), up to noise
    sd = batched_runs["sd"]
    assert res.mean >= sd.mean - Z * np.hypot(res.stderr, sd.stderr)


def test_lockstep_call_counts() -> None:
    m = Markov([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]])
    calls = {"t": [], "d": []}

    def wrap(key, model):
        f = batch_model(model)

        def g(ctxs):
            calls[key].append(len(ctxs))
            return f(ctxs)

        return g

    B, s, g = 7, 3, 4
    block_acceptance_batched(
        wrap("t", m), wrap("d", m), Chain(g), "sd", contexts=[(0,)] * B, samples=s, seed=0
    )
    assert calls["d"] == [B * s] * g  # one draft call per depth over all rows
    assert calls["t"] == [B * s * (g + 1)]  # one target call over all drafted prefixes


def test_same_model_accepts_everything() -> None:
    m = Markov([0.3, 0.7], [[0.6, 0.4], [0.1, 0.9]])
    for v in ("sd", "block"):
        r = block_acceptance_batched(
            batch_model(m), batch_model(m), Chain(3), v, contexts=[(), (1,)], samples=50, seed=1
        )
        assert np.all(r.lengths == 3)


def test_seeded_reproducible() -> None:
    p, q = _pair(2)
    kw = {"contexts": [(0,), (1,)], "samples": 100, "seed": 4}
    a = block_acceptance_batched(batch_model(p), batch_model(q), Chain(2), "block", **kw)
    b = block_acceptance_batched(batch_model(p), batch_model(q), Chain(2), "block", **kw)
    np.testing.assert_array_equal(a.lengths, b.lengths)


def test_input_errors() -> None:
    m = Markov([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]])
    f = batch_model(m)
    ok = {"contexts": [(0,), (1,)]}
    with pytest.raises(SpecTheoryInputError, match="Chain"):
        block_acceptance_batched(f, f, Chains(2, 2), "sd", **ok)
    with pytest.raises(SpecTheoryInputError, match="verifier"):
        block_acceptance_batched(f, f, Chain(2), "rrs", **ok)
    with pytest.raises(SpecTheoryInputError, match="backend"):
        block_acceptance_batched(f, f, Chain(2), "sd", backend="torch", **ok)
    with pytest.raises(SpecTheoryInputError, match="contexts"):
        block_acceptance_batched(f, f, Chain(2), "sd", contexts=[])
    with pytest.raises(SpecTheoryInputError, match="samples"):
        block_acceptance_batched(f, f, Chain(2), "sd", samples=0, **ok)
    with pytest.raises(SpecTheoryInputError, match="shape"):
        block_acceptance_batched(f, lambda c: np.ones((1, 2)) / 2, Chain(2), "sd", **ok)
    with pytest.raises(SpecTheoryInputError, match="sums"):
        block_acceptance_batched(f, lambda c: np.ones((len(c), 2)), Chain(2), "sd", **ok)
    with pytest.raises(SpecTheoryInputError, match="V ="):
        block_acceptance_batched(
            lambda c: np.ones((len(c), 3)) / 3, f, Chain(2), "sd", **ok
        )
