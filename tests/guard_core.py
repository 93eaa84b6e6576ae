"""The guard of issue 17: adversarial instance families and the exact checks of every number the
verifiers and closed forms report (shared by tests/test_guard.py and benchmarks/guard_report.py).

Exact references (independent of the code under test):

* alpha* of a rule's scheme: the subset dual :math:`\\min_H [Q(\\Omega^n) - Q(H^n) + p(H)]` over all
  :math:`2^V` sets, in Fractions, with :math:`Q` from :func:`exact_refs.exact_tuple_probs`;
* the acceptance and accepted mass of a rational rule: :meth:`Verifier.tuple_law` run on the exact
  Fraction values of the float inputs, summed with exact tuple probabilities;
* kseq / khisti / optimal (irrational or LP-defined): float tuple enumeration through ``tuple_law``
  plus the exact alpha* bound (and equality where the rule is documented optimal).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from exact_refs import exact_tuple_probs, fractions

from spectheory import verifiers as SV
from spectheory._validate import SpecTheoryInputError

#: Tolerances of every comparison with an exact value: |got - exact| <= ATOL + RTOL * |exact|.
ATOL = 1e-12
RTOL = 1e-9
#: Masses beside 1 - eps in the near-one-hot families.
EPSILONS = (1e-300, 1e-200, 1e-100, 1e-30, 1e-16, 1e-12)
#: Temperatures of the low-temperature family.
TEMPERATURES = (0.01, 0.02, 0.05, 0.1)
#: Exact Fraction enumeration up to this many tuples; above it, float enumeration (counted).
MAX_EXACT_TUPLES = 300

FAMILIES = ("near_one_hot_q", "near_one_hot_p", "near_one_hot_both", "low_temperature", "zeros",
            "ties", "disjoint")

#: Rules documented to attain alpha* of their scheme, and when.
DOCUMENTED_OPTIMAL: dict[str, Callable[[int, int], bool]] = {
    "greedy": lambda V, n: True,
    "spechub": lambda V, n: True,
    "optimal": lambda V, n: True,
    "khisti": lambda V, n: n == 2 and V <= SV.get("khisti")().s,
}


def softmax(logits: np.ndarray, T: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / T
    e = np.exp(z - z.max())
    return e / e.sum()


def _one_hot(rng: np.random.Generator, V: int, eps: float) -> np.ndarray:
    x = np.full(V, eps)
    x[rng.integers(V)] = 1.0 - (V - 1) * eps
    return x


def instance(family: str, rng: np.random.Generator, V: int) -> tuple[np.ndarray, np.ndarray]:
    """One ``(p, q)`` of ``family`` with vocabulary ``V``."""
    dirichlet = lambda: rng.dirichlet(np.full(V, 0.8))  # noqa: E731
    if family == "near_one_hot_q":
        return dirichlet(), _one_hot(rng, V, float(rng.choice(EPSILONS)))
    if family == "near_one_hot_p":
        return _one_hot(rng, V, float(rng.choice(EPSILONS))), dirichlet()
    if family == "near_one_hot_both":
        return (_one_hot(rng, V, float(rng.choice(EPSILONS))),
                _one_hot(rng, V, float(rng.choice(EPSILONS))))
    if family == "low_temperature":
        Tp, Tq = (float(rng.choice(TEMPERATURES)) for _ in range(2))
        lp = rng.normal(size=V) * 3
        lq = lp + rng.normal(size=V) * 3 if rng.random() < 0.5 else rng.normal(size=V) * 3
        return softmax(lp, Tp), softmax(lq, Tq)
    if family == "zeros":
        p, q = dirichlet(), dirichlet()
        for x in (p, q):
            k = int(rng.integers(1, max(V // 2, 1) + 1))
            x[rng.choice(V, size=min(k, V - 1), replace=False)] = 0.0
            x /= x.sum()
        return p, q
    if family == "ties":
        p = rng.integers(1, 3, size=V).astype(np.float64)
        q = rng.integers(1, 3, size=V).astype(np.float64)
        return p / p.sum(), q / q.sum()
    if family == "disjoint":
        perm = rng.permutation(V)
        k = int(rng.integers(1, V))
        p, q = np.zeros(V), np.zeros(V)
        p[perm[:k]] = rng.dirichlet(np.ones(k))
        q[perm[k:]] = rng.dirichlet(np.ones(V - k))
        return p, q
    raise ValueError(family)


def max_n(V: int) -> int:
    """Largest n swept at vocabulary V (keeps the exact enumeration small)."""
    return 4 if V <= 4 else (3 if V <= 6 else 2)


def exact_alpha_star(pf: list[Fraction], tuples: list[tuple[int, ...]],
                     probs: list[Fraction]) -> Fraction:
    """:math:`\\min_H [Q(\\text{all}) - Q(H^n) + p(H)]` over all H (zeta transform over masks)."""
    V = len(pf)
    by_mask = [Fraction(0)] * (1 << V)
    for t, w in zip(tuples, probs, strict=True):
        m = 0
        for x in t:
            m |= 1 << x
        by_mask[m] += w
    inside = list(by_mask)  # inside[H] = Q(H^n) after the subset-sum transform
    for i in range(V):
        bit = 1 << i
        for m in range(1 << V):
            if m & bit:
                inside[m] += inside[m ^ bit]
    total = inside[(1 << V) - 1]
    best = None
    for m in range(1 << V):
        pH = sum((pf[i] for i in range(V) if m >> i & 1), Fraction(0))
        v = total - inside[m] + pH
        best = v if best is None or v < best else best
    return best


@dataclass
class Tally:
    """Worst error per quantity and instance counts."""

    worst: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def err(self, quantity: str, got: float, exact: float, where: str, *,
            bound: bool = False) -> None:
        """Record |got - exact| (or the excess got - exact for an upper bound) and check it."""
        e = (got - exact) if bound else abs(got - exact)
        self.worst[quantity] = max(self.worst.get(quantity, 0.0), max(e, 0.0))
        if not (math.isfinite(got) and math.isfinite(exact)) or e > ATOL + RTOL * abs(exact):
            self.failures.append(f"{quantity}: got {got!r}, exact {exact!r} ({where})")

    def count(self, key: str, k: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + k


def check_rule(tally: Tally, name: str, p: np.ndarray, q: np.ndarray, n: int, where: str) -> None:
    """Every invariant of one (rule, instance, n); a SpecTheoryInputError counts as a skip."""
    rule = SV.get(name)()
    V = len(p)
    try:
        scheme = rule.scheme(q, n)
        tuples_f, probs_f = scheme.enumerate()
        acc = float(rule.acceptance(p, q, n))
        mass = np.asarray(rule.accepted_mass(p, q, n), dtype=np.float64)
    except SpecTheoryInputError:
        tally.count(f"skipped {name}")
        return
    tally.count(f"checked {name}")
    pf, qf = fractions(p), fractions(q)
    tuples, probs = exact_tuple_probs(scheme, qf)
    alpha = exact_alpha_star(pf, tuples, probs)
    tally.err("0 <= acceptance", 0.0, acc, where, bound=True)
    tally.err("mass >= 0", 0.0, float(mass.min()), where, bound=True)
    if rule.lossless:
        tally.err("acceptance <= alpha*", acc, float(alpha), where, bound=True)
    tally.err("sum accepted_mass = acceptance", float(math.fsum(mass)), acc, where)
    if rule.lossless:  # a lossy rule may over-emit a token
        for y in range(V):
            tally.err("accepted_mass <= p", float(mass[y]), float(p[y]), f"{where}, token {y}",
                      bound=True)
    if name in DOCUMENTED_OPTIMAL and DOCUMENTED_OPTIMAL[name](V, n):
        tally.err("documented optimal = alpha*", acc, float(alpha), where)
    exact = len(tuples) <= MAX_EXACT_TUPLES and name in ("sd", "rrs", "rrs_wor", "greedy",
                                                          "spechub", "naive")
    if exact:
        tally.count("exact Fraction enumerations")
        a_ex = [Fraction(0)] * V
        for t, w in zip(tuples, probs, strict=True):
            if w == 0:
                continue
            a, _ = rule.tuple_law(pf, qf, np.array(t))
            for y in np.flatnonzero(a):
                a_ex[y] += w * a[y]
        total = sum(a_ex, Fraction(0))
        tally.err("acceptance vs Fraction enumeration", acc, float(total), where)
        for y in range(V):
            tally.err("accepted_mass vs Fraction enumeration", float(mass[y]), float(a_ex[y]),
                      f"{where}, token {y}")
    else:
        tally.count("float enumerations")
        a_fl = np.zeros(V)
        for t, w in zip(tuples_f, probs_f, strict=True):
            if w == 0:
                continue
            try:
                a, _ = rule.tuple_law(p, q, t)
            except NotImplementedError as exc:
                tally.failures.append(f"tuple_law: {exc} ({where})")
                return
            if not np.all(np.isfinite(a)):
                tally.failures.append(f"tuple_law not finite ({where}, tuple {t})")
                return
            a_fl += w * a
        tally.err("acceptance vs float enumeration", acc, float(math.fsum(a_fl)), where)
        for y in range(V):
            tally.err("accepted_mass vs float enumeration", float(mass[y]), float(a_fl[y]),
                      f"{where}, token {y}")


def check_closed_forms(tally: Tally, p: np.ndarray, q: np.ndarray, where: str) -> None:
    """The closed forms of spectheory.two_drafts and spectheory.canonical on one instance."""
    import spectheory as st
    from spectheory import canonical, two_drafts

    pf, qf = fractions(p), fractions(q)
    V = len(p)
    for n in range(1, max_n(V) + 1):
        sch = st.IID(q, n)
        tuples, probs = exact_tuple_probs(sch, qf)
        alpha = exact_alpha_star(pf, tuples, probs)
        if n == 2:
            tally.count("checked two_drafts.optimal_acceptance")
            tally.err("two_drafts.optimal_acceptance", float(two_drafts.optimal_acceptance(p, q).value),
                      float(alpha), where)
        tally.count("checked two_drafts.acceptance_is_one")
        holds = bool(two_drafts.acceptance_is_one(p, q, n))
        # decided with atol 1e-12: only a clear disagreement is an error
        if (alpha == 1) != holds and abs(float(alpha) - 1) > 1e-11:
            tally.failures.append(f"acceptance_is_one: {holds} but alpha* = {float(alpha)} ({where})")
        if n <= 3 and len(tuples) <= MAX_EXACT_TUPLES:
            tally.count("checked canonical.optimal_selection")
            sel = canonical.optimal_selection(p, sch)
            tally.err("canonical.optimal_selection value", float(sel.value), float(alpha), where)
            r = sel.r
            rf = fractions(r)
            two = sum((min(a, b) for a, b in zip(pf, rf, strict=True)), Fraction(0))
            tally.count("checked canonical.two_step_acceptance")
            tally.err("canonical.two_step_acceptance", float(canonical.two_step_acceptance(p, r)),
                      float(two), where)
            tally.count("checked canonical.draft_hit_probability")
            tup, _ = sch.enumerate()
            B = np.array([_beta_or_first(sel, t, V) for t in tup])
            tally.err("canonical.draft_hit_probability <= alpha*",
                      float(canonical.draft_hit_probability(p, sch, B)), float(alpha), where,
                      bound=True)


def _beta_or_first(sel, t: np.ndarray, V: int) -> np.ndarray:
    """The selection rule on tuple ``t``; a tuple the LP dropped (mass underflowed to 0) selects its
    first draft (any choice is valid on a null set)."""
    try:
        return sel.beta(t)
    except SpecTheoryInputError:
        out = np.zeros(V)
        out[t[0]] = 1.0
        return out


def sweep(seed: int, per_family: int, Vs: tuple[int, ...] = (2, 3, 4, 5, 6, 8),
          closed_forms: bool = True) -> Tally:
    """All rules and closed forms on ``per_family`` instances per (family, V)."""
    tally = Tally()
    rng = np.random.default_rng(seed)
    for family in FAMILIES:
        for V in Vs:
            for k in range(per_family):
                p, q = instance(family, rng, V)
                tally.count(f"instances {family}")
                where = f"{family} V={V} #{k} p={p.tolist()} q={q.tolist()}"
                for name in SV.names():
                    for n in range(1, max_n(V) + 1):
                        check_rule(tally, name, p, q, n, f"{name} n={n} {where}")
                if closed_forms:
                    check_closed_forms(tally, p, q, where)
    return tally


def large_v_cases(seed: int) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    """V = 800 low-temperature pairs (the issue's realistic setting)."""
    rng = np.random.default_rng(seed)
    for T in (0.05, 0.02):
        logits = rng.normal(size=800) * 3
        yield softmax(logits, T), softmax(logits + rng.normal(size=800) * 2, T), T
