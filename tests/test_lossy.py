"""Lossy rules (spectheory.verifiers.lossy): closed forms against enumeration of their tuple laws,
hand-computed values, exact Fraction biases, and their place under the acceptance-bias frontier."""

from __future__ import annotations

import math
from fractions import Fraction as F

import numpy as np
import pytest

import spectheory as st
from spectheory import verifiers as V
from spectheory.audit import exact_audit, frontier_closed
from spectheory.verifiers.lossy import Ensemble, LossyVerifier, OneHotVerify, Typical

LOSSY = ["exact_match", "onehot_draft", "typical", "ensemble"]


def _pair(rng, V_):
    return rng.dirichlet(np.ones(V_)), rng.dirichlet(np.ones(V_))


def test_registered_and_flagged_lossy():
    for name in LOSSY:
        assert name in V.names()
        assert V.get(name).lossless is False


@pytest.mark.parametrize("name", LOSSY)
def test_closed_forms_match_enumeration(name):
    rng = np.random.default_rng(11)
    rule = V.get(name)()
    for _ in range(6):
        p, q = _pair(rng, int(rng.integers(3, 7)))
        for n in (1, 2, 3):
            tuples, probs = rule.scheme(q, n).enumerate()
            acc = sum(w * rule.tuple_law(p, q, t)[0] for t, w in zip(tuples, probs, strict=True))
            law = LossyVerifier.output_law(rule, p, q, n)  # enumeration
            np.testing.assert_allclose(rule.accepted_mass(p, q, n), acc, atol=1e-13)
            np.testing.assert_allclose(rule.output_law(p, q, n), law, atol=1e-13)
            assert law.sum() == pytest.approx(1.0, abs=1e-13)
            assert rule.bias(p, q, n) == pytest.approx(0.5 * np.abs(law - p).sum(), abs=1e-13)
            assert rule.acceptance(p, q, n) == pytest.approx(acc.sum(), abs=1e-13)


def test_batched_rows_equal_single_rows():
    rng = np.random.default_rng(3)
    P, Q = rng.dirichlet(np.ones(5), size=3), rng.dirichlet(np.ones(5), size=3)
    for name in ["exact_match", "typical", "ensemble"]:
        rule = V.get(name)()
        got = rule.accepted_mass(P, Q, 2)
        for b in range(3):
            np.testing.assert_allclose(got[b], rule.accepted_mass(P[b], Q[b], 2), atol=1e-15)


def test_exact_match_hand_values():
    p, q = [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]
    r = V.get("exact_match")()
    assert r.acceptance(p, q, 2) == pytest.approx(1 - 0.8**2)
    assert r.bias(p, q, 2) == pytest.approx(0.5)
    np.testing.assert_array_equal(r.output_law(p, q, 1), [1.0, 0.0, 0.0])


def test_onehot_draft_hand_values_and_the_lossless_one_hot_verifier():
    p, q = [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]
    r = V.get("onehot_draft")()
    # draft = argmax q = 2, accepted with p/q = 0.4, else residual (0.3, 0, 0)/0.3 -> token 0
    np.testing.assert_allclose(r.output_law(p, q, 1), [0.6, 0.0, 0.4])
    assert r.acceptance(p, q, 1) == pytest.approx(0.4)
    assert r.bias(p, q, 1) == pytest.approx(0.3)
    # verifying against the one-hot law of the drafted token is lossless, for any token
    ov = OneHotVerify()
    for x in range(3):
        a, rej = ov.tuple_law(p, q, [x])
        np.testing.assert_allclose(a + rej, p, atol=1e-16)
    assert exact_audit(ov, [F(1, 2), F(3, 10), F(1, 5)], [F(1, 5), F(3, 10), F(1, 2)], 1).tv == 0


def test_typical_threshold_is_medusa_criterion():
    p = np.array([0.7, 0.2, 0.06, 0.04])
    t = Typical()
    H = -float(np.sum(p * np.log(p)))
    assert t.threshold(p) == pytest.approx(min(0.09, 0.3 * math.exp(-H)))
    assert t.passing(p) == [0, 1]  # threshold = min(0.09, 0.3 e^{-H} = 0.126) = 0.09
    # drafts (2, 1): token 1 passes -> accepted; drafts (2, 3): nobody passes -> argmax 0
    a, r = t.tuple_law(p, [0.25] * 4, [2, 1])
    assert a[1] == 1 and r.sum() == 0
    a, r = t.tuple_law(p, [0.25] * 4, [2, 3])
    assert a.sum() == 0 and r[0] == 1
    # Medusa's code computes H with log(p + 1e-5)
    t2 = Typical(entropy_offset=1e-5)
    H2 = -float(np.sum(p * np.log(p + 1e-5)))
    assert t2.threshold(p) == pytest.approx(min(0.09, 0.3 * math.exp(-H2)))
    with pytest.raises(ValueError, match="epsilon"):
        Typical(epsilon=0)


def test_ensemble_closed_forms_and_weight_one_is_sd():
    rng = np.random.default_rng(5)
    for _ in range(5):
        p, q = _pair(rng, 6)
        beta = np.minimum(p, q).sum()
        for w in (0.2, 0.5, 0.9):
            e = Ensemble(w)
            assert e.bias(p, q, 1) == pytest.approx((1 - w) * (1 - beta), abs=1e-14)
            assert e.acceptance(p, q, 1) == pytest.approx(beta + (1 - w) * (1 - beta), abs=1e-14)
        assert Ensemble(1.0).bias(p, q, 1) == pytest.approx(0.0, abs=1e-15)
        np.testing.assert_allclose(Ensemble(1.0).accepted_mass(p, q, 1), np.minimum(p, q))
    with pytest.raises(ValueError, match="weight"):
        Ensemble(0.0)


def test_exact_fraction_bias_of_the_ensemble():
    p, q = [F(1, 2), F(1, 3), F(1, 6)], [F(1, 4), F(1, 4), F(1, 2)]
    e = exact_audit(Ensemble(0.5), p, q, 1)
    assert e.tv == F(1, 2) * F(1, 3)  # (1 - w) TV(p, q), TV = 1/3
    assert e.acceptance == F(2, 3) + F(1, 6)
    assert isinstance(e.output_law[0], F) and sum(e.output_law) == 1


def test_lossy_rules_can_exceed_alpha_star_but_not_the_frontier():
    """Why the token-level guard must skip lossy rules: their acceptance may exceed alpha* of the
    scheme. It never exceeds the frontier min(1, alpha* + bias) (spectheory.audit.frontier)."""
    rng = np.random.default_rng(8)
    exceeded = set()
    for _ in range(20):
        p, q = _pair(rng, 5)
        for name in LOSSY:
            r = V.get(name)()
            for n in (1, 2):
                sch = r.scheme(q, n)
                a_star = float(st.optimal_acceptance(p, sch).value)
                acc = float(r.acceptance(p, q, n))
                if acc > a_star + 1e-9:
                    exceeded.add(name)
                assert acc <= float(frontier_closed(p, sch, r.bias(p, q, n))) + 1e-12
    assert {"typical", "ensemble"} <= exceeded


def test_ensemble_sits_on_the_one_draft_frontier():
    rng = np.random.default_rng(9)
    p, q = _pair(rng, 7)
    for w in (0.1, 0.6):
        e = Ensemble(w)
        assert e.acceptance(p, q, 1) == pytest.approx(
            float(frontier_closed(p, st.IID(q, 1), e.bias(p, q, 1))), abs=1e-14
        )
