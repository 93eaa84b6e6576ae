"""Tests of spectheory.blocks.bounds: block_bound (lossless and coupling LPs) and check_bound.

Independent references, each named where used:

* Sun et al.'s two-token binary example (arXiv 2403.10444, section 1): p = (1/3, 2/3), q = (2/3,
  1/3) at every context, gamma = 2: token verification 10/9, block verification 11/9, the ideal
  (joint-law) verifier 12/9 accepted draft tokens per call (10/9 = alpha + alpha^2 with
  alpha = 2/3 counts accepted drafts, not the bonus token);
* for one chain, Sun et al.'s block verification is optimal (their Theorem 2); its expected
  accepted length is sum_i E_{X ~ q}[w_i], w_0 = 1, w_i = min(w_{i-1} p(X_i|X^{i-1}) /
  q(X_i|X^{i-1}), 1): computed here by enumeration (``_sun_block_value``), in Fractions too;
* for gamma = 1 the lossless optimum is alpha* of the children's scheme
  (``spectheory.optimal_acceptance``: prefix-sort / subset theory, not this LP), and for the
  deterministic top-k scheme it is p(top-k);
* the plain formulations (one row per target sequence; OT over (realisation, target block)) are
  different LPs from the flow form the library certifies;
* every lossless rule of ``block_acceptance`` (exact enumeration) is a feasible point of the
  lossless LP, so it must lie below it.
"""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest

from spectheory import IID, WithoutReplacement, optimal_acceptance
from spectheory._validate import SpecTheoryInputError
from spectheory.blocks import Chain, Chains, Markov, Tree, block_acceptance, bounds, random_pair
from spectheory.blocks.bounds import (
    BlockBound,
    BoundCertificate,
    BoundKind,
    BoundStatus,
    block_bound,
    check_bound,
)
from spectheory.blocks.problem import BlockProblem
from spectheory.verifiers import base as vbase

#: Agreement between two LP optima (HiGHS stops at a 1e-10 feasibility tolerance; the certified
#: gap is below CERT_GAP_TOL = 1e-9).
LP_ATOL = 1e-9
#: Agreement of closed forms evaluated in float64 (a few hundred roundings).
EXACT_ATOL = 1e-12


def _rules() -> dict:
    try:
        from spectheory.blocks import rules  # noqa: F401
        from spectheory.blocks.verify import BLOCK_RULES
    except Exception:  # pragma: no cover - a sibling module mid-edit
        return {}
    return dict(BLOCK_RULES)


HAS_TUPLE_LAW = hasattr(vbase.Verifier, "tuple_law")
needs_tuple_law = pytest.mark.skipif(
    not HAS_TUPLE_LAW, reason="token-level rules need Verifier.tuple_law (not merged yet)"
)
needs_block_rule = pytest.mark.skipif(
    "block" not in _rules(), reason="verifier 'block' (spectheory/blocks/rules.py) not merged yet"
)


# ---------------------------------------------------------------------- independent references
def _sun_block_value(target, draft, gamma: int, context=()) -> object:
    """Sun et al.'s block verification: sum_i E_q[w_i] by enumeration of the draft chain (exact
    in Fractions on Fraction models)."""
    pb = BlockProblem(target, draft, Chain(gamma), context)
    total = F(0) if pb.exact else 0.0

    def rec(path, w, pr):
        nonlocal total
        if len(path) == gamma:
            return
        P, Q = pb.p(path), pb.q(path)
        for x in range(pb.V):
            if Q[x] == 0:
                continue
            w2 = min(w * P[x] / Q[x], 1)
            total += pr * Q[x] * w2
            rec((*path, x), w2, pr * Q[x])

    rec((), F(1) if pb.exact else 1.0, F(1) if pb.exact else 1.0)
    return total


def _const(row):
    return lambda h: row


SUN_P = [F(1, 3), F(2, 3)]
SUN_Q = [F(2, 3), F(1, 3)]

#: Draft structures of the random sweeps (small: V <= 4, gamma <= 3).
STRUCTURES = [
    Chain(1),
    Chain(2),
    Chain(3),
    Chains(2, 1),
    Chains(2, 2),
    Chains(3, 2),
    Tree.branching((2, 1)),
    Tree.branching((2, 2), "wor"),
    Tree((-1, 0, 0, 1), "iid"),
    Tree((-1, 0, 0, 1, 3), "wor"),
    Tree.branching((2, 1), "greedy"),
    Tree.branching((2, 2), "hub"),
]


def _instances(seed: int, count: int, structures=STRUCTURES, max_v: int = 4):
    rng = np.random.default_rng(seed)
    for i in range(count):
        drafts = structures[i % len(structures)]
        depth = drafts.tree.max_depth
        nodes = drafts.tree.num_nodes
        hi = 3 if nodes >= 5 or (nodes >= 4 and depth >= 3) else max_v
        V = int(rng.integers(2, hi + 1))
        if drafts.tree.scheme in ("wor", "greedy", "hub"):
            V = max(V, 3)
        conc = float(rng.choice([0.3, 1.0, 3.0]))
        t, d = random_pair(V, depth + 2, rng, concentration=conc)
        ctx = tuple(int(x) for x in rng.integers(0, V, size=int(rng.integers(0, 2))))
        yield t, d, drafts, ctx


# ---------------------------------------------------------------------- Sun et al.'s example
def test_sun_example_lossless_and_coupling() -> None:
    """11/9 (block verification = lossless optimum) and 12/9 (the ideal they quote), flow and
    plain formulations, float and Fraction models."""
    for make in (float, F):
        p = _const(np.array([make(x) for x in SUN_P], dtype=object if make is F else float))
        q = _const(np.array([make(x) for x in SUN_Q], dtype=object if make is F else float))
        for form in ("flow", "plain"):
            lo = block_bound(p, q, Chain(2), formulation=form)
            co = block_bound(p, q, Chain(2), kind="coupling", formulation=form)
            assert lo.status is BoundStatus.OPTIMAL and co.status is BoundStatus.OPTIMAL
            assert lo.value == pytest.approx(11 / 9, abs=EXACT_ATOL)
            assert co.value == pytest.approx(12 / 9, abs=EXACT_ATOL)
            assert lo.tokens_per_call == pytest.approx(20 / 9, abs=EXACT_ATOL)
            assert lo.method == "highs" and lo.kind is BoundKind.LOSSLESS
            assert co.kind is BoundKind.COUPLING and lo.formulation == form
    # the closed form of block verification gives 11/9 exactly on this example
    assert _sun_block_value(_const(SUN_P), _const(SUN_Q), 2) == F(11, 9)


def test_sun_example_certificate_checks() -> None:
    p, q = _const(np.array([1 / 3, 2 / 3])), _const(np.array([2 / 3, 1 / 3]))
    for kind in ("lossless", "coupling"):
        b = block_bound(p, q, Chain(2), kind=kind)
        assert isinstance(b.certificate, BoundCertificate)
        chk = check_bound(b, p, q, Chain(2))
        assert chk.ok and abs(chk.gap) < 1e-12 and chk.primal_violation < 1e-12
        assert chk == b.check
        # sizes are reported: 4 realisations of a binary chain of 2; paths (), a, b, and 4 pairs
        assert b.info["realizations"] == 4 and b.info["paths"] == 7
        for key in ("build_s", "solve_s", "check_s", "time_s", "columns", "rows", "nonzeros"):
            assert key in b.info


@needs_block_rule
def test_sun_example_block_rule_matches() -> None:
    p = _const(np.array(SUN_P, dtype=object))
    q = _const(np.array(SUN_Q, dtype=object))
    r = block_acceptance(p, q, Chain(2), "block")
    assert r.exact["mean"] == F(11, 9)
    assert block_bound(p, q, Chain(2)).value == pytest.approx(float(r.exact["mean"]), abs=1e-12)


# ---------------------------------------------------------------------- the formulation
def test_chain_lossless_equals_sun_block_verification() -> None:
    """One chain: the lossless LP equals Sun et al.'s block-verification value (their optimality
    theorem), computed by the closed form, on random instances."""
    rng = np.random.default_rng(11)
    for _ in range(60):
        V, gam = int(rng.integers(2, 5)), int(rng.integers(1, 4))
        t, d = random_pair(V, gam + 1, rng, concentration=float(rng.choice([0.3, 1.0, 3.0])))
        b = block_bound(t, d, Chain(gam))
        assert b.status is BoundStatus.OPTIMAL
        assert b.value == pytest.approx(_sun_block_value(t, d, gam), abs=LP_ATOL)


def test_chain_lossless_exact_fraction_models() -> None:
    rng = np.random.default_rng(12)
    for _ in range(8):
        t, d = random_pair(3, 3, rng, exact=True, denominator=7)
        want = _sun_block_value(t, d, 2)
        assert isinstance(want, F)
        b = block_bound(t, d, Chain(2))
        assert b.value == pytest.approx(float(want), abs=LP_ATOL)
        assert b.check.ok


@needs_block_rule
def test_chain_block_rule_equals_lossless() -> None:
    """Sun et al.'s theorem through the library's own rule: block_acceptance(..., 'block')."""
    n = 0
    for t, d, drafts, ctx in _instances(13, 40, [Chain(1), Chain(2), Chain(3)]):
        r = block_acceptance(t, d, drafts, "block", context=ctx)
        b = block_bound(t, d, drafts, context=ctx)
        assert r.mean == pytest.approx(b.value, abs=LP_ATOL)
        n += 1
    assert n == 40


def test_one_position_equals_alpha_star() -> None:
    """gamma = 1: the best lossless verifier of the children is alpha* of their scheme."""
    rng = np.random.default_rng(14)
    for _ in range(40):
        V, n = int(rng.integers(2, 5)), int(rng.integers(1, 4))
        t, d = random_pair(V, 2, rng, concentration=float(rng.choice([0.3, 1.0])))
        ctx = (int(rng.integers(0, V)),)
        p, q = t(ctx), d(ctx)
        for scheme, cls in (("iid", IID), ("wor", WithoutReplacement)):
            if scheme == "wor" and n > V:
                continue
            b = block_bound(t, d, Tree.branching((n,), scheme), context=ctx)
            want = float(optimal_acceptance(p, cls(q, n)).value)
            assert b.value == pytest.approx(want, abs=LP_ATOL)
            c = block_bound(t, d, Tree.branching((n,), scheme), context=ctx, kind="coupling")
            assert c.value == pytest.approx(want, abs=LP_ATOL)  # one position: the same LP
        if n <= V:  # deterministic top-n drafts: accept exactly when Y ~ p falls in them
            top = np.argsort(-q, kind="stable")[:n]
            b = block_bound(t, d, Tree.branching((n,), "greedy"), context=ctx)
            assert b.value == pytest.approx(float(np.sum(p[top])), abs=LP_ATOL)


def test_flow_equals_plain_formulation() -> None:
    """The reduced flow LP (merged realisations, one cap per drafted path) and the plain LP (one
    column per realisation and output, one row per target sequence) have the same optimum."""
    n = 0
    for t, d, drafts, ctx in _instances(15, 36):
        for kind in ("lossless", "coupling"):
            a = block_bound(t, d, drafts, context=ctx, kind=kind)
            b = block_bound(t, d, drafts, context=ctx, kind=kind, formulation="plain")
            assert a.status is BoundStatus.OPTIMAL and b.status is BoundStatus.OPTIMAL
            assert a.value == pytest.approx(b.value, abs=LP_ATOL), (drafts, kind)
            assert b.certificate is None and b.check is None
            n += 1
    assert n == 72


def test_checker_and_ordering_on_random_instances() -> None:
    """check_bound closes every certificate (gap < 1e-9); lossless <= coupling <= depth."""
    for t, d, drafts, ctx in _instances(16, 96):
        lo = block_bound(t, d, drafts, context=ctx)
        co = block_bound(t, d, drafts, context=ctx, kind="coupling")
        for b in (lo, co):
            assert b.status is BoundStatus.OPTIMAL
            assert b.check.ok and abs(b.check.gap) < 1e-9
            assert b.check.primal_violation <= bounds.BOUND_FEAS_TOL
        assert lo.value <= co.value + LP_ATOL
        assert co.value <= drafts.tree.max_depth + LP_ATOL
        assert lo.value >= -LP_ATOL


def test_checker_rejects_tampered_certificates() -> None:
    """The checker recomputes everything: a scaled plan is infeasible, perturbed duals still give
    a valid (rigorous) upper bound but no longer close the gap, a foreign group is refused."""
    rng = np.random.default_rng(17)
    t, d = random_pair(3, 4, rng)
    drafts = Chains(2, 2)
    b = block_bound(t, d, drafts)
    c = b.certificate
    assert b.check.ok

    def with_cert(**kw) -> BlockBound:
        fields = {f: getattr(c, f) for f in c.__dataclass_fields__}
        fields.update(kw)
        return BlockBound(b.value, b.tokens_per_call, b.status, b.method, b.kind, b.formulation,
                          b.structure, BoundCertificate(**fields))

    bad_plan = with_cert(plan={k: 1.01 * v for k, v in c.plan.items()})
    chk = check_bound(bad_plan, t, d, drafts)
    assert not chk.ok and chk.primal_violation > 1e-4
    for s in range(5):
        noise = np.random.default_rng(s).normal(0, 0.05, len(c.dual_group))
        chk = check_bound(with_cert(dual_group=c.dual_group + noise), t, d, drafts)
        assert chk.dual_bound >= b.value - 1e-12  # still an upper bound (weak duality)
        assert not chk.ok and chk.dual_violation > 0
    moved = {(gi, h): m for (gi, h), m in c.plan.items()}
    gi, h = next(iter(k for k in moved if len(k[1]) == 0))
    moved[(gi, (0, 0, 0, 0))] = moved.pop((gi, h))
    assert not check_bound(with_cert(plan=moved), t, d, drafts).ok
    # a certificate checked against other models fails
    t2, _ = random_pair(3, 4, np.random.default_rng(99))
    assert not check_bound(b, t2, t2, drafts).ok
    plain = block_bound(t, d, drafts, formulation="plain")
    with pytest.raises(SpecTheoryInputError, match="no certificate"):
        check_bound(plain, t, d, drafts)


@needs_tuple_law
def test_lossless_rules_below_the_bound() -> None:
    """Every lossless rule that applies to a structure (exact enumeration) <= lossless bound."""
    names = ["sd", "rrs", "rrs_wor", "kseq", "greedy", "spechub", "optimal"]
    names += [r for r in ("block", "multipath", "traversal") if r in _rules()]
    compared: dict[str, int] = {}
    for t, d, drafts, ctx in _instances(18, 48):
        lo = block_bound(t, d, drafts, context=ctx)
        for name in names:
            try:
                r = block_acceptance(t, d, drafts, name, context=ctx)
            except SpecTheoryInputError:
                continue  # the rule does not apply to this structure / scheme
            assert r.mean <= lo.value + LP_ATOL, (name, drafts)
            compared[name] = compared.get(name, 0) + 1
    assert compared.get("sd", 0) >= 10 and compared.get("rrs", 0) >= 10


def test_coupling_exceeds_lossless_somewhere() -> None:
    """The two kinds differ (Sun's example) and coincide at gamma = 1 (tested above)."""
    p, q = _const(np.array([0.2, 0.5, 0.3])), _const(np.array([0.5, 0.2, 0.3]))
    lo = block_bound(p, q, Chain(3)).value
    co = block_bound(p, q, Chain(3), kind="coupling").value
    assert co - lo > 0.01


def test_context_is_used() -> None:
    p = Markov([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]])
    q = Markov([0.5, 0.5], [[0.9, 0.1], [0.5, 0.5]])
    a = block_bound(p, q, Chain(2), context=(0,)).value
    b = block_bound(p, q, Chain(2), context=(1,)).value
    assert a > b + 0.1
    assert a == pytest.approx(_sun_block_value(p, q, 2, (0,)), abs=LP_ATOL)


# ---------------------------------------------------------------------- bad input
def test_unknown_kind_and_formulation() -> None:
    p = _const(np.array([0.5, 0.5]))
    with pytest.raises(SpecTheoryInputError, match=r"argument 'kind'.*'ideal'"):
        block_bound(p, p, Chain(1), kind="ideal")
    with pytest.raises(SpecTheoryInputError, match="argument 'formulation'"):
        block_bound(p, p, Chain(1), formulation="dense")
    with pytest.raises(SpecTheoryInputError, match="argument 'drafts'"):
        block_bound(p, p, 3)


def test_size_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    flat = _const(np.full(50, 0.02))
    with pytest.raises(SpecTheoryInputError, match="MAX_REALIZATIONS"):
        block_bound(flat, flat, Chains(4, 3))
    p = _const(np.array([0.5, 0.3, 0.2]))
    monkeypatch.setattr(bounds, "MAX_BOUND_COLUMNS", 20)
    with pytest.raises(SpecTheoryInputError, match="MAX_BOUND_COLUMNS = 20"):
        block_bound(p, p, Chain(3))
    with pytest.raises(SpecTheoryInputError, match=r"plain LP.*MAX_BOUND_COLUMNS"):
        block_bound(p, p, Chain(3), formulation="plain")
    monkeypatch.setattr(bounds, "MAX_BOUND_COLUMNS", 10**9)
    monkeypatch.setattr(bounds, "MAX_BOUND_NONZEROS", 100)
    with pytest.raises(SpecTheoryInputError, match="MAX_BOUND_NONZEROS = 100"):
        block_bound(p, p, Chain(3), formulation="plain")
    assert block_bound(p, p, Chain(1)).value == pytest.approx(1.0, abs=LP_ATOL)  # p == q


# ---------------------------------------------------------------------- bigger sweep
@pytest.mark.slow
def test_random_sweep_slow() -> None:
    """Thousands of random instances: checker, ordering, flow = plain on a subset."""
    for i, (t, d, drafts, ctx) in enumerate(_instances(19, 1200)):
        lo = block_bound(t, d, drafts, context=ctx)
        co = block_bound(t, d, drafts, context=ctx, kind="coupling")
        assert lo.check.ok and co.check.ok
        assert lo.value <= co.value + LP_ATOL
        if i % 10 == 0:
            pl = block_bound(t, d, drafts, context=ctx, formulation="plain")
            assert pl.value == pytest.approx(lo.value, abs=LP_ATOL)
        if isinstance(drafts, Chain):
            assert lo.value == pytest.approx(_sun_block_value(t, d, drafts.gamma, ctx), abs=LP_ATOL)


def test_identical_models_accept_everything() -> None:
    """The plain LP's sequence rows: for p == q the identity verifier is feasible with value
    gamma (accept everything), and both formulations reach it."""
    p = _const(np.array([0.6, 0.4]))
    for drafts in (Chain(3), Chains(2, 2)):
        gam = drafts.tree.max_depth
        for form in ("flow", "plain"):
            assert block_bound(p, p, drafts, formulation=form).value == pytest.approx(
                gam, abs=LP_ATOL
            )
