r"""Symbolic derivation of optimal acceptance with sympy.

Users derive and check formulas in their own scripts with this module. Everything here returns sympy
expressions (print them, substitute numbers, take :func:`latex`), and a :class:`Derivation` collects
steps with formulas and writes them to Markdown.

The formula behind every expression is the subset (min-cut) form of the transport LP (SpecTr, arXiv
2310.15141; Hu et al., arXiv 2502.18779):

.. math:: \alpha^*(p, Q) = \min_{H \subseteq \Omega} \bigl[1 + p(H) - Q(H^n)\bigr],

with :math:`Q(H^n)` written out for the draft scheme:

* ``"iid"``: :math:`q(H)^n`;
* ``"wor"`` (without replacement): :math:`\sum` over ordered tuples of distinct tokens of
  :math:`H` of :math:`\prod_j q(x_j) / (1 - \sum_{l<j} q(x_l))`;
* ``"greedy"`` (Hu et al.): :math:`1[D \subseteq H]\, q(H\setminus D) / q(\Omega\setminus D)` with
  :math:`D` the top-:math:`(n-1)` tokens of :math:`q`;
* ``"independent"`` (one draft from each of :math:`q_1, \dots, q_n`): :math:`\prod_j q_j(H)`.

``p`` and ``q`` are taken to be distributions (each sums to 1); the sets :math:`\emptyset` and
:math:`\Omega` then both contribute the term 1. Numeric entries are checked; for free symbols the
user states the constraint (e.g. by passing ``1 - p0 - p1`` as the last entry).

sympy is imported inside the functions only: ``import spectheory`` never loads it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._validate import SpecTheoryInputError

if TYPE_CHECKING:  # pragma: no cover
    import sympy

__all__ = [
    "MAX_SYMBOLIC_V",
    "Derivation",
    "acceptance_one_conditions",
    "derive_optimal_acceptance",
    "latex",
    "optimal_acceptance_expr",
    "prob_all_in_expr",
    "prove_two_drafts_closed_form",
    "subset_expressions",
    "substitute",
    "symbols",
    "two_drafts_closed_form",
]

#: Largest vocabulary for symbolic subset enumeration (2^V terms).
MAX_SYMBOLIC_V: int = 6

_SCHEMES = ("iid", "wor", "greedy", "independent")


# ---------------------------------------------------------------------- inputs
def symbols(V: int, name: str = "p", **assumptions: Any) -> tuple[sympy.Symbol, ...]:
    r"""``V`` sympy symbols ``name0 .. name{V-1}`` (non-negative unless told otherwise)."""
    import sympy

    assumptions.setdefault("nonnegative", True)
    if isinstance(V, bool) or not isinstance(V, int) or V < 1:
        raise SpecTheoryInputError(f"argument 'V': must be an integer >= 1, got {V!r}")
    return tuple(sympy.symbols(f"{name}0:{V}", **assumptions))


def _as_exprs(x: Any, name: str) -> tuple[sympy.Expr, ...]:
    import sympy

    if isinstance(x, (str, bytes)) or not hasattr(x, "__iter__"):
        raise SpecTheoryInputError(f"argument {name!r}: expected a sequence of sympy expressions")
    try:
        out = tuple(sympy.sympify(v, rational=True) for v in x)
    except (sympy.SympifyError, TypeError) as exc:
        raise SpecTheoryInputError(
            f"argument {name!r}: entries must be expressions ({exc})"
        ) from exc
    if not out:
        raise SpecTheoryInputError(f"argument {name!r}: empty vocabulary (V = 0)")
    if len(out) > MAX_SYMBOLIC_V:
        raise SpecTheoryInputError(
            f"argument {name!r}: V = {len(out)} > MAX_SYMBOLIC_V = {MAX_SYMBOLIC_V} (2^V subset "
            "expressions); use spectheory.optimal_acceptance(..., method='exact') for numbers"
        )
    for j, v in enumerate(out):
        if v.is_number and (v.is_extended_negative or not v.is_real):
            raise SpecTheoryInputError(f"argument {name!r}: entry {j} is {v} (not a probability)")
    if all(v.is_number for v in out) and sympy.simplify(sum(out) - 1) != 0:
        raise SpecTheoryInputError(f"argument {name!r}: entries sum to {sum(out)}, not 1")
    return out


def _prepare(
    p: Any, q: Any, n: int, scheme: str
) -> tuple[tuple[sympy.Expr, ...] | None, tuple[tuple[sympy.Expr, ...], ...]]:
    if scheme not in _SCHEMES:
        raise SpecTheoryInputError(
            f"argument 'scheme': {scheme!r} is not one of {', '.join(_SCHEMES)}"
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SpecTheoryInputError(f"argument 'n': must be an integer >= 1, got {n!r}")
    if scheme == "independent":
        if isinstance(q, (str, bytes)) or not isinstance(q, Sequence) or len(q) != n:
            raise SpecTheoryInputError(
                f"argument 'q': scheme 'independent' needs a sequence of n = {n} draft "
                "distributions"
            )
        qs = tuple(_as_exprs(qj, f"q[{j}]") for j, qj in enumerate(q))
    else:
        qs = (_as_exprs(q, "q"),)
    V = len(qs[0])
    for j, qj in enumerate(qs):
        if len(qj) != V:
            raise SpecTheoryInputError(f"argument 'q[{j}]': length {len(qj)} differs from {V}")
    pe = None if p is None else _as_exprs(p, "p")
    if pe is not None and len(pe) != V:
        raise SpecTheoryInputError(
            f"argument 'p': vocabulary size {len(pe)} does not match q's V = {V}"
        )
    if scheme in ("wor", "greedy"):
        numeric = [v for v in qs[0] if v.is_number]
        if len(numeric) == V and sum(1 for v in numeric if v > 0) < n:
            raise SpecTheoryInputError(
                f"argument 'q': fewer than n = {n} tokens have positive probability"
            )
        if V < n:
            raise SpecTheoryInputError(f"argument 'q': V = {V} tokens, fewer than n = {n} drafts")
    return pe, qs


def _fixed(q: tuple[sympy.Expr, ...], n: int, fixed: Sequence[int] | None) -> tuple[int, ...]:
    """Greedy's fixed drafts D: given, or the top n - 1 of a numeric q (ties: smaller index)."""
    if fixed is not None:
        D = tuple(int(i) for i in fixed)
        if len(D) != n - 1 or len(set(D)) != n - 1 or any(i < 0 or i >= len(q) for i in D):
            raise SpecTheoryInputError(
                f"argument 'fixed': expected n - 1 = {n - 1} distinct token ids in [0, {len(q)})"
            )
        return D
    if n == 1:
        return ()
    if all(v.is_number for v in q):
        return tuple(sorted(range(len(q)), key=lambda i: (-q[i], i))[: n - 1])
    raise SpecTheoryInputError(
        "argument 'fixed': q has free symbols, so its top n - 1 tokens (the fixed greedy drafts) "
        f"are unknown; pass fixed=[...] with {n - 1} token id(s)"
    )


# ---------------------------------------------------------------------- Q(H^n) and subset terms
def prob_all_in_expr(
    q: Any, n: int, H: Sequence[int], scheme: str = "iid", *, fixed: Sequence[int] | None = None
) -> sympy.Expr:
    r""":math:`Q(H^n)` as a sympy expression, for the token set ``H`` (a sequence of token ids).

    See the module docstring for the formula of each ``scheme``. For ``"greedy"`` the fixed drafts
    :math:`D` are ``fixed``, else the top-``(n-1)`` tokens of a numeric ``q`` (ties: smaller
    index); with free symbols ``fixed`` is required.
    """
    _, qs = _prepare(None, q, n, scheme)
    return _Q(qs, n, frozenset(int(i) for i in H), scheme, fixed)


def _Q(
    qs: tuple[tuple[sympy.Expr, ...], ...],
    n: int,
    H: frozenset[int],
    scheme: str,
    fixed: Sequence[int] | None,
) -> sympy.Expr:
    import sympy

    q = qs[0]
    V = len(q)
    inside = sorted(H)
    if scheme == "iid":
        return sympy.Add(*(q[i] for i in inside)) ** n
    if scheme == "independent":
        return sympy.Mul(*(sympy.Add(*(qj[i] for i in inside)) for qj in qs))
    if scheme == "greedy":
        D = _fixed(q, n, fixed)
        if not set(D) <= H:
            return sympy.S.Zero
        rest = sympy.Add(*(q[i] for i in range(V) if i not in D))
        return sympy.Add(*(q[i] for i in inside if i not in D)) / rest
    # without replacement: the sum over ordered tuples of distinct tokens of H, grouped by the
    # earlier draws (the last draw contributes q(H minus earlier) / (1 - earlier mass)).
    if len(inside) < n:
        return sympy.S.Zero

    def nested(rest: tuple[int, ...], used: sympy.Expr, m: int) -> sympy.Expr:
        if m == 1:
            return sympy.Add(*(q[i] for i in rest)) / (1 - used)
        return sympy.Add(
            *(
                q[i] / (1 - used) * nested(tuple(j for j in rest if j != i), used + q[i], m - 1)
                for i in rest
            )
        )

    return nested(tuple(inside), sympy.S.Zero, n)


def subset_expressions(
    p: Any, q: Any, n: int, scheme: str = "iid", *, fixed: Sequence[int] | None = None
) -> dict[frozenset[int], sympy.Expr]:
    r"""The subset terms :math:`1 + p(H) - Q(H^n)` for every non-empty proper :math:`H`.

    Returns a dict keyed by ``frozenset`` of token ids (:math:`\emptyset` and :math:`\Omega` both
    give 1 and are left out).
    """
    import sympy

    pe, qs = _prepare(p, q, n, scheme)
    assert pe is not None
    V = len(pe)
    out: dict[frozenset[int], sympy.Expr] = {}
    for k in range(1, V):
        for H in itertools.combinations(range(V), k):
            Hs = frozenset(H)
            out[Hs] = 1 + sympy.Add(*(pe[i] for i in H)) - _Q(qs, n, Hs, scheme, fixed)
    return out


def optimal_acceptance_expr(
    p: Any,
    q: Any,
    n: int,
    scheme: str = "iid",
    *,
    order: Sequence[int] | None = None,
    fixed: Sequence[int] | None = None,
    simplify: bool = True,
) -> sympy.Expr:
    r""":math:`\alpha^*` as an exact sympy expression.

    Parameters
    ----------
    p
        Target distribution: a sequence of sympy symbols/expressions/numbers (``V <= 6``).
    q
        Draft distribution (same form); for ``scheme="independent"`` a sequence of ``n`` of them.
    n
        Number of drafts.
    scheme
        ``"iid"``, ``"wor"``, ``"greedy"`` or ``"independent"``.
    order
        An assumed ascending order of the ratios :math:`p(y)/q(y)` (token ids). The result is then
        the minimum over the :math:`V + 1` prefix sets :math:`H_k` of that order:
        :math:`\min_k [1 + P_k - Q(H_k^n)]` -- the sorted-prefix theorem, proved for i.i.d. drafts
        (Hu et al., arXiv 2502.18779) and for sampling without replacement
        (docs/without_replacement.md, section 6). Not accepted for ``"independent"`` (no ratio
        order is exact there) nor ``"greedy"`` (closed form).
    fixed
        Greedy only: the fixed drafts :math:`D` (see :func:`prob_all_in_expr`).
    simplify
        Return the simplified form: for :math:`n = 1`, :math:`\sum_y \min(p(y), q(y))`; for greedy
        drafts, :math:`p(D) + \sum_{y\notin D} \min(p(y), q(y)/q(\Omega\setminus D))`; otherwise
        the Min over the subset terms with duplicates removed. With ``simplify=False`` the raw Min
        over all subset terms.

    Returns
    -------
    sympy.Expr
        A ``Min`` (or, simplified, a sum of ``Min``); substitute numbers with :func:`substitute`
        (``.subs`` is correct but slow on a ``Min`` of many symbolic terms).

    Notes
    -----
    Both simplifications follow from the subset form when :math:`Q(H^n)` is additive over
    :math:`\Omega\setminus D`: :math:`\min_H \sum_{y\in H}(p(y) - q'(y)) = \sum_y \min(0, p(y) -
    q'(y))` and :math:`1 = \sum_y q'(y)`; proofs in ``docs/symbolic.md``.
    """
    import sympy

    pe, qs = _prepare(p, q, n, scheme)
    assert pe is not None
    V = len(pe)
    if order is not None:
        if scheme in ("independent", "greedy"):
            raise SpecTheoryInputError(
                f"argument 'order': no sorted-prefix theorem is used for scheme {scheme!r}"
            )
        order = [int(i) for i in order]
        if sorted(order) != list(range(V)):
            raise SpecTheoryInputError(
                f"argument 'order': expected a permutation of 0..{V - 1}, got {order}"
            )
        terms = [sympy.S.One]
        for k in range(1, V):
            H = frozenset(order[:k])
            terms.append(1 + sympy.Add(*(pe[i] for i in order[:k])) - _Q(qs, n, H, scheme, fixed))
        return _min(terms, pe, simplify)
    if simplify and scheme != "independent" and (n == 1 or scheme == "greedy"):
        q0 = qs[0]
        D = _fixed(q0, n, fixed) if scheme == "greedy" else ()
        rest = sympy.Add(*(q0[i] for i in range(V) if i not in D))
        if not D:
            rest = sympy.S.One  # q sums to 1
        return sympy.Add(
            *(pe[i] if i in D else sympy.Min(pe[i], q0[i] / rest) for i in range(V))
        )
    if simplify and scheme == "independent" and n == 1:
        return sympy.Add(*(sympy.Min(pe[i], qs[0][i]) for i in range(V)))
    terms = [sympy.S.One, *subset_expressions(p, q, n, scheme, fixed=fixed).values()]
    return _min(terms, pe, simplify)


def _min(terms: list[sympy.Expr], p: tuple[sympy.Expr, ...], simplify: bool) -> sympy.Expr:
    """Min of ``terms`` without sympy's pairwise argument comparison (slow for 2^V symbolic
    terms). ``simplify`` removes duplicates and the terms ``1 + p(H)`` (``Q(H^n) = 0``), which
    are never below the term 1 because ``p >= 0``."""
    import sympy

    if simplify:
        ones = {1 + sympy.Add(*sub) for k in range(1, len(p) + 1)
                for sub in itertools.combinations(p, k)}
        kept: list[sympy.Expr] = []
        for t in terms:
            if t not in kept and (t == 1 or t not in ones):
                kept.append(t)
        terms = kept
    if all(t.is_number for t in terms):
        return sympy.Min(*terms)
    return sympy.Min(*terms, evaluate=False)


# ---------------------------------------------------------------------- alpha* = 1
def acceptance_one_conditions(
    q: Any,
    n: int,
    *,
    scheme: str = "iid",
    p: Sequence[Any] | None = None,
    reduce: bool = True,
    fixed: Sequence[int] | None = None,
) -> list[sympy.core.relational.Relational]:
    r"""The inequalities on ``p`` under which :math:`\alpha^* = 1`.

    By the subset form, :math:`\alpha^* = 1` iff :math:`p(H) \ge Q(H^n)` for every :math:`H`
    (for two i.i.d. drafts this is Khisti et al.'s condition :math:`p(S) \ge q(S)^2`, arXiv
    2410.18234). Conditions whose right-hand side is 0 (always true) and :math:`H = \Omega` are
    dropped. With numeric ``q`` and ``reduce=True`` the list is reduced to a non-redundant set:
    a condition is dropped when it is implied by the conditions still kept together with
    :math:`p \ge 0, \sum_y p(y) = 1`, decided by an **exact** rational LP (sympy's simplex),
    :math:`\min p(H)` subject to the others :math:`\ge Q(H^n)`. Checking only single tokens is not
    enough: for :math:`q = (2/5, 2/5, 1/5)`, :math:`n = 2`, the pair condition
    :math:`p_0 + p_1 \ge 16/25` is non-redundant (``p = (3/10, 3/10, 2/5)`` passes every singleton
    and fails it).

    Parameters
    ----------
    q, n, scheme, fixed
        As in :func:`optimal_acceptance_expr`.
    p
        Symbols for the target (default ``p0 .. p{V-1}``, non-negative).
    reduce
        Remove redundant conditions (numeric ``q`` only; with free symbols every condition is
        kept).

    Returns
    -------
    list of sympy relations ``p(H) >= Q(H^n)``, ordered by set size then token ids.
    """
    import sympy

    _, qs = _prepare(None, q, n, scheme)
    V = len(qs[0])
    ps = symbols(V, "p") if p is None else tuple(sympy.sympify(v) for v in p)
    if len(ps) != V:
        raise SpecTheoryInputError(f"argument 'p': {len(ps)} symbols for V = {V}")
    conds: list[tuple[frozenset[int], sympy.Expr]] = []
    for k in range(1, V):
        for H in itertools.combinations(range(V), k):
            c = sympy.simplify(_Q(qs, n, frozenset(H), scheme, fixed))
            if c.is_number and c <= 0:
                continue
            conds.append((frozenset(H), c))
    if reduce and all(c.is_number for _, c in conds):
        conds = _irredundant(conds, ps)
    return [
        sympy.Ge(sympy.Add(*(ps[i] for i in sorted(H))), c, evaluate=False) for H, c in conds
    ]


def _irredundant(
    conds: list[tuple[frozenset[int], sympy.Expr]], ps: tuple[sympy.Expr, ...]
) -> list[tuple[frozenset[int], sympy.Expr]]:
    """Drop, one at a time, the conditions implied by the others kept (exact LP on the simplex)."""
    import sympy
    try:
        from sympy.solvers.simplex import lpmin  # sympy >= 1.13
    except ImportError:  # pragma: no cover - old sympy: no exact LP, keep every condition
        import warnings

        warnings.warn(
            "sympy < 1.13 has no exact LP (sympy.solvers.simplex); conditions not reduced",
            stacklevel=3,
        )
        return conds

    x = sympy.symbols(f"_x0:{len(ps)}", real=True)
    simplex = [xi >= 0 for xi in x] + [sympy.Eq(sum(x), 1)]
    kept = list(conds)
    # Try to drop the largest sets first: the small ones are the "obvious" conditions.
    for cand in sorted(conds, key=lambda hc: (-len(hc[0]), sorted(hc[0]))):
        others = [
            sympy.Add(*(x[i] for i in H)) >= c for H, c in kept if H != cand[0]
        ]
        H, c = cand
        try:
            m, _ = lpmin(sympy.Add(*(x[i] for i in H)), simplex + others)
        except Exception:  # infeasible or unbounded: keep the condition (never drop blindly)
            continue
        if m >= c:
            kept.remove(cand)
    return sorted(kept, key=lambda hc: (len(hc[0]), sorted(hc[0])))


# ---------------------------------------------------------------------- two drafts (Khisti)
def two_drafts_closed_form(p: Any = None, q: Any = None) -> sympy.Expr:
    r"""Khisti et al.'s closed form for two i.i.d. drafts (arXiv 2410.18234):

    .. math::

        \alpha^* = \min_{S \subseteq \Omega}
            \Bigl[p(S) + q(S^c)^2 + 2\, q(S)\, q(S^c)\Bigr].

    ``p``, ``q`` default to symbols ``p0..p2``, ``q0..q2`` (``V = 3``). All :math:`2^V` sets are
    kept (with free symbols the terms of :math:`\emptyset` and :math:`\Omega` are
    :math:`q(\Omega)^2` and :math:`p(\Omega)`, which are 1 on distributions).
    """
    import sympy

    if p is None:
        p = symbols(3, "p")
    if q is None:
        q = symbols(len(p), "q")
    pe, qs = _prepare(p, q, 2, "iid")
    assert pe is not None
    return sympy.Min(*_khisti_terms(pe, qs[0]).values(), evaluate=False)


def _khisti_terms(
    p: tuple[sympy.Expr, ...], q: tuple[sympy.Expr, ...]
) -> dict[frozenset[int], sympy.Expr]:
    import sympy

    V = len(p)
    out = {}
    for k in range(V + 1):
        for S in itertools.combinations(range(V), k):
            pS = sympy.Add(*(p[i] for i in S))
            qS = sympy.Add(*(q[i] for i in S))
            qC = sympy.Add(*(q[i] for i in range(V) if i not in S))
            out[frozenset(S)] = pS + qC**2 + 2 * qS * qC
    return out


def prove_two_drafts_closed_form(V: int = 3) -> Derivation:
    r"""Prove Khisti's closed form equals the subset form for two i.i.d. drafts on ``V`` tokens.

    The proof is termwise, hence independent of the ordering of the ratios: with
    :math:`q(S^c) = 1 - q(S)`,

    .. math:: p(S) + q(S^c)^2 + 2q(S)q(S^c) = p(S) + (1 - q(S))(1 + q(S)) = 1 + p(S) - q(S)^2,

    which is the subset term of :math:`H = S`. sympy checks each of the :math:`2^V` identities
    after substituting :math:`p_{V-1} = 1 - \sum_{i<V-1} p_i` and likewise for ``q``; equal
    argument lists give equal minima.

    Returns
    -------
    Derivation
        Its steps are the identities checked; ``proved`` is True when every difference expands to 0.
    """
    import sympy

    if isinstance(V, bool) or not isinstance(V, int) or not 1 <= V <= MAX_SYMBOLIC_V:
        raise SpecTheoryInputError(f"argument 'V': must be an integer in [1, {MAX_SYMBOLIC_V}]")
    p = list(symbols(V, "p"))
    q = list(symbols(V, "q"))
    p[-1] = 1 - sympy.Add(*p[:-1])
    q[-1] = 1 - sympy.Add(*q[:-1])
    khisti = _khisti_terms(tuple(p), tuple(q))
    d = Derivation(
        f"Khisti's two-draft closed form equals the subset form (V = {V})",
        proved=True,
    )
    d.add(
        "Closed form (Khisti et al., arXiv 2410.18234), all sets S:",
        sympy.Min(*khisti.values(), evaluate=False),
    )
    for S, term in khisti.items():
        pS = sympy.Add(*(p[i] for i in S))
        qS = sympy.Add(*(q[i] for i in S))
        subset = 1 + pS - qS**2
        ok = sympy.expand(term - subset) == 0
        d.proved = d.proved and ok
        label = "{" + ", ".join(map(str, sorted(S))) + "}"
        d.add(
            f"S = {label}: closed-form term minus subset term expands to "
            f"{'0' if ok else 'a non-zero polynomial'}",
            sympy.Eq(term, subset, evaluate=False),
        )
    d.add(
        "Equal terms for every S, hence equal minima: the closed form is the subset form "
        "min_S [1 + p(S) - q(S)^2]." if d.proved else "The identity failed for some S.",
        None,
    )
    return d


def substitute(expr: Any, values: Mapping[Any, Any]) -> Any:
    """Substitute exact values into ``expr`` (floats are converted to exact rationals).

    Uses ``xreplace`` (one structural pass), which is orders of magnitude faster than ``.subs`` on a
    ``Min`` of many symbolic terms: ``.subs`` re-simplifies every partially substituted term.
    """
    import sympy

    return expr.xreplace(
        {sympy.sympify(k): sympy.sympify(v, rational=True) for k, v in values.items()}
    )


# ---------------------------------------------------------------------- output
def latex(expr: Any) -> str:
    """LaTeX of a sympy expression or relation (``sympy.latex``)."""
    import sympy

    return sympy.latex(expr)


@dataclass
class Derivation:
    """A derivation: a title and numbered steps, each a sentence with an optional formula.

    Attributes
    ----------
    title
        Heading of the derivation.
    steps
        ``(text, formula)`` pairs; the formula is a sympy object, a LaTeX string, or None.
    proved
        For proofs: whether every step checked (None for plain derivations).
    """

    title: str
    steps: list[tuple[str, Any]] = field(default_factory=list)
    proved: bool | None = None

    def add(self, text: str, expr: Any = None) -> Derivation:
        """Append a step and return ``self``."""
        self.steps.append((text, expr))
        return self

    @property
    def result(self) -> Any:
        """The formula of the last step that has one."""
        for _, e in reversed(self.steps):
            if e is not None:
                return e
        return None

    def to_text(self) -> str:
        """Plain-text rendering (sympy's string form of each formula)."""
        lines = [self.title, "=" * len(self.title)]
        for k, (text, e) in enumerate(self.steps, start=1):
            lines.append(f"{k}. {text}")
            if e is not None:
                lines.append(f"   {e}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """Markdown with each formula as a display-math block ``$$ ... $$`` (LaTeX)."""
        out = [f"# {self.title}", ""]
        for k, (text, e) in enumerate(self.steps, start=1):
            out.append(f"{k}. {text}")
            out.append("")
            if e is not None:
                tex = e if isinstance(e, str) else latex(e)
                out.extend([f"   $$ {tex} $$", ""])
        if self.proved is not None:
            out.append(f"**{'Proved' if self.proved else 'Not proved'}.**")
            out.append("")
        return "\n".join(out)

    def write_markdown(self, path: str | Path) -> Path:
        """Write :meth:`to_markdown` to ``path`` and return it as a :class:`~pathlib.Path`."""
        path = Path(path)
        path.write_text(self.to_markdown(), encoding="utf-8")
        return path


def derive_optimal_acceptance(
    p: Any,
    q: Any,
    n: int,
    scheme: str = "iid",
    *,
    order: Sequence[int] | None = None,
    fixed: Sequence[int] | None = None,
) -> Derivation:
    r"""A step-by-step derivation of :math:`\alpha^*` (subset form, each term, the result).

    The last step's formula is :func:`optimal_acceptance_expr` with the same arguments.
    """
    import sympy

    pe, qs = _prepare(p, q, n, scheme)
    assert pe is not None
    V = len(pe)
    d = Derivation(f"Optimal acceptance, scheme {scheme!r}, V = {V}, n = {n}")
    alpha = sympy.Symbol(r"\alpha^{*}")
    d.add(
        "Subset (min-cut) form of the transport LP (Hu et al., arXiv 2502.18779): minimise over "
        "all token sets H; the empty set and the whole vocabulary give 1.",
        r"\alpha^{*} = \min_{H \subseteq \Omega} \bigl[1 + p(H) - Q(H^n)\bigr]",
    )
    example = frozenset(range(min(n, V - 1) or 1))
    d.add(
        f"Q(H^n) for scheme {scheme!r}, e.g. H = {set(example)}:",
        _Q(qs, n, example, scheme, fixed),
    )
    for Hs, term in subset_expressions(p, q, n, scheme, fixed=fixed).items():
        label = "{" + ", ".join(map(str, sorted(Hs))) + "}"
        d.add(f"Subset term for H = {label}:", term)
    if order is not None:
        d.add(
            "Sorted-prefix theorem: with the assumed ascending ratio order "
            f"{list(order)}, only the V + 1 prefix sets matter.",
            None,
        )
    result = optimal_acceptance_expr(p, q, n, scheme, order=order, fixed=fixed)
    d.add("Result:", sympy.Eq(alpha, result, evaluate=False))
    return d
