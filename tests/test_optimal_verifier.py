"""Tests of the optimal verifier (spectheory.verifiers.optimal).

Ground truths used here, each independent of the layout construction:

* alpha* from the sorted-prefix solver and from the explicit LP (HiGHS);
* theory.md section 8: p = (0.6, 0.3, 0.1), q = (0.2, 0.3, 0.5), n = 2 gives alpha*_iid = 19/25 with
  H* = {1, 2}, and alpha*_wor = 31/35;
* the output law of the rule computed by enumerating every draft multiset and integrating the
  max-position selection exactly per tuple (``LayoutRule.selection_probs``), not from the marginal
  formula used to build the rule.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_h
from instances import chi2_top_and_rest, enumerate_iid_law

import spectheory as st
from spectheory.verifiers import acceptance, names
from spectheory.verifiers.optimal import (
    LayoutRule,
    Optimal,
    _exchange,
    accepted_mass_iid,
    layout_rule,
    lp_rule,
)

#: Output law (L1) and acceptance must match to this (the issue's contract).
EXACT_TOL = 1e-9
#: Monte Carlo: number of standard errors allowed (fixed seeds; 5 sigma never flakes by chance).
MC_SIGMAS = 5.0
#: Floating-point slack of structural identities of a built layout (sums of O(V) doubles <= 1).
ROUND_TOL = 1e-12


def _random_instance(rng: np.random.Generator, V: int) -> tuple[np.ndarray, np.ndarray]:
    conc = rng.choice([0.3, 1.0, 3.0])
    p = rng.dirichlet(np.ones(V) * conc)
    q = rng.dirichlet(np.ones(V) * rng.choice([0.3, 1.0, 3.0]))
    kind = rng.integers(6)
    if kind == 0:  # zero target masses
        p[rng.integers(V)] = 0.0
        p /= p.sum()
    elif kind == 1:  # zero draft masses
        q[rng.integers(V)] = 0.0
        q /= q.sum()
    elif kind == 2:  # ties: q = p (alpha* = 1)
        q = p.copy()
    elif kind == 3:  # tied ratios p/q
        q = np.round(q, 1) + 0.05
        q /= q.sum()
        p = q.copy()
        p[0], p[1] = p[0] + p[1] / 2, p[1] / 2
    return p, q


# ------------------------------------------------------------------------ worked example
def test_worked_example_iid() -> None:
    p, q = [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]
    rule = layout_rule(p, q, 2)
    assert abs(rule.acceptance - 19 / 25) < EXACT_TOL  # theory.md section 8
    assert rule.witness.tolist() == [False, True, True]
    # Complementary slackness: accepted mass equals p on H* = {1, 2}.
    np.testing.assert_allclose(rule.accepted[1:], [0.3, 0.1], atol=EXACT_TOL)
    law, acc = enumerate_iid_law(rule, np.array(q), 2)
    assert np.abs(law - np.array(p)).sum() < EXACT_TOL
    assert abs(acc - 19 / 25) < EXACT_TOL


def test_registry_and_public_export() -> None:
    assert "optimal" in names()
    assert st.verifiers.Optimal is Optimal
    a = acceptance("optimal", [0.6, 0.3, 0.1], [0.2, 0.3, 0.5], 2)
    assert abs(a - 19 / 25) < EXACT_TOL
    # A scheme instance supplies q and n.
    v = Optimal(st.IID([0.2, 0.3, 0.5], 2))
    assert abs(v.acceptance([0.6, 0.3, 0.1]) - 19 / 25) < EXACT_TOL


def test_worked_example_wor_lp_path() -> None:
    p, q = [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]
    v = Optimal(st.WithoutReplacement(q, 2))
    assert v.method == "lp"
    assert abs(v.acceptance(p) - 31 / 35) < EXACT_TOL  # theory.md section 8
    rule = v.setup(p)
    tuples, probs = st.WithoutReplacement(q, 2).enumerate()
    law = np.zeros(3)
    for t, w in zip(tuples, probs, strict=True):
        law += w * rule.output_law_given(t)[0]
    assert np.abs(law - np.array(p)).sum() < EXACT_TOL


# ------------------------------------------------------------------------ exact enumeration
@pytest.mark.parametrize("seed", range(12))
def test_exact_enumeration_fixed_seeds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    V = int(rng.integers(2, 8))
    n = int(rng.integers(1, 5))
    p, q = _random_instance(rng, V)
    rule = layout_rule(p, q, n)
    alpha = st.optimal_acceptance(p, st.IID(q, n), method="prefix").value
    law, acc = enumerate_iid_law(rule, q, n)
    assert np.abs(law - p).sum() < EXACT_TOL
    assert abs(acc - alpha) < EXACT_TOL
    assert abs(rule.acceptance - alpha) < EXACT_TOL


@settings(max_examples=25, deadline=None)
@given(
    seed=st_h.integers(0, 2**32 - 1),
    V=st_h.integers(2, 7),
    n=st_h.integers(1, 4),
)
def test_exact_enumeration_property(seed: int, V: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    p, q = _random_instance(rng, V)
    rule = layout_rule(p, q, n)
    alpha = float(st.optimal_acceptance(p, st.IID(q, n), method="prefix").value)
    law, acc = enumerate_iid_law(rule, q, n)
    assert np.abs(law - p).sum() < EXACT_TOL
    assert abs(acc - alpha) < EXACT_TOL
    # Selection marginal covers p on H* and stays below p off H* (complementary slackness).
    H = rule.witness & (q > 0)
    assert np.all(rule.selection[H] >= p[H] - EXACT_TOL)
    assert np.all(rule.selection[~H] <= p[~H] + EXACT_TOL)


@pytest.mark.parametrize("seed", range(8))
def test_closed_form_accepted_mass_matches_layout(seed: int) -> None:
    """``Optimal.accepted_mass`` uses the closed form the layout provably realises; check it
    against the accepted mass computed from the built layout's pieces."""
    rng = np.random.default_rng(300 + seed)
    V, n = int(rng.integers(2, 40)), int(rng.integers(1, 6))
    p, q = _random_instance(rng, V)
    rule = layout_rule(p, q, n)
    closed = accepted_mass_iid(p, q, n)
    np.testing.assert_allclose(closed, rule.accepted, atol=EXACT_TOL)
    assert abs(closed.sum() - rule.alpha_star) < EXACT_TOL


def test_exact_rational_instance() -> None:
    # alpha* by exact Fraction arithmetic over all subsets (the subset form), V = 4, n = 3.
    p = [Fraction(1, 10), Fraction(2, 10), Fraction(3, 10), Fraction(4, 10)]
    q = [Fraction(4, 10), Fraction(3, 10), Fraction(2, 10), Fraction(1, 10)]
    best = min(
        1 + sum(p[i] for i in H) - sum(q[i] for i in H) ** 3
        for k in range(5)
        for H in itertools.combinations(range(4), k)
    )
    pf, qf = np.array(p, dtype=float), np.array(q, dtype=float)
    rule = layout_rule(pf, qf, 3)
    law, acc = enumerate_iid_law(rule, qf, 3)
    assert abs(acc - float(best)) < EXACT_TOL
    assert np.abs(law - pf).sum() < EXACT_TOL


@pytest.mark.parametrize("seed", range(6))
def test_matches_lp_plan_rule(seed: int) -> None:
    """Small-V exact path: the rule read off the LP plan attains the same alpha*, and both rules
    accept exactly p on H* (complementary slackness holds for every optimal plan)."""
    rng = np.random.default_rng(100 + seed)
    V, n = int(rng.integers(2, 6)), int(rng.integers(2, 4))
    p, q = _random_instance(rng, V)
    scheme = st.IID(q, n)
    lp = lp_rule(p, scheme)
    lay = layout_rule(p, q, n)
    assert abs(lp.acceptance - lay.acceptance) < EXACT_TOL
    H = lay.witness & (q > 0)
    np.testing.assert_allclose(lay.accepted[H], p[H], atol=EXACT_TOL)
    np.testing.assert_allclose(lp.accepted[H], p[H], atol=EXACT_TOL)
    tuples, probs = scheme.enumerate()
    law = np.zeros(V)
    for t, w in zip(tuples, probs, strict=True):
        law += w * lp.output_law_given(t)[0]
    assert np.abs(law - p).sum() < EXACT_TOL


@pytest.mark.parametrize("seed", range(4))
def test_wor_lp_rule_exact(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    V, n = int(rng.integers(3, 6)), int(rng.integers(2, 4))
    p = rng.dirichlet(np.ones(V))
    q = rng.dirichlet(np.ones(V))
    scheme = st.WithoutReplacement(q, n)
    rule = Optimal("wor").setup(p, q, n)
    alpha = st.optimal_acceptance(p, scheme, method="lp").value
    tuples, probs = scheme.enumerate()
    law = np.zeros(V)
    acc = 0.0
    for t, w in zip(tuples, probs, strict=True):
        out, a = rule.output_law_given(t)
        law += w * out
        acc += w * a
    assert np.abs(law - p).sum() < EXACT_TOL
    assert abs(acc - alpha) < EXACT_TOL


# ------------------------------------------------------------------------ Monte Carlo at scale
def _lm_like(rng: np.random.Generator, V: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    z = rng.gumbel(size=V) * 2.0
    p = np.exp(z - z.max())
    p /= p.sum()
    q = np.exp(z + rng.normal(size=V) * noise)
    q /= q.sum()
    return p, q


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 4])
def test_monte_carlo_32k(n: int) -> None:
    """V = 32k, n in {2, 4}: empirical acceptance and output law of 200k verified tuples."""
    rng = np.random.default_rng(7 + n)
    V, N = 32_000, 200_000
    p, q = _lm_like(rng, V, 1.0)
    rule = layout_rule(p, q, n)
    alpha = float(st.optimal_acceptance(p, st.IID(q, n)).value)
    assert abs(rule.acceptance - alpha) < EXACT_TOL
    drafts = st.IID(q, n).sample(rng, N)
    out, acc = rule.sample_many(drafts, rng)
    se = math.sqrt(alpha * (1 - alpha) / N)
    assert abs(acc.mean() - alpha) < MC_SIGMAS * se + 1e-12
    # Output law: chi-square over the 30 most likely tokens plus 10 equal-mass bins of the rest.
    chi2, df = chi2_top_and_rest(p, out, 30, 10)
    assert chi2 < df + MC_SIGMAS * math.sqrt(2 * df)


def test_monte_carlo_small_against_exact() -> None:
    """The sampler agrees with the exact law it claims (V = 6, n = 3, 100k tuples)."""
    rng = np.random.default_rng(11)
    p, q = _random_instance(rng, 6)
    rule = layout_rule(p, q, 3)
    N = 100_000
    drafts = st.IID(q, 3).sample(rng, N)
    out, acc = rule.sample_many(drafts, rng)
    freq = np.bincount(out, minlength=6) / N
    se = np.sqrt(p * (1 - p) / N)
    assert np.all(np.abs(freq - p) <= MC_SIGMAS * se + 1e-12)
    se_a = math.sqrt(rule.acceptance * (1 - rule.acceptance) / N)
    assert abs(acc.mean() - rule.acceptance) <= MC_SIGMAS * se_a + 1e-12
    # The one-tuple entry point agrees with the vectorised one.
    y, accepted = Optimal().sample(p, q, drafts[0], rng)
    assert 0 <= y < 6 and isinstance(accepted, bool)


@pytest.mark.parametrize("n", [2, 3, 8])
def test_low_temperature_tiny_masses(n: int) -> None:
    """Peaked (temperature 0.05) targets and drafts with masses down to ~1e-60 and exact zeros:
    the layout is built, reaches alpha*, and its closed-form accepted mass agrees."""
    rng = np.random.default_rng(40 + n)
    V = 300
    z = rng.normal(size=V) / 0.05
    p = np.exp(z - z.max())
    p[rng.random(V) < 0.3] = 0.0
    p /= p.sum()
    zq = z + rng.normal(size=V) / 0.05
    q = np.exp(zq - zq.max())
    q[rng.random(V) < 0.3] = 0.0
    q /= q.sum()
    rule = layout_rule(p, q, n)
    alpha = float(st.optimal_acceptance(p, st.IID(q, n), method="prefix").value)
    assert abs(rule.acceptance - alpha) < EXACT_TOL
    np.testing.assert_allclose(accepted_mass_iid(p, q, n), rule.accepted, atol=EXACT_TOL)
    out, _ = rule.sample_many(st.IID(q, n).sample(rng, 1000), rng)
    assert np.all(p[out] > 0)  # never outputs a token the target excludes


# ------------------------------------------------------------------------ interface and input
def test_batch_acceptance_and_accepted_mass() -> None:
    rng = np.random.default_rng(3)
    P = rng.dirichlet(np.ones(5), size=3)
    Q = rng.dirichlet(np.ones(5), size=3)
    v = Optimal()
    a = v.acceptance(P, Q, 3)
    ref = st.optimal_acceptance(P, st.IID(Q, 3)).value
    np.testing.assert_allclose(a, ref, atol=EXACT_TOL)
    m = v.accepted_mass(P, Q, 3)
    assert m.shape == (3, 5)
    np.testing.assert_allclose(m.sum(axis=1), ref, atol=EXACT_TOL)


def test_bad_input_names_argument() -> None:
    v = Optimal()
    with pytest.raises(ValueError, match="argument 'p'"):
        v.acceptance([0.5, -0.1, 0.6], [0.3, 0.3, 0.4], 2)
    with pytest.raises(ValueError, match="argument 'q'"):
        v.acceptance([0.5, 0.5], [0.3, 0.3, 0.4], 2)
    with pytest.raises(ValueError, match=r"argument 'q', row 1"):
        v.acceptance([[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [0.7, 0.7]], 2)
    with pytest.raises(ValueError, match="argument 'n'"):
        v.acceptance([0.5, 0.5], [0.5, 0.5], 0)
    with pytest.raises(ValueError, match="argument 'drafts'"):
        v.sample([0.5, 0.5], [0.5, 0.5], [0, 5], np.random.default_rng(0))
    with pytest.raises(ValueError, match="argument 'drafts'"):
        v.sample([0.5, 0.5], [1.0, 0.0], [0, 1], np.random.default_rng(0))
    with pytest.raises(ValueError, match="argument 'scheme'"):
        Optimal(st.Greedy([0.5, 0.3, 0.2], 2))
    with pytest.raises(ValueError, match="argument 'method'"):
        Optimal("wor", method="layout")


# ------------------------------------------------------------------------ layout structure
def _cell_density(rule: LayoutRule) -> float:
    """Largest deviation from 1 of the summed piece densities over each slot (positions of i.i.d.
    drafts are uniform iff every slot is exactly covered)."""
    keys = np.stack([rule.piece_start, rule.piece_end], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    tot = np.bincount(inv.ravel(), weights=rule.piece_mass, minlength=len(uniq))
    return float(np.max(np.abs(tot - (uniq[:, 1] - uniq[:, 0])))) if len(uniq) else 0.0


@settings(max_examples=30, deadline=None)
@given(seed=st_h.integers(0, 2**32 - 1), V=st_h.integers(2, 300), n=st_h.integers(1, 9))
def test_layout_structure_property(seed: int, V: int, n: int) -> None:
    """Every slot is covered with total density 1, H* tokens live below q(H*) and the others
    above it, token masses equal q, and r >= p on H*, r <= p off it (so acceptance = alpha*)."""
    rng = np.random.default_rng(seed)
    p, q = _random_instance(rng, V)
    rule = layout_rule(p, q, n)
    assert _cell_density(rule) < ROUND_TOL
    H = rule.witness & (q > 0)
    S_H = q[H].sum()
    owner = rule.group_token[np.repeat(np.arange(len(rule.piece_ptr) - 1), np.diff(rule.piece_ptr))]
    live_tokens = np.flatnonzero(q > 0)
    np.testing.assert_array_equal(rule.group[rule.group_token], np.arange(len(rule.group_token)))
    assert np.array_equal(np.sort(rule.group_token), live_tokens)
    live = rule.piece_mass > 0
    inner_piece = H[owner] & live
    assert np.all(rule.piece_end[inner_piece] <= S_H + ROUND_TOL)
    assert np.all(rule.piece_start[~H[owner] & live] >= S_H - ROUND_TOL)
    tok_mass = np.bincount(owner, weights=rule.piece_mass, minlength=V)
    np.testing.assert_allclose(tok_mass, q, atol=ROUND_TOL)
    assert np.all(rule.selection[H] >= p[H] - ROUND_TOL)
    assert np.all(rule.selection[~H] <= p[~H] + ROUND_TOL)
    alpha = float(st.optimal_acceptance(p, st.IID(q, n), method="prefix").value)
    assert abs(rule.acceptance - alpha) < EXACT_TOL


@pytest.mark.parametrize("seed", range(6))
def test_exchange_hits_any_admissible_target(seed: int) -> None:
    """``_exchange`` realises *any* targets meeting its stated conditions (non-decreasing levels,
    non-negative partial sums of t - gamma, zero total), not only the water-filled ones: the value
    of every token, recomputed from the pieces as sum mass * (t^n - s^n) / length, equals its
    target. Targets here are random mean-preserving contractions of the slot densities."""
    rng = np.random.default_rng(500 + seed)
    K, n = int(rng.integers(2, 60)), int(rng.integers(1, 7))
    q = rng.dirichlet(np.ones(K))
    S = np.concatenate([[0.0], np.cumsum(q)])
    S[-1] = 1.0
    gam = S[1:] ** n - S[:-1] ** n
    s = gam / q
    # Average the slot densities over random consecutive groups, then mix with the original:
    # a contraction with non-decreasing levels, each group balanced (partial sums >= 0 because
    # the slot densities increase inside a group).
    cuts = np.unique(np.concatenate([[0], rng.integers(1, K, size=K // 3), [K]]))
    block = np.repeat(np.arange(len(cuts) - 1), np.diff(cuts))
    avg = np.bincount(block, weights=gam) / np.bincount(block, weights=q)
    lam = rng.random()
    target = q * (lam * avg[block] + (1 - lam) * s)
    pcs, dens = _exchange(S, target, block, n)
    val = np.bincount(pcs.owner, weights=pcs.mass * dens[pcs.slot], minlength=K)
    np.testing.assert_allclose(val, target, rtol=0, atol=ROUND_TOL)
    cover = np.bincount(pcs.slot, weights=pcs.mass, minlength=K)
    np.testing.assert_allclose(cover, q, rtol=0, atol=ROUND_TOL)
    assert np.all(pcs.mass >= 0)


@pytest.mark.parametrize(
    ("p", "q", "n"),
    [
        ([1.0], [1.0], 3),
        ([1.0, 0.0], [0.0, 1.0], 2),
        ([0.5, 0.5], [0.5, 0.5], 4),
        ([1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], 2),
        ([1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], 2),
        ([0.7, 0.2, 0.1], [0.1, 0.2, 0.7], 1),
        ([0.4, 0.4, 0.2, 0.0], [0.1, 0.1, 0.4, 0.4], 3),
    ],
)
def test_degenerate_instances_exact(p: list[float], q: list[float], n: int) -> None:
    """One-hot, disjoint supports, p = q, n = 1 and zero masses, by exact enumeration."""
    pv, qv = np.array(p), np.array(q)
    rule = layout_rule(pv, qv, n)
    alpha = float(st.optimal_acceptance(pv, st.IID(qv, n), method="prefix").value)
    law, acc = enumerate_iid_law(rule, qv, n)
    assert np.abs(law - pv).sum() < EXACT_TOL
    assert abs(acc - alpha) < EXACT_TOL


@pytest.mark.parametrize("n", [16, 64])
def test_many_drafts_tiny_masses(n: int) -> None:
    """n up to 64 and masses down to ~1e-27 (V = 5000): the layout still reaches alpha*."""
    rng = np.random.default_rng(60 + n)
    V = 5000
    z = rng.normal(size=V) * 8
    p = np.exp(z - z.max())
    p /= p.sum()
    zq = z + rng.normal(size=V) * 3
    q = np.exp(zq - zq.max())
    q /= q.sum()
    rule = layout_rule(p, q, n)
    alpha = float(st.optimal_acceptance(p, st.IID(q, n), method="prefix").value)
    assert abs(rule.acceptance - alpha) < EXACT_TOL
    assert _cell_density(rule) < ROUND_TOL


# ------------------------------------------------------- pair form (what the setup keeps)
def _piece_twin(rule: LayoutRule) -> LayoutRule:
    """The same rule with its pieces given explicitly (the form the JAX port's ``to_layout_rule``
    builds), so that it samples through the per-piece (CSR) arrays, not the pair form."""
    return LayoutRule(
        p=rule.p, q=rule.q, n=rule.n, alpha_star=rule.alpha_star, witness=rule.witness,
        accepted=rule.accepted, residual=rule.residual, group=rule.group,
        group_token=rule.group_token, piece_start=rule.piece_start, piece_end=rule.piece_end,
        piece_ptr=rule.piece_ptr, selection=rule.selection, accept_prob=rule.accept_prob,
        _cum=rule._cum, piece_mass=rule.piece_mass, info=rule.info,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_sampler_matches_piece_sampler(seed: int) -> None:
    """The setup keeps the layout as its exchanges (the pair form) and samples from it; the
    per-piece arrays are built only when inspected. Fed the same random numbers, the pair-form
    sampler and the per-piece sampler put every draft at the same position (so both sample the
    layout whose exact law the enumeration tests check), and sampling builds no pieces."""
    rng = np.random.default_rng(100 + seed)
    p, q = _lm_like(rng, 3000, 1.0) if seed < 2 else _random_instance(rng, 40)
    n = 3 + seed
    rule = layout_rule(p, q, n)
    drafts = st.IID(q, n).sample(rng, 20_000)
    rule.sample_many(drafts, np.random.default_rng(seed))
    # Sampling needed no per-piece arrays (the descriptor's slot is still empty).
    assert rule.__dict__.get("_lazy_piece_start") is None
    pos_pairs = rule.positions(drafts, np.random.default_rng(seed + 50))
    twin = _piece_twin(rule)  # reading the piece arrays builds them
    assert twin._pairs is None and rule.__dict__.get("_lazy_piece_start") is not None
    pos_pieces = twin.positions(drafts, np.random.default_rng(seed + 50))
    assert np.max(np.abs(pos_pairs - pos_pieces)) < ROUND_TOL
    assert rule.info["pieces"] == len(rule.piece_mass) == rule.piece_ptr[-1]


@settings(max_examples=25, deadline=None)
@given(seed=st_h.integers(0, 2**32 - 1), V=st_h.integers(2, 400), n=st_h.integers(1, 9))
def test_selection_is_the_pieces_marginal(seed: int, V: int, n: int) -> None:
    """``selection`` is the target the exchange realises (docs, section 4); Lemma 1 applied to
    the built pieces, sum of mass * (t^n - s^n)/(t - s) per token, gives the same marginal."""
    rng = np.random.default_rng(seed)
    p, q = _random_instance(rng, V)
    rule = layout_rule(p, q, n)
    ps, pe, m = rule.piece_start, rule.piece_end, rule.piece_mass
    h = sum(pe ** (n - 1 - i) * ps**i for i in range(n))  # (t^n - s^n)/(t - s), no cancellation
    owner = rule.group_token[np.repeat(np.arange(len(rule.piece_ptr) - 1), np.diff(rule.piece_ptr))]
    r = np.bincount(owner, weights=m * h, minlength=V)
    assert np.max(np.abs(r - rule.selection)) < ROUND_TOL
