"""Tests of spectheory.gap: values on theory.md section 8, batching, outputs, errors."""

from __future__ import annotations

import numpy as np
import pytest

import spectheory as st
from spectheory.gap import GapReport

#: Agreement with exact values (closed forms, theory.md section 8).
EXACT_ATOL = 1e-12

P8 = [0.6, 0.3, 0.1]
Q8 = [0.2, 0.3, 0.5]


def test_section8_gaps() -> None:
    # theory.md section 8: alpha*_iid = 19/25, alpha*_wor = 31/35, alpha*_greedy = 4/5,
    # RRS 17/25, RRS w/o replacement 19/25.
    r = st.gap(P8, Q8, 2, schemes=["iid", "wor", "greedy"])
    assert isinstance(r, GapReport)
    assert r.alpha_star["iid"][0] == pytest.approx(19 / 25, abs=EXACT_ATOL)
    assert r.alpha_star["wor"][0] == pytest.approx(31 / 35, abs=EXACT_ATOL)
    assert r.alpha_star["greedy"][0] == pytest.approx(4 / 5, abs=EXACT_ATOL)
    g = r.gap
    assert g["rrs"][0] == pytest.approx(19 / 25 - 17 / 25, abs=EXACT_ATOL)
    assert g["rrs_wor"][0] == pytest.approx(31 / 35 - 19 / 25, abs=EXACT_ATOL)
    assert g["sd"][0] == pytest.approx(19 / 25 - 3 / 5, abs=EXACT_ATOL)
    assert g["greedy"][0] == pytest.approx(0.0, abs=EXACT_ATOL)
    assert r.scheme_of["rrs_wor"] == "wor" and r.scheme_of["kseq"] == "iid"
    assert set(r.gap) == {"sd", "rrs", "rrs_wor", "kseq", "spechub", "greedy"}
    assert set(r.bias) == {"naive", "exact_match", "onehot_draft", "typical", "ensemble"}


def test_lossy_rules_with_exact_bias() -> None:
    # by hand on theory.md section 8 (beta = sum min(p, q) = 3/5, y* = 0, n = 2):
    # naive: acceptance beta (1 + (1 - beta)) = 21/25, output law min(p,q) (1 + (1 - beta))
    #   + (1 - beta)(p - q)_+ = (0.28, 0.42, 0.14) + (0.16, 0, 0) -> TV from p = 4/25;
    # exact_match: acceptance 1 - (1 - q(y*))^2 = 9/25, bias 1 - p(y*) = 2/5;
    # ensemble (w = 1/2): acceptance beta + (1 - beta)/2 = 4/5, bias (1 - beta)/2 = 1/5.
    r = st.gap(P8, Q8, 2)
    for v, acc, tv in (("naive", 21 / 25, 4 / 25), ("exact_match", 9 / 25, 2 / 5),
                       ("ensemble", 4 / 5, 1 / 5)):
        assert r.acceptance[v][0] == pytest.approx(acc, abs=EXACT_ATOL)
        assert r.bias[v][0] == pytest.approx(tv, abs=EXACT_ATOL)
        assert not r.lossless(v) and v not in r.gap
    # lossy rules may beat alpha*: naive accepts 21/25 > alpha*_iid = 19/25, no negative "gap"
    assert r.acceptance["naive"][0] > r.alpha_star["iid"][0]
    assert r.lossless("rrs") and "bias[naive]" in r.summary() and "gap[naive]" not in r.summary()
    text = r.table()
    assert "naive (lossy)" in text and "bias (TV)" in text and "-0.0000" not in text
    recs = [x for x in r.records() if x["verifier"] == "exact_match"]
    assert recs[0]["lossless"] is False and recs[0]["bias"] == pytest.approx(0.4)
    # explicit verifiers: no lossy rows unless asked; a lossless name is not a lossy rule
    assert not st.gap(P8, Q8, 2, verifiers=["rrs"]).bias
    assert set(st.gap(P8, Q8, 2, verifiers=["rrs"], lossy=["typical"]).bias) == {"typical"}
    with pytest.raises(ValueError, match="'lossy'"):
        st.gap(P8, Q8, 2, lossy=["rrs"])
    # a one-hot draft with fewer tokens than n: onehot_draft is skipped with a note
    r1 = st.gap(P8, [1.0, 0.0, 0.0], 2, verifiers=["rrs"], lossy=["onehot_draft", "ensemble"])
    assert set(r1.bias) == {"ensemble"} and any("onehot_draft" in m for m in r1.notes)


def test_batched_per_position_and_summaries() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(20), size=6)
    q = rng.dirichlet(np.ones(20), size=6)
    r = st.gap(p, q, 3, verifiers=["rrs", "kseq", "greedy", "rrs_wor"])
    assert r.batch_size == 6
    for b in (0, 4):
        rb = st.gap(p[b], q[b], 3, verifiers=["rrs", "kseq", "greedy", "rrs_wor"])
        for v in r.scheme_of:
            assert r.acceptance[v][b] == pytest.approx(rb.acceptance[v][0], abs=EXACT_ATOL)
            assert r.gap[v][b] == pytest.approx(rb.gap[v][0], abs=EXACT_ATOL)
    for v in r.scheme_of:  # lossless rules never beat alpha*
        assert np.all(r.gap[v] >= -1e-9)
    d = r.to_dict()
    assert d["gap[rrs]"].shape == (6,) and "alpha_star[iid]" in d
    recs = r.records()
    assert len(recs) == 6 * 4 and {"position", "verifier", "scheme", "gap"} <= set(recs[0])
    s = r.summary()
    assert s["gap[kseq]"]["mean"] == pytest.approx(float(np.mean(r.gap["kseq"])), abs=EXACT_ATOL)
    assert s["gap[kseq]"]["q50"] == pytest.approx(float(np.median(r.gap["kseq"])), abs=EXACT_ATOL)
    text = r.table()
    assert "kseq" in text and "gap mean" in text and str(r) == text


def test_monte_carlo_fallback_is_marked() -> None:
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(300))
    q = rng.dirichlet(np.ones(300))
    r = st.gap(p, q, 3, verifiers=["rrs_wor", "rrs"], mc_samples=200)
    assert r.stderr["rrs_wor"][0] > 0 and r.stderr["rrs"][0] == 0
    assert any("Monte Carlo" in m for m in r.notes)
    assert "~" in r.table()
    # the estimate is a probability and (within 5 standard errors) below alpha*_wor
    assert 0 <= r.acceptance["rrs_wor"][0] <= r.alpha_star["wor"][0] + 5 * r.stderr["rrs_wor"][0]


def test_errors() -> None:
    with pytest.raises(ValueError, match="'name'"):
        st.gap(P8, Q8, 2, verifiers=["bogus"])
    with pytest.raises(ValueError, match="'schemes'"):
        st.gap(P8, Q8, 2, schemes=["bogus"])
    with pytest.raises(ValueError, match="'q'"):
        st.gap(P8, [0.5, 0.5], 2)
    with pytest.raises(ValueError, match="'n'"):
        st.gap(P8, Q8, 0)
