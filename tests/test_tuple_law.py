"""``Verifier.tuple_law`` for every registered rule (registry-driven): summed over the scheme's
tuples it gives ``accepted_mass`` and the output law (``p`` for lossless rules), the rational rules
are exact in Fractions, and ``sample`` on one tuple follows it (chi-square)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from exact_refs import exact_tuple_probs
from instances import random_pair

from spectheory import verifiers as SV
from spectheory._validate import SpecTheoryInputError

#: Float sums over at most a few hundred tuples: rounding only.
LAW_TOL = 1e-12
RATIONAL = ("sd", "rrs", "rrs_wor", "greedy", "spechub", "naive")


def _output_law(rule, p, q, n):
    if rule.lossless:
        return np.asarray(p, dtype=np.float64)
    return rule.output_law(p, q, n)  # naive: its documented (non-p) law


@pytest.mark.parametrize("name", SV.names())
def test_tuple_law_sums_to_accepted_mass_and_output_law(name):
    rng = np.random.default_rng(20250617)
    checked = 0
    for _ in range(12):
        V = int(rng.integers(2, 6))
        p, q = random_pair(rng, V, 0.7)
        for n in (1, 2, 3):
            rule = SV.get(name)()
            try:
                scheme = rule.scheme(q, n)
                tuples, probs = scheme.enumerate()
                mass = rule.accepted_mass(p, q, n)
            except SpecTheoryInputError:
                continue  # n not allowed for this rule or q (e.g. SpecHub n != 2)
            acc_sum, law_sum = np.zeros(V), np.zeros(V)
            for t, w in zip(tuples, probs, strict=True):
                acc, rej = rule.tuple_law(p, q, t)
                assert acc.shape == rej.shape == (V,)
                assert np.all(acc >= 0) and np.all(rej >= 0)
                assert abs(acc.sum() + rej.sum() - 1.0) <= LAW_TOL
                off = np.ones(V, dtype=bool)
                off[t] = False
                assert np.all(acc[off] == 0)  # accepted outputs are drafted tokens
                acc_sum += w * acc
                law_sum += w * (acc + rej)
            np.testing.assert_allclose(acc_sum, mass, atol=LAW_TOL)
            np.testing.assert_allclose(law_sum, _output_law(rule, p, q, n), atol=LAW_TOL)
            checked += 1
    assert checked >= 8


def _rational(rng, V):
    """A random distribution with small-denominator Fraction entries (some zero), summing to 1."""
    w = [int(x) for x in rng.integers(0, 7, size=V)]
    w[int(rng.integers(V))] += 1
    if V > 2:
        w[int(rng.integers(V))] += 3
    s = sum(w)
    return [Fraction(x, s) for x in w]


@pytest.mark.parametrize("name", RATIONAL)
def test_rational_rules_are_exact_in_fractions(name):
    """With Fraction inputs the law is exact: summed with the exact tuple probabilities (computed
    in tests/exact_refs.py from each scheme's definition) it is exactly p."""
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(10):
        V = int(rng.integers(2, 6))
        pf, qf = _rational(rng, V), _rational(rng, V)
        for n in (1, 2, 3):
            rule = SV.get(name)()
            try:
                scheme = rule.scheme(qf, n)
                mass = rule.accepted_mass([float(x) for x in pf], [float(x) for x in qf], n)
            except SpecTheoryInputError:
                continue
            tuples, probs = exact_tuple_probs(scheme, qf)
            acc_sum = [Fraction(0)] * V
            law_sum = [Fraction(0)] * V
            for t, w in zip(tuples, probs, strict=True):
                acc, rej = rule.tuple_law(pf, qf, np.array(t))
                assert acc.dtype == object and all(isinstance(v, Fraction) for v in acc)
                assert all(isinstance(v, Fraction) for v in rej)
                assert sum(acc) + sum(rej) == 1
                for y in range(V):
                    acc_sum[y] += w * acc[y]
                    law_sum[y] += w * (acc[y] + rej[y])
            if rule.lossless:
                assert law_sum == pf
            np.testing.assert_allclose([float(x) for x in acc_sum], mass, atol=LAW_TOL)
            checked += 1
    assert checked >= 5


@pytest.mark.parametrize("name", SV.names())
def test_sample_follows_tuple_law(name):
    """Chi-square of 4000 draws of ``sample`` on one tuple against ``tuple_law`` (outputs split by
    the accepted flag: 2V cells, empty cells merged away). At a 1e-6 false-alarm level
    (chi2 quantile below 40 for <= 9 degrees of freedom) a fixed seed makes it deterministic."""
    from scipy.stats import chi2

    p = np.array([0.35, 0.25, 0.2, 0.15, 0.05])
    q = np.array([0.1, 0.3, 0.15, 0.25, 0.2])
    rule = SV.get(name)()
    n = 2
    rng = np.random.default_rng(11)
    t = rule.scheme(q, n).sample(rng)
    acc, rej = rule.tuple_law(p, q, t)
    expected = np.concatenate([acc, rej])
    N = 4000
    counts = np.zeros(2 * len(p))
    for _ in range(N):
        y, a = rule.sample(p, q, t, rng)
        counts[y if a else len(p) + y] += 1
    keep = expected > 0
    assert counts[~keep].sum() == 0
    e = expected[keep] * N
    stat = float(np.sum((counts[keep] - e) ** 2 / e))
    dof = max(int(keep.sum()) - 1, 1)
    assert stat < chi2.isf(1e-6, dof), (stat, dof, t)


def test_default_tuple_law_names_the_rule():
    class Dummy(SV.Verifier):
        name = "dummy"

        def scheme(self, q, n):  # pragma: no cover
            raise NotImplementedError

        def accepted_mass(self, p, q, n):  # pragma: no cover
            raise NotImplementedError

        def sample(self, p, q, drafts, rng):  # pragma: no cover
            raise NotImplementedError

    with pytest.raises(NotImplementedError, match="dummy"):
        Dummy().tuple_law([1.0], [1.0], [0])


def test_optimal_tuple_law_finite_for_unmeasurable_draft() -> None:
    """Regression (issue 17 guard): a drafted token with q = 1e-300 beside 1 has a layout slot
    narrower than float spacing; selection_probs divided by its zero width and returned NaN.
    Reference: float enumeration of the tuple law must reproduce accepted_mass (closed form)."""
    from spectheory.schemes import IID
    from spectheory.verifiers.optimal import Optimal

    p = np.array([0.3, 0.5, 0.2])
    q = np.array([1e-300, 1.0 - 1e-300, 0.0])
    q[2] = 1e-300
    q = q / q.sum()
    rule = Optimal("iid")
    tuples, probs = IID(q, 2).enumerate()
    acc = np.zeros(3)
    for t, w in zip(tuples, probs, strict=True):
        a, r = rule.tuple_law(p, q, t)
        assert np.all(np.isfinite(a)) and np.all(np.isfinite(r)), t
        assert abs(a.sum() + r.sum() - 1.0) < 1e-12
        acc += w * a
    np.testing.assert_allclose(acc, rule.accepted_mass(p, q, 2), rtol=0, atol=1e-12)
