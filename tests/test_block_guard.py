"""The block-level guard (issue 17 for block quantities): every rule ``verifier=`` accepts, on
every structure it applies to, faces exact arithmetic.

Registry-driven: the rules come from ``blocks.block_verifier_names()``, so a new token-level or
block-level rule is picked up without editing this file. On each instance:

* float computation vs the same instance converted *exactly* to Fractions (``Fraction(float)``):
  ``block_acceptance(...).mean`` and the length law agree to ``FLOAT_TOL`` (relative for tiny
  values) — this is where cancellation next to a dominant token would show;
* every lossless rule: the law of the first ``gamma + 1`` output tokens equals the target's
  exactly (``lossless_gap == 0`` in Fractions);
* ``0 <= mean <= max_depth``, the length law sums to 1 and is non-negative, position rates are
  non-increasing;
* ``mean <= block_bound(kind="lossless")`` when the bound exists (another module's test checks the
  bound itself).

Instance families (V = 2..3, depth <= 2, small structures): Dirichlet tables, near one-hot rows
(a mass of 1e-300, 1e-100, 1e-16 or 1e-12 beside 1 - eps), low-temperature softmax rows
(T = 0.01-0.1), exact zeros and ties. Counts and worst errors: docs/testing.md.
"""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest

from spectheory import blocks
from spectheory.blocks import Chain, Chains, Tabular, Tree

#: Float vs exact agreement of block quantities: the per-token guard's tolerance.
FLOAT_ATOL = 1e-12
FLOAT_RTOL = 1e-9

STRUCTURES = [
    Chain(2),
    Chains(2, 2),
    Tree.branching((2, 1), "iid"),
    Tree.branching((2, 1), "wor"),
    Tree((-1, 0, 0, 1), "wor"),
    Tree.branching((2, 1), "greedy"),
    Tree.branching((2, 2), "hub"),
]


def _row(kind: str, V: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "dirichlet":
        return rng.dirichlet(np.ones(V))
    if kind == "onehot":
        eps = float(rng.choice([1e-300, 1e-100, 1e-16, 1e-12]))
        r = np.full(V, eps)
        r[rng.integers(V)] = 1.0 - (V - 1) * eps
        return r / r.sum()
    if kind == "lowtemp":
        T = float(rng.uniform(0.01, 0.1))
        z = rng.normal(size=V) / T
        e = np.exp(z - z.max())
        return e / e.sum()
    if kind == "zeros":
        r = rng.dirichlet(np.ones(V))
        r[rng.integers(V)] = 0.0
        return r / r.sum()
    if kind == "ties":
        return np.full(V, 1.0 / V)
    raise AssertionError(kind)


FAMILIES = ("dirichlet", "onehot", "lowtemp", "zeros", "ties")


def _table(V: int, depth: int, rng: np.random.Generator, family: str) -> Tabular:
    table = {}
    for d in range(depth):
        for h in np.ndindex(*([V] * d)):
            table[tuple(int(t) for t in h)] = _row(family, V, rng)
    return Tabular(table)


def _exact(t: Tabular) -> Tabular:
    """The same table in exact Fractions: every entry converted exactly (``Fraction(float)``)
    except the largest, which takes ``1 - sum(others)`` so the row sums to exactly 1 (it differs
    from the float entry by the float row's rounding, at most a few 1e-16)."""
    out = {}
    for k, v in t.table.items():
        row = [F(float(x)) for x in v]
        i = int(np.argmax(v))
        row[i] = 1 - (sum(row) - row[i])
        out[k] = row
    return Tabular(out)


def _instances(count: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(count):
        fam_p, fam_q = FAMILIES[i % len(FAMILIES)], FAMILIES[(i // len(FAMILIES)) % len(FAMILIES)]
        V = int(rng.integers(2, 4))
        yield (fam_p, fam_q), _table(V, 3, rng, fam_p), _table(V, 3, rng, fam_q)


def _applies(rule: str, s) -> bool:
    try:
        blocks.block_verifier(rule, blocks.drafts.as_tree(s))
    except ValueError:
        return False
    return True


def _bound():
    try:
        from spectheory.blocks import block_bound
    except ImportError:
        return None
    return block_bound


WORST: dict[str, float] = {}


@pytest.mark.slow
@pytest.mark.parametrize("rule", blocks.block_verifier_names())
def test_every_block_rule_against_exact_arithmetic(rule: str) -> None:
    structures = [s for s in STRUCTURES if _applies(rule, s)]
    if not structures:
        # A rule with no block-level use here (e.g. onehot_draft, whose draft law is not a tree
        # scheme) must say so by name on every structure, never compute a number.
        for s in STRUCTURES:
            with pytest.raises(ValueError, match="'verifier'"):
                blocks.block_verifier(rule, blocks.drafts.as_tree(s))
        return
    bound = _bound()
    checked = 0
    for fams, tp, tq in _instances(25, seed=17):
        for s in structures:
            if s.tree.scheme == "hub" and tq.V < 3:
                continue
            try:
                r = blocks.block_acceptance(tp, tq, s, rule)
            except ValueError as exc:  # e.g. wor needs enough support; hub needs mass off the hub
                assert "argument" in str(exc)
                continue
            ex = blocks.block_acceptance(_exact(tp), _exact(tq), s, rule)
            err = abs(r.mean - float(ex.exact["mean"]))
            WORST[rule] = max(WORST.get(rule, 0.0), err)
            assert err <= FLOAT_ATOL + FLOAT_RTOL * abs(float(ex.exact["mean"])), (rule, s, fams)
            np.testing.assert_allclose(
                r.length_pmf, [float(x) for x in ex.exact["length_pmf"]], rtol=FLOAT_RTOL,
                atol=FLOAT_ATOL,
            )
            pmf = ex.exact["length_pmf"]
            assert all(x >= 0 for x in pmf)
            if all(isinstance(x, F) for x in pmf):
                assert sum(pmf) == 1
            else:  # rules whose law is computed in floats (an LP or an irrational root)
                assert abs(sum(pmf) - 1) <= FLOAT_ATOL
            assert 0 <= r.mean <= s.tree.max_depth + FLOAT_ATOL
            assert np.all(np.diff(r.position_rates) <= FLOAT_ATOL)
            rule_obj = blocks.block_verifier(rule, s.tree)
            if rule_obj.lossless:
                gap = blocks.lossless_gap(_exact(tp), _exact(tq), s, rule)
                if isinstance(gap, F):
                    assert gap == 0, (rule, s, fams, gap)
                else:  # rules computed in floats from exact inputs (LP-based rules)
                    assert gap < 1e-9, (rule, s, fams, gap)
                if bound is not None:
                    b = bound(tp, tq, s, kind="lossless")
                    assert r.mean <= b.value + 1e-9, (rule, s, fams, r.mean, b.value)
            checked += 1
    assert checked > 0


@pytest.fixture(scope="module", autouse=True)
def _report_worst():
    """Print the worst float-vs-exact error per rule (``pytest -s``; docs/testing.md quotes it)."""
    yield
    if WORST:
        print("\nblock guard, worst |float - exact| of the mean per rule:")
        for k, v in sorted(WORST.items()):
            print(f"  {k:<12} {v:.2e}")
