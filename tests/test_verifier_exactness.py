"""Issue 17: numbers the verifiers report, against independent exact references."""

from __future__ import annotations

import numpy as np
import pytest
from exact_refs import iid_alpha_star, rrs_wor_acceptance

from spectheory import verifiers as SV
from spectheory._validate import SpecTheoryInputError


def _softmax(logits, T):
    z = np.asarray(logits, dtype=np.float64) / T
    e = np.exp(z - z.max())
    return e / e.sum()


# Reproducers of issue 17 (draft near one-hot) and the low-temperature case. The exact value comes
# from enumerating rejection histories in Fractions (tests/exact_refs.py). At T = 0.02 the truth is
# 1.93e-22 (draft 1 = token 0 is rejected; draft 2 is token 1 with probability
# q(1) / (q(1) + q(2)) = e^-150 / e^-100 and is then accepted), so the check is relative.
RRS_WOR_CASES = [
    ([0.2, 0.3, 0.5], [1.0, 1e-19, 1e-19]),
    ([0.2, 0.3, 0.5], [1 - 2e-16, 1e-16, 1e-16]),
    ([0.0, 0.0, 1.0], [1e-12, 1 - 2e-12, 1e-12]),
    (_softmax([0, 3, 1], 0.02), _softmax([3, 0, 1], 0.02)),
    (_softmax([3, 0, 1], 0.02), _softmax([0, 3, 1], 0.02)),
    ([0.25, 0.25, 0.25, 0.25], [1 - 3e-300, 1e-300, 1e-300, 1e-300]),
]


@pytest.mark.parametrize(("p", "q"), RRS_WOR_CASES)
def test_rrs_wor_n2_near_one_hot_matches_fractions(p, q):
    with np.errstate(all="raise"):  # no division by a cancelled 1 - q(x)
        got = SV.acceptance("rrs_wor", p, q, 2)
        mass = SV.get("rrs_wor")().accepted_mass(p, q, 2)
    truth = float(rrs_wor_acceptance(p, q, 2))
    assert abs(got - truth) <= 1e-12 + 1e-9 * truth, (got, truth)
    assert abs(float(mass.sum()) - truth) <= 1e-12 + 1e-9 * truth
    assert np.all(mass <= np.asarray(p) * (1 + 1e-12) + 1e-300)


def test_rrs_wor_n2_random_near_one_hot_matches_enumeration():
    """The O(V log V) n = 2 path against the package's own history enumeration (n = 2 through
    ``_exact_row``) and Fractions, on drafts with one dominant entry."""
    from spectheory.verifiers.rrs_wor import _exact_row

    rng = np.random.default_rng(17)
    for _ in range(40):
        V = int(rng.integers(2, 7))
        eps = 10.0 ** -rng.uniform(12, 300)
        q = np.full(V, eps)
        q[rng.integers(V)] = 1 - (V - 1) * eps
        p = rng.dirichlet(np.ones(V))
        got = SV.acceptance("rrs_wor", p, q, 2)
        truth = float(rrs_wor_acceptance(p, q, 2))
        assert abs(got - truth) <= 1e-12 + 1e-9 * truth
        assert abs(float(_exact_row(p, q, 2).sum()) - truth) <= 1e-12 + 1e-9 * truth


def test_khisti_rejects_a_draft_of_zero_draft_probability():
    k = SV.get("khisti")()
    with pytest.raises(SpecTheoryInputError, match="drafts"):
        k.sample([0.6, 0.3, 0.1], [0.5, 0.5, 0.0], [2, 2], np.random.default_rng(0))
    with pytest.raises(SpecTheoryInputError, match="drafts"):
        k.sample([0.6, 0.3, 0.1], [[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], [2, 1], np.random.default_rng(0))
    with pytest.raises(SpecTheoryInputError, match="drafts"):
        k.sample([0.6, 0.3, 0.1], [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]], [1, 2], np.random.default_rng(0))


# Khisti with s >= V and two identical drafts is documented optimal; alpha* by brute force over the
# subset dual in Fractions (tests/exact_refs.py).
KHISTI_CASES = [
    ([0.2] * 5, [1e-9, 1 - 4e-9, 1e-9, 1e-9, 1e-9]),
    ([0.6, 0.3, 0.1], [0.2, 0.3, 0.5]),
    (_softmax([0, 3, 1, 2], 0.05), _softmax([3, 0, 1, 2], 0.05)),
    ([0.1, 0.2, 0.3, 0.4], [1 - 3e-12, 1e-12, 1e-12, 1e-12]),
    ([0.25] * 4, [1e-100, 1e-100, 1e-100, 1 - 3e-100]),
]


@pytest.mark.parametrize(("p", "q"), KHISTI_CASES)
def test_khisti_full_pair_lp_is_exactly_optimal_for_two_iid_drafts(p, q):
    V = len(p)
    alpha = float(iid_alpha_star(p, q, 2))
    k = SV.get("khisti")(s=V)
    assert abs(k.acceptance(p, q, 2) - alpha) <= 1e-12
    assert abs(k.two_step_acceptance(p, q, 2) - alpha) <= 1e-12
    np.testing.assert_allclose(k.output_law(p, q, 2), p, atol=1e-12)
