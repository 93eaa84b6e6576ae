"""spectheory.audit: statistics (bins, power analysis, SPRT error control), verdicts on lossless,
lossy and broken token-level rules, block-level audits of transformers' speculative sampling and of
spectheory's decoder, exact audits, and the frontier. Fixed seeds; sample sizes come from the power
analysis (``planned_samples``)."""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest

import spectheory as st
from spectheory import verifiers as V
from spectheory.audit import (
    Status,
    audit,
    audit_decoder,
    decoder_law,
    exact_audit,
    frontier,
    frontier_closed,
    frontier_n1,
    law_tv,
    sample_size,
    sequence_law,
    stats,
)
from spectheory.audit import subjects as S
from spectheory.blocks import Chain

P6 = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
Q6 = np.array([0.1, 0.2, 0.3, 0.2, 0.1, 0.1])


# ---------------------------------------------------------------------- statistics
def test_bins_top_tokens_tail_and_impossible_bin():
    p = np.array([0.5, 0.2, 0.0] + [0.3 / 30] * 30)
    b = stats.make_bins(p, max_bins=8)
    assert b.index[2] == -1  # p = 0: the impossible bin
    assert b.index[0] != b.index[1]  # top tokens are singletons
    assert b.k < 10 and b.p.min() >= 1 / 16  # tail grouped into bins of mass >= 1/(2*8)
    assert b.p.sum() == pytest.approx(1.0)
    counts, bad = b.counts(np.array([0, 0, 2, 5]))
    assert bad == 1 and counts.sum() == 3


def test_sample_size_is_the_smallest_with_the_power():
    for eps, k in [(0.05, 6), (0.1, 30), (0.02, 64)]:
        N = sample_size(eps, k, 0.01, 0.99)
        assert stats.power_at(N, eps, k, 0.01) >= 0.99 > stats.power_at(N - 1, eps, k, 0.01)
        assert stats.detectable_tv(N, k, 0.01, 0.99) <= eps + 1e-9


def test_power_analysis_holds_for_a_worst_case_alternative():
    """Simulated Pearson tests (multinomial draws) at the planned N against an alternative at TV
    exactly eps of the Cauchy-Schwarz equality shape o = p (1 +- c): rejection rate >= power - MC
    error; and under H0 the false-alarm rate is about the level."""
    from scipy.stats import chi2

    rng = np.random.default_rng(0)
    p = np.array([0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
    sign = np.array([1, -1, 1, -1, 1, -1])  # p-weighted signs sum to 0
    eps = 0.06
    o = p * (1 + sign * 2 * eps)  # TV = eps * sum p = eps
    assert 0.5 * np.abs(o - p).sum() == pytest.approx(eps)
    N = sample_size(eps, 6, 0.01, 0.9)
    crit = chi2.isf(0.01, 5)

    def rate(law):
        c = rng.multinomial(N, law, size=4000)
        x2 = ((c - N * p) ** 2 / (N * p)).sum(axis=1)
        return (x2 > crit).mean()

    assert rate(o) >= 0.9 - 0.02
    assert rate(p) <= 0.01 + 0.006


def test_mixture_sprt_controls_the_error_under_continuous_monitoring():
    """sup over 40 looks of the Bayes factor >= 1/alpha happens with probability <= alpha under H0
    (Ville); the monitored chi-square at level alpha would exceed alpha badly."""
    rng = np.random.default_rng(1)
    p = np.array([0.4, 0.3, 0.2, 0.1])
    alpha, reps, looks, step = 0.05, 1500, 40, 25
    hits = 0
    for _ in range(reps):
        c = np.zeros(4)
        for _ in range(looks):
            c += rng.multinomial(step, p)
            if stats.msprt_log_bf(c, p) >= np.log(1 / alpha):
                hits += 1
                break
    assert hits / reps <= alpha + 0.015


# ---------------------------------------------------------------------- token level
LOSSLESS_CASES = [
    ("sd", 1), ("rrs", 2), ("rrs_wor", 2), ("kseq", 2), ("greedy", 2), ("spechub", 2),
    ("khisti", 2), ("optimal", 2),
]


@pytest.mark.parametrize(("name", "n"), LOSSLESS_CASES)
def test_every_spectheory_verifier_passes(name, n):
    rule = V.get(name)()
    sch = rule.scheme(Q6, n)
    r = audit(S.verifier_sampler(rule, P6, Q6), P6, sch, tv=0.08, seed=8)
    assert r.status is Status.PASS, r.summary()
    assert r.samples == r.planned_samples == sample_size(0.08, 6, 0.01, 0.99, P6.min())
    assert r.tv_interval[0] == 0.0 and r.tv <= r.tv_interval[1]
    assert not r.exceeds_alpha_star


def test_acceptance_against_claim_and_alpha_star():
    r = audit(S.verifier_sampler("sd", P6, Q6), P6, st.IID(Q6, 1), tv=0.08, seed=3,
              claimed_acceptance=float(V.acceptance("sd", P6, Q6, 1)))
    assert r.claim_consistent and r.alpha_star == pytest.approx(np.minimum(P6, Q6).sum())
    # a wrong claim is flagged
    r2 = audit(S.verifier_sampler("sd", P6, Q6), P6, st.IID(Q6, 1), tv=0.08, seed=3,
               claimed_acceptance=0.9)
    assert r2.claim_consistent is False


def test_naive_and_lossy_rules_fail_and_the_tv_interval_holds_the_exact_bias():
    for name, n in [("naive", 2), ("ensemble", 1), ("typical", 2), ("exact_match", 1),
                    ("onehot_draft", 1)]:
        rule = V.get(name)()
        exact = float(exact_audit(rule, P6, Q6, n).tv)
        r = audit(S.verifier_sampler(rule, P6, Q6), P6, rule.scheme(Q6, n), tv=exact, seed=2)
        assert r.status is Status.FAIL, (name, r.summary())
        lo, hi = r.tv_interval
        assert lo <= exact <= hi, (name, exact, r.tv_interval)


def test_typical_acceptance_beats_alpha_star_and_the_audit_says_so():
    rule = V.get("typical")()
    r = audit(S.verifier_sampler(rule, P6, Q6), P6, st.IID(Q6, 2), tv=0.1, seed=4)
    assert r.acceptance > r.alpha_star and r.exceeds_alpha_star


@pytest.mark.parametrize(
    ("sampler", "law"),
    [(S.ignores_q_sampler, S.ignores_q_law),
     (S.unnormalised_residual_sampler, S.unnormalised_residual_law)],
)
def test_broken_rules_fail_at_the_predicted_sample_size(sampler, law):
    exact = 0.5 * float(np.abs(law(P6, Q6) - P6).sum())
    assert exact > 0.1
    planned = sample_size(exact, 6, 0.01, 0.99, P6.min())
    r = audit(sampler(P6, Q6), P6, st.IID(Q6, 1), tv=exact, seed=11)
    assert r.samples == r.planned_samples == planned
    assert r.status is Status.FAIL and r.pvalue < 0.01
    assert r.tv_interval[0] <= exact <= r.tv_interval[1]
    # the exact law is what the sampler draws (more samples, interval around it)
    r = audit(sampler(P6, Q6), P6, st.IID(Q6, 1), samples=20_000, tv=exact, seed=12)
    emp = r.counts / r.samples
    np.testing.assert_allclose(emp, law(P6, Q6), atol=0.02)


def test_sequential_mode_stops_early_on_a_broken_rule_and_runs_full_on_a_good_one():
    exact = 0.5 * float(np.abs(S.ignores_q_law(P6, Q6) - P6).sum())
    r = audit(S.ignores_q_sampler(P6, Q6), P6, st.IID(Q6, 1), tv=0.05, seed=5, sequential=True)
    assert r.status is Status.FAIL and r.stopped_early and r.samples < r.planned_samples
    assert exact > 0.05
    ok = audit(S.verifier_sampler("sd", P6, Q6), P6, st.IID(Q6, 1), tv=0.1, seed=5,
               sequential=True)
    assert ok.status is Status.PASS and ok.samples == ok.planned_samples and not ok.stopped_early
    # the final test runs at level/2: the sequential plan is larger than the fixed one
    assert ok.planned_samples > sample_size(0.1, 6, 0.01, 0.99, P6.min())


def test_too_few_samples_is_inconclusive_and_impossible_tokens_fail():
    r = audit(S.verifier_sampler("sd", P6, Q6), P6, st.IID(Q6, 1), samples=200, tv=0.02, seed=1)
    assert r.status is Status.INCONCLUSIVE and r.detectable_tv > 0.02
    p = np.array([0.5, 0.5, 0.0])
    r = audit(lambda d, rng: 2 if rng.random() < 0.01 else int(rng.integers(2)), p,
              st.IID([0.5, 0.5, 0.0], 1), samples=1000, seed=1)
    assert r.status is Status.FAIL and r.impossible > 0 and r.pvalue == 0.0


def test_input_errors_are_named():
    smp = S.verifier_sampler("sd", P6, Q6)
    with pytest.raises(ValueError, match="argument 'level'"):
        audit(smp, P6, st.IID(Q6, 1), level=1.5)
    with pytest.raises(ValueError, match="argument 'samples'"):
        audit(smp, P6, st.IID(Q6, 1), samples=1)
    with pytest.raises(ValueError, match="argument 'scheme'"):
        audit(smp, P6, st.IID([0.5, 0.5], 1))
    with pytest.raises(ValueError, match="argument 'sampler'"):
        audit(lambda d, rng: 99, P6, st.IID(Q6, 1), samples=10)


# ---------------------------------------------------------------------- block level
def test_decoder_law_is_the_target_law_for_lossless_rules():
    target, draft = S.builtin_models()
    want = sequence_law(target, 3)
    for rule, s in [("sd", Chain(2)), ("rrs", Chain(1))]:
        assert law_tv(decoder_law(target, draft, s, rule, 3), want) < 1e-14


@pytest.mark.slow
def test_transformers_speculative_sampling_passes_and_ensemble_fails_with_the_exact_tv():
    pytest.importorskip("transformers")
    from spectheory.verifiers.lossy import Ensemble

    target, draft = S.builtin_models()
    want = sequence_law(target, 2)
    ok = audit_decoder(S.transformers_decoder(2), target, draft, num_tokens=2, tv=0.06, seed=21)
    assert ok.status is Status.PASS, ok.summary()
    assert ok.bins == 9  # every 2-token sequence is its own bin
    exact = float(law_tv(decoder_law(target, draft, Chain(2), Ensemble(0.5), 2), want))
    bad = audit_decoder(S.transformers_decoder(2, 0.5), target, draft, num_tokens=2, tv=0.06,
                        seed=22)
    assert bad.status is Status.FAIL
    assert bad.tv_interval[0] <= exact <= bad.tv_interval[1], (exact, bad.tv_interval)
    assert abs(bad.tv - exact) < 0.03


@pytest.mark.slow
def test_spectheory_decoder_passes_at_block_level():
    pytest.importorskip("spectheory.blocks.decode")
    from spectheory.blocks import Chains

    target, draft = S.builtin_models()
    for rule, s in [("sd", Chain(2)), ("rrs", Chains(2, 1))]:
        r = audit_decoder(S.spectheory_decoder(s, rule), target, draft, num_tokens=2, tv=0.08,
                          seed=31)
        assert r.status is Status.PASS, (rule, r.summary())
    r = audit_decoder(S.spectheory_decoder(Chain(2), "ensemble"), target, draft, num_tokens=2,
                      tv=0.08, seed=32)
    assert r.status is Status.FAIL


# ---------------------------------------------------------------------- exact audit
@pytest.mark.parametrize("name", ["sd", "rrs", "rrs_wor", "greedy", "spechub", "naive",
                                  "ensemble", "exact_match", "typical"])
def test_exact_audit_in_fractions(name):
    p = [F(1, 2), F(1, 4), F(1, 6), F(1, 12)]
    q = [F(1, 8), F(3, 8), F(1, 4), F(1, 4)]
    e = exact_audit(name, p, q, 2)
    assert e.consistent
    assert (e.tv == 0) == V.get(name).lossless
    assert sum(e.output_law) == 1


@pytest.mark.parametrize("name", ["kseq", "khisti", "optimal"])
def test_exact_audit_in_floats(name):
    rng = np.random.default_rng(4)
    p, q = rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(5))
    e = exact_audit(name, p, q, 2)
    assert e.consistent and e.tv < 1e-12
    assert e.acceptance <= e.alpha_star + 1e-9


# ---------------------------------------------------------------------- frontier
def test_frontier_closed_form_matches_the_lp_for_every_scheme():
    rng = np.random.default_rng(2)
    es = np.array([0.0, 0.01, 0.1, 0.3, 0.9])
    for i in range(12):
        V_ = int(rng.integers(3, 6))
        p, q = rng.dirichlet(np.full(V_, 0.5)), rng.dirichlet(np.full(V_, 0.5))
        n = int(rng.integers(1, 4))
        sch = [st.IID(q, n), st.WithoutReplacement(q, min(n, V_ - 1)),
               st.Greedy(q, max(2, min(n, V_ - 1)))][i % 3]
        lp = frontier(p, sch, es, method="lp")
        np.testing.assert_allclose(lp.acceptance, frontier_closed(p, sch, es), atol=1e-9)
        # the LP's law is within eps of p
        assert np.all(0.5 * np.abs(lp.laws - p).sum(axis=1) <= es + 1e-9)
        if isinstance(sch, st.IID) and n == 1:
            np.testing.assert_allclose(lp.acceptance, frontier_n1(p, q, es), atol=1e-9)
