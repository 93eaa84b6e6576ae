"""Tests of spectheory.trees: Sequoia's dynamic program against brute force over every ordered tree of
up to 8 nodes, its prediction against exact block-level enumeration, the alpha*-implied bound,
measured acceptance vectors and the cost model.

Independent references: the brute force below enumerates ordered (plane) trees and scores them with
its own path-product code; the context-free pair is theory.md section 8 (p = (0.6, 0.3, 0.1),
q = (0.2, 0.3, 0.5)), whose RRS-without-replacement acceptances are 3/5 (one draft) and 19/25 (two
drafts), RRS with replacement 17/25, alpha*_wor 31/35, and with three drafts of three tokens every
token is drafted (acceptance 1).
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest

from spectheory.blocks import Chain, Markov, Tabular, Tree, block_acceptance
from spectheory.trees import (
    CostModel,
    alpha_star_vector,
    best_design,
    first_accept,
    greedy_draft_tree,
    greedy_tree,
    positional_acceptance,
    sequoia_table,
    sequoia_tree,
    tree_paths,
    tree_value,
)

P8 = [0.6, 0.3, 0.1]
Q8 = [0.2, 0.3, 0.5]
#: Conditional RRS-without-replacement vector of the section 8 pair: a1 = 3/5, f2 = 19/25 - 3/5 =
#: 4/25 = a2 * 2/5 so a2 = 2/5, and a3 = 1 (the last token is the only one left).
A8 = [0.6, 0.4, 1.0]


# ---------------------------------------------------------------------- brute force
def plane_forests(n: int) -> list[list[tuple]]:
    """Every ordered forest with n nodes, as lists of (subtree) tuples; a node is the tuple of its
    children."""
    if n == 0:
        return [[]]
    out = []
    for first in range(1, n + 1):  # nodes in the first tree
        for below in plane_forests(first - 1):
            for rest in plane_forests(n - first):
                out.append([tuple(below), *rest])
    return out


def forest_value(forest: list, f: list[float], depth_left: int | None = None) -> float:
    if depth_left == 0 and forest:
        return -1e9  # too deep: never the best
    total = 0.0
    for k, node in enumerate(forest):
        fk = f[k] if k < len(f) else 0.0
        below = forest_value(list(node), f, None if depth_left is None else depth_left - 1)
        total += fk * (1.0 + below)
    return total


def brute_best(a: list[float], budget: int, depth: int | None = None) -> float:
    f = list(first_accept(a))
    return max(forest_value(fr, f, depth) for n in range(budget + 1) for fr in plane_forests(n))


def test_plane_forest_counts_are_catalan() -> None:
    assert [len(plane_forests(n)) for n in range(9)] == [1, 1, 2, 5, 14, 42, 132, 429, 1430]


VECTORS = [
    [0.8, 0.5, 0.3, 0.2],
    [0.3, 0.9, 0.9],          # f = 0.3, 0.63, 0.063: not monotone, greedy is not optimal
    [0.5],
    [0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05],
    [1.0, 0.7],
    A8,
]


@pytest.mark.parametrize("a", VECTORS)
def test_dp_matches_brute_force_up_to_8_nodes(a: list[float]) -> None:
    for budget in range(1, 9):
        r = sequoia_tree(a, budget)
        want = brute_best(a, budget)
        assert r.expected_accepted == pytest.approx(want, abs=1e-12)
        assert r.tree.num_nodes <= budget
        assert tree_value(r.tree, a) == pytest.approx(r.expected_accepted, abs=1e-12)
        assert r.curve[budget] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("a", VECTORS[:3])
def test_depth_limited_dp_matches_brute_force(a: list[float]) -> None:
    for budget in (3, 6, 8):
        table = sequoia_table(a, budget, 3)
        for d in (1, 2, 3):
            want = brute_best(a, budget, d)
            r = sequoia_tree(a, budget, max_depth=d)
            assert r.expected_accepted == pytest.approx(want, abs=1e-12)
            assert table[d, budget] == pytest.approx(want, abs=1e-12)
            assert r.tree.max_depth <= d


def test_greedy_equals_dp_for_monotone_f_and_loses_otherwise() -> None:
    a = [0.8, 0.5, 0.3, 0.2]  # f = 0.8, 0.1, 0.03, 0.014: non-increasing
    for n in (1, 5, 17, 64):
        assert greedy_tree(a, n).expected_accepted == pytest.approx(
            sequoia_tree(a, n).expected_accepted, abs=1e-12)
    a = [0.1, 0.9, 0.9, 0.9]  # f = 0.1, 0.81, 0.081, 0.0081: a cheap first child unlocks more
    assert greedy_tree(a, 6).expected_accepted < brute_best(a, 6) - 0.4
    assert sequoia_tree(a, 6).expected_accepted == pytest.approx(brute_best(a, 6), abs=1e-12)


def test_chain_value_is_geometric_sum() -> None:
    # one position of acceptance c: a chain of n nodes accepts sum_{i<=n} c^i (Leviathan et al.)
    r = sequoia_tree([0.7], 5)
    assert r.tree.is_chain() and r.expected_accepted == pytest.approx(
        sum(0.7**i for i in range(1, 6)), abs=1e-12)


def test_budget_1024_is_fast_and_consistent() -> None:
    a = [0.7, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1, 0.05]
    r = sequoia_tree(a, 1024)
    assert r.tree.num_nodes == 1024
    assert tree_value(r.tree, a) == pytest.approx(r.expected_accepted, rel=1e-12)
    assert np.all(np.diff(r.curve) >= -1e-12)


def test_paths_are_vllm_tree_format() -> None:
    t = Tree((-1, 0, 1, 0, 3))
    assert tree_paths(t) == [(0,), (1,), (0, 0), (1, 0)]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="acceptance"):
        sequoia_tree([1.2], 3)
    with pytest.raises(ValueError, match="budget"):
        sequoia_tree([0.5], 0)


# ---------------------------------------------------------------------- exactness on a context-free pair
def _context_free(x: list[float]) -> Tabular:
    return Tabular({(): x})


def test_rrs_wor_vector_of_section_8_pair() -> None:
    v = positional_acceptance(P8, Q8, 3, verifier="rrs_wor")
    assert v.cumulative == pytest.approx([3 / 5, 19 / 25, 1.0], abs=1e-12)
    assert v.conditional == pytest.approx(A8, abs=1e-12)
    v = positional_acceptance(P8, Q8, 2, verifier="rrs")
    assert v.cumulative == pytest.approx([3 / 5, 17 / 25], abs=1e-12)
    v = positional_acceptance(P8, Q8, 3, verifier="greedy")  # q order: token 2, 1, 0
    assert v.first == pytest.approx([0.1, 0.3, 0.6], abs=1e-12)
    s = alpha_star_vector(P8, Q8, 3)
    assert s.cumulative == pytest.approx([3 / 5, 31 / 35, 1.0], abs=1e-9)


@pytest.mark.parametrize("budget", [1, 2, 3, 4, 6])
def test_dp_prediction_is_exact_for_context_free_wor_pair(budget: int) -> None:
    r = sequoia_tree(A8, budget)
    ba = block_acceptance(_context_free(P8), _context_free(Q8), r.tree, "rrs_wor", method="exact")
    assert ba.mean == pytest.approx(r.expected_accepted, abs=1e-12)


def test_dp_prediction_exact_for_greedy_scheme() -> None:
    v = positional_acceptance(P8, Q8, 3, verifier="greedy")
    r = sequoia_tree(v.conditional, 5, scheme="greedy")
    ba = block_acceptance(_context_free(P8), _context_free(Q8), r.tree, "greedy", method="exact")
    assert ba.mean == pytest.approx(r.expected_accepted, abs=1e-12)


def test_positional_model_is_not_exact_when_the_pair_depends_on_context() -> None:
    p = Markov([0.6, 0.3, 0.1], [[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    q = _context_free(Q8)
    r = sequoia_tree(A8, 6)  # 1.72 by the model, 1.688 exactly
    ba = block_acceptance(p, q, r.tree, "rrs_wor", method="exact")
    assert abs(ba.mean - r.expected_accepted) > 0.02


def test_alpha_star_vector_bounds_rrs_wor_on_sorted_trees() -> None:
    s = alpha_star_vector(P8, Q8, 3)
    assert np.all(np.diff(s.first) <= 1e-12)  # f* non-increasing here: DP trees are sorted
    for budget in range(1, 9):
        r = sequoia_tree(s.conditional, budget)
        ba = block_acceptance(_context_free(P8), _context_free(Q8), r.tree, "rrs_wor")
        assert ba.mean <= r.expected_accepted + 1e-12
        # observed (not proved) here: the best rrs_wor tree stays below the best f* tree
        assert sequoia_tree(A8, budget).expected_accepted <= r.expected_accepted + 1e-12


def test_alpha_star_tree_value_is_no_bound_on_unsorted_trees() -> None:
    # the best rrs_wor tree of 6 nodes hangs a leaf at root position 2 and a 2-node subtree at
    # position 3: only prefix sets of children are constrained by alpha*, so E*(T) < E_rrs_wor(T)
    s = alpha_star_vector(P8, Q8, 3)
    r = sequoia_tree(A8, 6)
    assert r.tree.parents == (-1, 0, 1, 2, 0, 0, 5)
    ba = block_acceptance(_context_free(P8), _context_free(Q8), r.tree, "rrs_wor")
    assert ba.mean == pytest.approx(1.72, abs=1e-12)
    assert tree_value(r.tree, s.conditional) < ba.mean - 0.05


def test_wor_mc_prefixes_agree_with_exact_enumeration() -> None:
    # V = 5, k = 4: F(3), F(4) by the path estimator vs RRSWithoutReplacement's exact enumeration
    from spectheory.verifiers.rrs_wor import RRSWithoutReplacement

    rng = np.random.default_rng(1)
    P = rng.dirichlet(np.ones(5), size=3)
    Q = rng.dirichlet(np.ones(5), size=3)
    v = positional_acceptance(P, Q, 4, samples=4000, seed=2)
    rule = RRSWithoutReplacement()
    exact = [np.mean([rule.acceptance(P[t], Q[t], j) for t in range(3)]) for j in (3, 4)]
    assert v.cumulative[2:] == pytest.approx(exact, abs=6 * v.stderr[2:].max() + 1e-9)


# ---------------------------------------------------------------------- per-context greedy trees
def test_greedy_draft_tree_by_hand() -> None:
    # context-free q = (0.2, 0.3, 0.5): scores 0.5 (tok 2), 0.3 (tok 1), 0.25 (2,2) -> 3 nodes
    g = greedy_draft_tree(_context_free(Q8), 3, target=_context_free(P8))
    assert g.tree.parents == (-1, 0, 1, 0) and g.tokens == (-1, 2, 2, 1)
    assert g.draft_score == pytest.approx((1.0, 0.5, 0.25, 0.3))
    # accepted: p(2) + p(2) p(2) + p(1) = 0.1 + 0.01 + 0.3
    assert g.expected_accepted == pytest.approx(0.41)
    ba = block_acceptance(_context_free(P8), _context_free(Q8), g.tree, "greedy", method="exact")
    assert ba.mean == pytest.approx(0.41)


# ---------------------------------------------------------------------- cost model
def test_best_design_by_hand() -> None:
    # chain with a = 0.5 and draft cost 0.25 per level: (2 - 0.5^d) / (1 + d/4) is 1.2 at d = 1,
    # 1.1667 at d = 2, 1.0714 at d = 3: one draft token is best
    d = best_design([0.5], CostModel(draft_per_depth=0.25), max_budget=8, max_depth=4)
    assert (d.budget, d.depth) == (1, 1) and d.tokens_per_time == pytest.approx(1.2)
    # free drafting and a flat target cost: use the whole budget
    d = best_design([0.5], CostModel(), max_budget=8, max_depth=8)
    assert d.budget == 8 and d.tokens_per_call == pytest.approx(2 - 0.5**8)


def test_cost_model_parse_and_interpolate() -> None:
    c = CostModel.parse("1:1,65:2", draft=0.1)
    assert c.step(32, 2) == pytest.approx(1 + 32 / 64 + 0.2)
    with pytest.raises(ValueError, match="target_costs"):
        CostModel.parse("1:1,x")


def test_fraction_free_chain_matches_block_acceptance_chain() -> None:
    # sequoia's chain value equals token-level SD on a context-free chain: sum (3/5)^i
    r = sequoia_tree([0.6], 3)
    ba = block_acceptance(_context_free(P8), _context_free(Q8), Chain(3), "sd")
    assert ba.mean == pytest.approx(r.expected_accepted, abs=1e-12)
    assert r.expected_accepted == pytest.approx(float(sum(Fraction(3, 5) ** i for i in (1, 2, 3))))


def test_itertools_not_needed_for_paths() -> None:
    # tree_paths lists children positions; every prefix of a path is a path
    r = sequoia_tree([0.8, 0.5, 0.3], 12)
    paths = set(tree_paths(r.tree))
    assert all(pth[:-1] in paths or len(pth) == 1 for pth in paths)
    assert len(paths) == 12 and len(list(itertools.chain(paths))) == 12


def test_decode_agrees_with_prediction_on_context_free_pair() -> None:
    # the CLI's --check on a pair where the model is exact: Monte Carlo decode with the DP tree
    from spectheory.blocks.decode import decode
    from spectheory.blocks.verify import TokenLevel

    r = sequoia_tree(A8, 6)
    d = decode(_context_free(P8), _context_free(Q8), r.tree, TokenLevel("rrs_wor", "wor"), 1500,
               np.random.default_rng(5))
    assert d.low <= r.tokens_per_call <= d.high
    assert d.high - d.low < 0.3


@pytest.mark.slow
def test_measure_target_cost_on_the_embedded_model() -> None:
    """The cost model measured on SmolLM2 (the real model, timed): relative costs are finite,
    positive, 1 for one token, one per size. No timing thresholds (timings are not asserted)."""
    pytest.importorskip("torch")
    import torch

    from spectheory import models, trees

    torch.set_num_threads(1)
    m, _ = models.load_model("smollm2")
    c = trees.measure_target_cost(m, [4, 2], context=16, repeats=1)
    assert c.target_sizes == (1.0, 2.0, 4.0)
    assert c.target_costs[0] == 1.0
    assert all(np.isfinite(x) and x > 0 for x in c.target_costs)
