"""Tests of the verification rules: exact values, losslessness of the samplers, acceptance vs
Monte Carlo, bounds by alpha*, and the naive rule failing the output-law check."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_
from scipy import stats

import spectheory as st
from spectheory import verifiers as V
from spectheory.verifiers.base import Verifier
from spectheory.verifiers.kseq import rho_star
from spectheory.verifiers.rrs_wor import MAX_HISTORY_CELLS, RRSWithoutReplacement, _exact_row

#: Floating-point agreement of closed forms with exact / reference values.
EXACT_ATOL = 1e-12
#: Slack allowed when comparing an acceptance with alpha* from an LP / prefix solver.
BOUND_TOL = 1e-9
#: A lossless sampler must pass the chi-square test at this p-value (fixed seeds).
CHI2_PASS = 1e-3
#: The naive rule must fail it at this p-value.
CHI2_FAIL = 1e-8
#: Normal quantile of the 99.9% two-sided CI used for empirical acceptances (9 parametrised cases
#: at a fixed seed: a 99% CI would be expected to miss about once in 11 such cases).
Z_CI = 3.29
#: Draws per chi-square test (decisive for the instances below, fast on 2 cores).
N_DRAWS = 12_000

P8 = [0.6, 0.3, 0.1]
Q8 = [0.2, 0.3, 0.5]
LOSSLESS = ["sd", "rrs", "rrs_wor", "kseq", "spechub", "greedy"]


def _applies(name: str, n: int) -> bool:
    return not (name == "spechub" and n != 2) and not (name == "greedy" and n < 2)


# --------------------------------------------------------------------------- theory.md section 8
def _rrs_fraction(p: list[Fraction], q: list[Fraction], n: int) -> Fraction:
    """RRS with replacement in exact rational arithmetic (independent of the numpy code)."""
    r, alive, acc = list(p), Fraction(1), Fraction(0)
    for _ in range(n):
        beta = sum(min(a, b) for a, b in zip(r, q, strict=True))
        acc += alive * beta
        rest = [max(a - b, Fraction(0)) for a, b in zip(r, q, strict=True)]
        s = sum(rest)
        if s == 0:
            break
        r = [x / s for x in rest]
        alive *= 1 - beta
    return acc


def test_section8_values() -> None:
    # theory.md section 8: single draft 3/5, RRS with replacement 17/25, RRS without replacement
    # 19/25, K-SEQ with rho* = 0.9 + sqrt(0.41), greedy / hub alpha* = 4/5.
    assert V.acceptance("sd", P8, Q8, 1) == pytest.approx(0.6, abs=EXACT_ATOL)
    assert V.acceptance("rrs", P8, Q8, 2) == pytest.approx(17 / 25, abs=EXACT_ATOL)
    assert V.acceptance("rrs_wor", P8, Q8, 2) == pytest.approx(19 / 25, abs=EXACT_ATOL)
    rho = 0.9 + math.sqrt(0.41)
    assert rho_star(P8, Q8, 2) == pytest.approx(rho, abs=1e-12)
    # alpha = sum min(p, rho q) = 0.2 rho + 0.3 + 0.1 (rho * 0.3 > 0.3, rho * 0.5 > 0.1).
    assert V.acceptance("kseq", P8, Q8, 2) == pytest.approx(0.4 + 0.2 * rho, abs=1e-12)
    assert V.acceptance("kseq", P8, Q8, 2) == pytest.approx(0.708062, abs=1e-6)
    assert V.acceptance("greedy", P8, Q8, 2) == pytest.approx(0.8, abs=EXACT_ATOL)
    assert V.acceptance("spechub", P8, Q8, 2) == pytest.approx(0.8, abs=EXACT_ATOL)
    frac = _rrs_fraction([Fraction(6, 10), Fraction(3, 10), Fraction(1, 10)],
                         [Fraction(2, 10), Fraction(3, 10), Fraction(5, 10)], 2)
    assert frac == Fraction(17, 25)


def test_registry_names() -> None:
    assert set([*LOSSLESS, "naive"]) <= set(V.names())
    assert V.get("naive").lossless is False
    assert all(V.get(n).lossless for n in LOSSLESS)


# --------------------------------------------------------------------------- accepted mass
@settings(max_examples=25)
@given(
    seed=st_.integers(0, 10_000),
    Vn=st_.integers(3, 6),
    n=st_.integers(1, 3),
)
def test_accepted_mass_and_bound(seed: int, Vn: int, n: int) -> None:
    """a sums to the acceptance, 0 <= a <= p, and acceptance <= alpha* of the rule's scheme
    (alpha* by spectheory.optimal_acceptance: prefix theorem or the explicit LP)."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(Vn, 0.7))
    q = rng.dirichlet(np.full(Vn, 0.7))
    for name in LOSSLESS:
        if not _applies(name, n):
            continue
        v = V.get(name)()
        a = v.accepted_mass(p, q, n)
        acc = v.acceptance(p, q, n)
        assert abs(a.sum() - acc) <= EXACT_ATOL
        assert np.all(a >= -EXACT_ATOL)
        assert np.all(a <= p + 1e-9), name
        alpha = st.optimal_acceptance(p, v.scheme(q, n)).value
        assert acc <= alpha + BOUND_TOL, (name, acc, alpha)
        if name in ("greedy", "spechub"):  # optimal for their schemes
            assert acc == pytest.approx(alpha, abs=BOUND_TOL)
        if name == "kseq":  # SpecTr: >= (1 - (1 - 1/n)^n) alpha* >= (1 - 1/e) alpha*
            assert acc >= (1 - (1 - 1 / n) ** n) * alpha - BOUND_TOL
            assert acc >= (1 - 1 / math.e) * alpha - BOUND_TOL


def test_rho_star_solves_equation() -> None:
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(50), size=4)
    q = rng.dirichlet(np.ones(50), size=4)
    for n in (2, 4, 8):
        rho = rho_star(p, q, n)
        beta = np.minimum(q, p / rho[:, None]).sum(axis=1)
        assert np.all((rho >= 1) & (rho <= n))
        np.testing.assert_allclose(1 - (1 - beta) ** n, rho * beta, atol=1e-12)


def test_batched_matches_rows() -> None:
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.ones(8), size=5)
    q = rng.dirichlet(np.ones(8), size=5)
    for name in [*LOSSLESS, "naive"]:
        for n in (1, 2, 3):
            if not _applies(name, n):
                continue
            got = V.acceptance(name, p, q, n)
            want = [V.acceptance(name, p[b], q[b], n) for b in range(5)]
            np.testing.assert_allclose(got, want, atol=EXACT_ATOL)


# --------------------------------------------------------------------------- samplers
def _joint_counts(name: str, p: np.ndarray, q, n: int, seed: int, **kw) -> np.ndarray:
    """Counts of (accepted, token) over N_DRAWS decodes: row 0 rejected, row 1 accepted."""
    v = V.get(name)(**kw)
    rng = np.random.default_rng(seed)
    drafts = v.scheme(q, n).sample(rng, N_DRAWS)
    counts = np.zeros((2, len(p)))
    for s in range(N_DRAWS):
        y, ok = v.sample(p, q, drafts[s], rng)
        counts[int(ok), y] += 1
    return counts


def _chi2_joint(counts: np.ndarray, a: np.ndarray, p: np.ndarray) -> float:
    """Chi-square p-value of counts of (accepted, y) against (p - a, a); cells with zero expected
    mass must be empty."""
    expected = np.stack([np.maximum(p - a, 0.0), a]) * counts.sum()
    empty = expected < 1e-9
    assert np.all(counts[empty] == 0)
    return float(stats.chisquare(counts[~empty], expected[~empty] * counts[~empty].sum()
                                 / expected[~empty].sum()).pvalue)


P4 = np.array([0.4, 0.3, 0.2, 0.1])
Q4 = np.array([0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize(
    ("name", "n"),
    [("sd", 1), ("rrs", 2), ("rrs", 3), ("rrs_wor", 2), ("rrs_wor", 3), ("kseq", 3),
     ("spechub", 2), ("greedy", 2), ("greedy", 3)],
)
def test_sampler_is_lossless(name: str, n: int) -> None:
    """Output law = p and Pr(accept, Y = y) = a(y): one chi-square over the 2V cells (fixed seed);
    also the empirical acceptance lies in the 99.9% CI around the exact one."""
    counts = _joint_counts(name, P4, Q4, n, seed=11)
    a = V.get(name)().accepted_mass(P4, Q4, n)
    assert _chi2_joint(counts, a, P4) > CHI2_PASS
    out = counts.sum(axis=0)
    assert stats.chisquare(out, P4 * N_DRAWS).pvalue > CHI2_PASS
    acc = counts[1].sum() / N_DRAWS
    se = math.sqrt(a.sum() * (1 - a.sum()) / N_DRAWS)
    assert abs(acc - a.sum()) <= Z_CI * se


def test_naive_fails_output_law() -> None:
    """The naive rule's exact output law is not p (TV computed), and the chi-square check that
    every lossless rule passes rejects it decisively."""
    v = V.get("naive")()
    law = v.output_law(P4, Q4, 2)
    assert 0.5 * np.abs(law - P4).sum() > 0.05
    counts = _joint_counts("naive", P4, Q4, 2, seed=11)
    assert stats.chisquare(counts.sum(axis=0), P4 * N_DRAWS).pvalue < CHI2_FAIL
    # and its own (wrong) law is what the sampler produces
    assert stats.chisquare(counts.sum(axis=0), law * N_DRAWS).pvalue > CHI2_PASS


def test_rrs_per_draft() -> None:
    qs = np.array([Q4, [0.25, 0.25, 0.25, 0.25], [0.05, 0.05, 0.5, 0.4]])
    v = V.get("rrs")(per_draft=True)
    # identical q per draft reduces to the i.i.d. rule
    assert v.acceptance(P4, np.array([Q4, Q4]), 2) == pytest.approx(
        V.acceptance("rrs", P4, Q4, 2), abs=EXACT_ATOL
    )
    acc = v.acceptance(P4, qs, 3)
    alpha = st.optimal_acceptance(P4, st.Independent(qs)).value
    assert acc <= alpha + BOUND_TOL
    assert V.acceptance("rrs", P4, qs, 3, per_draft=True) == pytest.approx(acc, abs=EXACT_ATOL)
    rng = np.random.default_rng(5)
    drafts = v.scheme(qs, 3).sample(rng, N_DRAWS)
    counts = np.zeros((2, 4))
    for s in range(N_DRAWS):
        y, ok = v.sample(P4, qs, drafts[s], rng)
        counts[int(ok), y] += 1
    assert _chi2_joint(counts, v.accepted_mass(P4, qs, 3), P4) > CHI2_PASS


@pytest.mark.parametrize("name", LOSSLESS)
def test_acceptance_mc_contains_exact(name: str) -> None:
    n = 1 if name == "sd" else 2
    # the generic estimator (runs the sampler); rrs_wor's path estimator is tested below
    v = V.get(name)()
    est = Verifier.acceptance_mc(v, P8, Q8, n, np.random.default_rng(2), samples=4000)
    assert est.contains(V.acceptance(name, P8, Q8, n))
    assert est.stderr > 0


# ------------------------------------------------------------------- RRS without replacement
def test_rrs_wor_n2_fast_path_matches_enumeration() -> None:
    rng = np.random.default_rng(9)
    for Vn in (3, 5, 9):
        p, q = rng.dirichlet(np.ones(Vn)), rng.dirichlet(np.full(Vn, 0.5))
        fast = RRSWithoutReplacement().accepted_mass(p, q, 2)
        np.testing.assert_allclose(fast, _exact_row(p, q, 2), atol=EXACT_ATOL)


def test_rrs_wor_path_estimator_unbiased() -> None:
    rng = np.random.default_rng(4)
    p, q = rng.dirichlet(np.ones(7)), rng.dirichlet(np.full(7, 0.5))
    v = RRSWithoutReplacement()
    exact = v.acceptance(p, q, 4)
    est = v.acceptance_mc(p, q, 4, np.random.default_rng(1), samples=3000)
    assert est.contains(exact)
    assert exact <= st.optimal_acceptance(p, st.WithoutReplacement(q, 4)).value + BOUND_TOL


def test_rrs_wor_too_large_raises() -> None:
    q = np.full(1000, 1e-3)
    v = RRSWithoutReplacement()
    assert not v.exact_feasible(q, q, 4)
    assert 1000.0**3 * 1000 > MAX_HISTORY_CELLS
    with pytest.raises(ValueError, match="acceptance_mc"):
        v.acceptance(q, q, 4)


# --------------------------------------------------------------------------- validation
def test_errors_name_argument_and_row() -> None:
    bad = np.array([[0.5, 0.5, 0.0], [0.5, 0.6, 0.0]])
    with pytest.raises(ValueError, match=r"'p', row 1"):
        V.acceptance("rrs", bad, [[0.2, 0.3, 0.5]] * 2, 2)
    with pytest.raises(ValueError, match="'drafts'"):
        V.get("rrs")().sample(P8, Q8, [0, 7], np.random.default_rng(0))
    with pytest.raises(ValueError, match="'n'"):
        V.acceptance("spechub", P8, Q8, 3)
    with pytest.raises(ValueError, match="'name'"):
        V.acceptance("nope", P8, Q8, 2)
    with pytest.raises(ValueError, match="'q'"):
        V.acceptance("rrs_wor", P8, [1.0, 0.0, 0.0], 2)
    with pytest.raises(ValueError, match="distinct"):
        V.get("rrs_wor")().sample(P8, Q8, [1, 1], np.random.default_rng(0))
