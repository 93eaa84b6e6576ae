"""Tests of the block-level core: draft structures, realisation laws, token-level rules down the
tree, block_acceptance (exact and Monte Carlo) and the lossless check.

Independent references: exact Fraction arithmetic by hand, the per-position tree recursion of
``blocks.tree_efficiency`` (accepted-mass route, written before this package), and Monte Carlo."""

from __future__ import annotations

import itertools
from fractions import Fraction as F

import numpy as np
import pytest

from spectheory import blocks
from spectheory.blocks import Chain, Chains, Markov, Tabular, Tree, block_acceptance
from spectheory.blocks.problem import BlockProblem
from spectheory.blocks.verify import TokenLevel
from spectheory.verifiers.optimal import Optimal


# ---------------------------------------------------------------------- structures
def test_tree_structure_and_validation() -> None:
    t = Tree((-1, 0, 0, 1, 1, 2))
    assert t.children == ((1, 2), (3, 4), (5,), (), (), ())
    assert t.depth == (0, 1, 1, 2, 2, 2)
    assert t.max_depth == 2 and t.num_nodes == 5 and t.internal == (0, 1, 2)
    assert Chain(3).tree.parents == (-1, 0, 1, 2)
    assert Chains(2, 3).tree.parents == (-1, 0, 0, 1, 2, 3, 4)
    b = Tree.branching((2, 3), "wor")
    assert b.num_nodes == 2 + 6 and b.scheme == "wor" and b.max_depth == 2
    for bad, match in [
        (((0, 0),), "parents\\[0\\] must be -1"),
        (((-1, 1),), "entry 1 is 1"),
        (((-1, 0, 3, 0),), "entry 2 is 3"),
        (("abc",), "sequence of integers"),
    ]:
        with pytest.raises(ValueError, match=match):
            Tree(*bad)
    with pytest.raises(ValueError, match="'scheme'"):
        Tree((-1, 0), "beam")
    with pytest.raises(ValueError, match="'hub' drafts exactly 2"):
        Tree((-1, 0), "hub")
    with pytest.raises(ValueError, match="'gamma'"):
        Chain(0)
    with pytest.raises(ValueError, match="'n'"):
        Chains(0, 2)
    with pytest.raises(ValueError, match="'ks\\[1\\]'"):
        Tree.branching((2, 0))
    with pytest.raises(ValueError, match="'drafts'"):
        BlockProblem(lambda h: [1.0], lambda h: [1.0], "chain")


# ---------------------------------------------------------------------- realisations
P0 = [F(1, 2), F(1, 3), F(1, 6)]
Q0 = [F(1, 4), F(1, 4), F(1, 2)]


def _const(v):
    return lambda h: v


@pytest.mark.parametrize("scheme", ["iid", "wor", "greedy"])
def test_realisation_law_by_hand(scheme: str) -> None:
    """Root with two children, one grandchild under the first: probabilities by hand."""
    t = Tree((-1, 0, 0, 1), scheme)
    pr = BlockProblem(_const(P0), _const(Q0), t)
    law = dict(pr.realizations())
    assert sum(law.values()) == 1
    q = Q0
    for (_, a, b, c), w in law.items():
        if scheme == "iid":
            want = q[a] * q[b] * q[c]
        elif scheme == "wor":
            want = q[a] * q[b] / (1 - q[a]) * q[c]
        else:  # top-2 of q = (2, then 0 by the smaller id among ties), grandchild top-1 = 2
            want = F(1) if (a, b, c) == (2, 0, 2) else F(0)
        assert w == want
    n_expected = {"iid": 27, "wor": 18, "greedy": 1}[scheme]
    assert len(law) == n_expected


def test_sample_matches_realisation_law() -> None:
    # chi-square, 9 cells (Chain(2) at V = 3), 20000 draws: power > 0.99 against a 0.02 shift of
    # one cell at level 1e-3.
    from scipy import stats

    pr = BlockProblem(_const(P0), Markov(Q0, [Q0, [F(1, 3)] * 3, [F(0), F(1, 2), F(1, 2)]]), Chain(2))
    law = {k: float(v) for k, v in pr.realizations()}
    rng = np.random.default_rng(3)
    counts: dict = {}
    N = 20_000
    for _ in range(N):
        t = pr.sample(rng)
        counts[t] = counts.get(t, 0) + 1
    assert set(counts) <= set(law)
    keys = sorted(law)
    obs = np.array([counts.get(k, 0) for k in keys])
    exp = np.array([law[k] * N for k in keys])
    assert stats.chisquare(obs, exp).pvalue > 1e-3


def test_too_many_realisations_is_a_clear_error() -> None:
    p = np.full(50, 0.02)
    with pytest.raises(ValueError, match="method='mc'"):
        block_acceptance(_const(p), _const(p), Chains(4, 3), "rrs")


# ---------------------------------------------------------------------- token-level rules
def test_sd_chain_by_hand() -> None:
    """Context-free p, q: SD accepts each position with 1 - TV = sum min(p, q) = 1/4+1/4+1/6 = 2/3,
    so E[accepted] over a chain of 2 is 2/3 + (2/3)^2 = 10/9 exactly."""
    r = block_acceptance(_const(P0), _const(Q0), Chain(2), "sd")
    assert r.exact["mean"] == F(10, 9)
    assert r.exact["length_pmf"] == [F(1, 3), F(2, 9), F(4, 9)]
    np.testing.assert_allclose(r.position_rates, [2 / 3, 4 / 9], rtol=0, atol=1e-15)
    np.testing.assert_allclose(r.conditional_rates, [2 / 3, 2 / 3], rtol=0, atol=1e-15)
    assert r.tokens_per_call == pytest.approx(1 + 10 / 9, abs=1e-15)
    assert r.stderr == 0 and r.method == "exact"


@pytest.mark.parametrize(
    ("rule", "n", "scheme"),
    [("sd", 1, "iid"), ("rrs", 2, "iid"), ("kseq", 2, "iid"), ("rrs_wor", 2, "wor"),
     ("optimal", 2, "wor")],
)
def test_token_level_matches_the_accepted_mass_recursion(rule: str, n: int, scheme: str) -> None:
    """Without merging, token-level verification down Tree.branching((n,)*gamma) is the model of
    tree_efficiency (fresh drafts at each accepted node), computed there from accepted_mass only."""
    rng = np.random.default_rng(11)
    for _ in range(4):
        target, draft = blocks.random_pair(3, 3, rng)
        tree = Tree.branching((n,) * 2, scheme)
        got = block_acceptance(target, draft, tree, TokenLevel(rule, scheme, merge=False)).mean
        tok = Optimal(scheme) if rule == "optimal" else rule  # tree_efficiency's default is iid
        want = blocks.tree_efficiency(target, draft, tok, n, 2) - 1.0
        assert got == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("rule", ["sd", "rrs", "rrs_wor", "kseq", "optimal", "greedy"])
def test_token_level_rules_are_lossless_exactly(rule: str) -> None:
    """Exact enumeration of the output law on Fraction models: the law of the first gamma + 1
    tokens equals the target's (TV exactly 0 for the rational rules, < 1e-12 for the others)."""
    rng = np.random.default_rng(5)
    structures = {
        "sd": [Chain(2)], "rrs": [Chains(2, 2), Tree.branching((2, 1))],
        "rrs_wor": [Tree.branching((2, 1), "wor")], "kseq": [Chains(2, 2)],
        "optimal": [Tree.branching((2, 1), "wor"), Tree.branching((1, 2), "greedy")],
        "greedy": [Tree.branching((2, 1), "greedy")],
    }[rule]
    for _ in range(3):
        target, draft = blocks.random_pair(3, 3, rng, exact=rule in ("sd", "rrs", "rrs_wor", "greedy"))
        for s in structures:
            gap = blocks.lossless_gap(target, draft, s, rule)
            if isinstance(gap, F):
                assert gap == 0
            else:
                assert gap < 1e-12


def test_merging_shared_prefixes_helps_chains() -> None:
    """SpecTr's merge: two i.i.d. chains that agree on the first token both offer their second
    token. On a context-free pair the merged descent accepts at least as much as following one
    chain, and strictly more here (checked exactly)."""
    p, q = [F(1, 2), F(1, 2)], [F(9, 10), F(1, 10)]
    merged = block_acceptance(_const(p), _const(q), Chains(2, 2), "rrs").exact["mean"]
    single = block_acceptance(
        _const(p), _const(q), Chains(2, 2), TokenLevel("rrs", merge=False)
    ).exact["mean"]
    assert merged > single


def test_incompatible_rule_and_scheme() -> None:
    p = np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="'verifier'"):
        block_acceptance(_const(p), _const(p), Tree.branching((2,), "wor"), "rrs")
    with pytest.raises(ValueError, match="'verifier'"):
        block_acceptance(_const(p), _const(p), Tree.branching((2,), "greedy"), "sd")
    with pytest.raises(ValueError, match="'verifier': unknown rule 'bogus'"):
        block_acceptance(_const(p), _const(p), Chain(1), "bogus")
    with pytest.raises(ValueError, match="'method'"):
        block_acceptance(_const(p), _const(p), Chain(1), "sd", method="fast")
    with pytest.raises(ValueError, match="'samples'"):
        block_acceptance(_const(p), _const(p), Chain(1), "sd", method="mc", samples=1)


def test_mc_interval_contains_the_exact_value() -> None:
    """Monte Carlo through the samplers (no tuple_law needed) against the accepted-mass recursion:
    99% interval, fixed seed, 4000 blocks (stderr ~ 0.012 at gamma = 3)."""
    rng = np.random.default_rng(2)
    target, draft = blocks.random_pair(3, 4, rng)
    for rule, n, scheme in (("sd", 1, "iid"), ("rrs_wor", 2, "wor")):
        tree = Tree.branching((n,) * 3, scheme)
        want = blocks.tree_efficiency(target, draft, rule, n, 3) - 1.0
        r = block_acceptance(target, draft, tree, rule, method="mc", samples=4000, seed=1)
        assert r.low <= want <= r.high, (rule, r.mean, want)
        assert r.stderr > 0 and r.samples == 4000
        assert r.length_pmf.sum() == pytest.approx(1.0, abs=1e-12)


def test_rates_conventions() -> None:
    """position_rates are unconditional tails of length_pmf; conditional rates divide by the
    previous tail (NaN after a zero tail)."""
    from spectheory.blocks.acceptance import _rates

    r, c = _rates(np.array([0.5, 0.5, 0.0, 0.0]))
    np.testing.assert_array_equal(r, [0.5, 0.0, 0.0])
    assert c[0] == 0.5 and c[1] == 0.0 and np.isnan(c[2])


def test_tabular_models() -> None:
    t = Tabular({(): [0.5, 0.5], (1,): [0.1, 0.9], (0, 1): [1.0, 0.0]})
    np.testing.assert_array_equal(t((0, 1)), [1.0, 0.0])  # longest suffix
    np.testing.assert_array_equal(t((1, 1)), [0.1, 0.9])
    np.testing.assert_array_equal(t((0,)), [0.5, 0.5])  # back-off to ()
    with pytest.raises(ValueError, match="contains \\(\\)"):
        Tabular({(0,): [1.0]})
    with pytest.raises(ValueError, match="transition', row 1"):
        Markov([0.5, 0.5], [[0.5, 0.5], [1.0]])
    with pytest.raises(ValueError, match="sum to 1/2, not 1"):
        Markov([F(1, 4), F(1, 4)], [[F(1)] * 2] * 2)
    r = Tabular.random(3, 2, np.random.default_rng(0), exact=True, denominator=7)
    for row in r.table.values():
        assert sum(row) == 1 and all(x.denominator in (1, 7) for x in row)
    assert len(r.table) == 1 + 3
    # all contexts of length < depth are present
    assert set(r.table) == {(), *((a,) for a in range(3))}
    assert list(itertools.islice(r.table, 1)) == [()]


def test_lumped_pair_by_hand() -> None:
    """K = 3 coarse-graining of a V = 5 Markov pair: reduced tokens are the target's top 2 at
    each context and 'other'; expected rows computed by hand from the tables."""
    P0 = [0.1, 0.4, 0.2, 0.3, 0.0]
    Q0 = [0.3, 0.3, 0.1, 0.1, 0.2]
    T = [[0.2] * 5] * 5
    T = [list(r) for r in T]
    T[1] = [0.5, 0.0, 0.0, 0.25, 0.25]  # after real token 1 (the target's top-1 at the start)
    target = Markov(P0, T)
    draft = Markov(Q0, [[0.2] * 5] * 5)
    t, d = blocks.lumped(target, draft, 3)
    np.testing.assert_allclose(t(()), [0.4, 0.3, 0.3], atol=1e-15)  # tokens 1, 3, rest {0,2,4}
    np.testing.assert_allclose(d(()), [0.3, 0.1, 0.6], atol=1e-15)
    # reduced token 0 = real token 1: next top-2 of T[1] are 0 (0.5) then 3 (0.25, smaller id)
    np.testing.assert_allclose(t((0,)), [0.5, 0.25, 0.25], atol=1e-15)
    np.testing.assert_allclose(d((0,)), [0.2, 0.2, 0.6], atol=1e-15)
    # the lumped token continues as the target's most likely 'other' token: 2 (0.2 > 0.1, 0.0)
    np.testing.assert_allclose(t((2,)), [0.2, 0.2, 0.6], atol=1e-15)
    with pytest.raises(ValueError, match="'K'"):
        blocks.lumped(target, draft, 1)
    # exact quantities run on the reduced pair
    assert 0 < block_acceptance(t, d, Chain(2), "sd").mean < 2
