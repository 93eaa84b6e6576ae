"""Tests of spectheory.blocks: chain formula, tree recursion vs Monte Carlo, the constant-alpha
approximation being far off on a context-dependent model, and the speed-up formula."""

from __future__ import annotations

import numpy as np
import pytest

from spectheory import blocks
from spectheory.verifiers import acceptance

#: Agreement of closed forms.
EXACT_ATOL = 1e-12

# A two-regime synthetic model: after token 0 (or at the start) target and draft agree
# ("easy", acceptance 1); after any other token they disagree ("hard").
EASY = np.array([0.8, 0.1, 0.1])
HARD_P = np.array([0.05, 0.9, 0.05])
HARD_Q = np.array([0.05, 0.05, 0.9])
#: Stationary probability of the easy regime under the target: from easy, next token 0 w.p. 0.8;
#: from hard w.p. 0.05, so pi = 0.05 / (0.2 + 0.05) = 0.2.
PI_EASY = 0.2


def target(h: tuple[int, ...]) -> np.ndarray:
    return EASY if (not h or h[-1] == 0) else HARD_P


def draft(h: tuple[int, ...]) -> np.ndarray:
    return EASY if (not h or h[-1] == 0) else HARD_Q


def test_chain_formulas() -> None:
    # sum_i prod_{j<=i} alpha_j by hand: .9 + .9*.5 + .9*.5*.2 = 1.44
    assert blocks.expected_accepted([0.9, 0.5, 0.2]) == pytest.approx(1.44, abs=EXACT_ATOL)
    assert blocks.block_efficiency([0.9, 0.5, 0.2]) == pytest.approx(2.44, abs=EXACT_ATOL)
    np.testing.assert_allclose(
        blocks.block_efficiency(np.full((2, 4), 0.7)),
        (1 - 0.7**5) / (1 - 0.7),
        atol=EXACT_ATOL,
    )
    assert blocks.constant_alpha_efficiency(0.7, 4) == pytest.approx(
        (1 - 0.7**5) / 0.3, abs=EXACT_ATOL
    )
    assert blocks.constant_alpha_efficiency(1.0, 4) == pytest.approx(5.0, abs=EXACT_ATOL)
    with pytest.raises(ValueError, match="'alphas', row 1"):
        blocks.expected_accepted([[0.5, 0.5], [0.5, 1.5]])


def test_tree_equals_chain_for_context_free_model() -> None:
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.5, 0.3])
    for v, n in (("sd", 1), ("rrs", 2), ("kseq", 3)):
        alpha = acceptance(v, p, q, n)
        tau = blocks.tree_efficiency(lambda h: p, lambda h: q, v, n, 4)
        assert tau == pytest.approx(blocks.constant_alpha_efficiency(alpha, 4), abs=1e-12)


def test_simulation_matches_tree() -> None:
    rng = np.random.default_rng(0)
    sim = blocks.simulate(target, draft, ["rrs", "kseq"], 2, 4, rng, blocks=1500, context=(1,))
    for v in ("rrs", "kseq"):
        exact = blocks.tree_efficiency(target, draft, v, 2, 4, context=(1,))
        assert sim.block_efficiency[v].contains(exact), (v, exact, sim.block_efficiency[v])
    assert "rrs" in sim.table()


def test_constant_alpha_far_off() -> None:
    """Averaged over the target's stationary regimes, the exact tau exceeds the constant-alpha
    formula evaluated at the average acceptance by more than 25% (acceptance is bursty)."""
    gamma = 5
    for v, n in (("sd", 1), ("rrs", 2)):
        t_easy = blocks.tree_efficiency(target, draft, v, n, gamma, context=(0,))
        t_hard = blocks.tree_efficiency(target, draft, v, n, gamma, context=(1,))
        exact = PI_EASY * t_easy + (1 - PI_EASY) * t_hard
        mean_alpha = PI_EASY * acceptance(v, EASY, EASY, n) + (1 - PI_EASY) * acceptance(
            v, HARD_P, HARD_Q, n
        )
        approx = blocks.constant_alpha_efficiency(mean_alpha, gamma)
        assert exact > 1.25 * approx, (v, exact, approx)


def test_speedup_leviathan() -> None:
    # Leviathan et al. (arXiv 2211.17192): (1 - a^{g+1}) / ((1 - a)(g c + 1)).
    a, g, c = 0.8, 4, 0.05
    tau = blocks.constant_alpha_efficiency(a, g)
    want = (1 - a ** (g + 1)) / ((1 - a) * (g * c + 1))
    assert blocks.speedup(tau, g, c) == pytest.approx(want, abs=EXACT_ATOL)
    # n drafts drafted sequentially and a 1.5x verification cost
    assert blocks.speedup(tau, g, c, n=3, verify_cost=1.5, parallel_drafts=False) == pytest.approx(
        tau / (g * 3 * c + 1.5), abs=EXACT_ATOL
    )
    with pytest.raises(ValueError, match="'tau'"):
        blocks.speedup(7.0, g, c)
    with pytest.raises(ValueError, match="'cost_ratio'"):
        blocks.speedup(2.0, g, -1.0)
