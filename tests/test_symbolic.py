"""spectheory.symbolic: expressions == exact rational solver == LP; n = 1; the singleton trap;
Khisti's two-draft closed form; LaTeX and Markdown output."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction as F
from pathlib import Path

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st_

import spectheory as st
from spectheory import symbolic as sy

#: Float LP (HiGHS) vs exact rational value: the LP's own feasibility tolerance is 1e-10.
EXACT_VS_LP_TOL = 1e-8

R = sympy.Rational


@st_.composite
def rational_dist(draw: st_.DrawFn, V: int, min_support: int = 1) -> list[sympy.Rational]:
    w = draw(st_.lists(st_.integers(0, 9), min_size=V, max_size=V))
    for i in range(min_support):
        w[i] = max(w[i], 1)
    perm = draw(st_.permutations(range(V)))
    total = sum(w)
    return [R(w[j], total) for j in perm]


def _scheme(kind: str, q: list[sympy.Rational] | list[list[sympy.Rational]], n: int) -> st.Scheme:
    if kind == "iid":
        return st.IID(q, n)
    if kind == "wor":
        return st.WithoutReplacement(q, n)
    if kind == "greedy":
        return st.Greedy(q, n)
    return st.Independent(q)


def _top(q: list[sympy.Rational], k: int) -> list[int]:
    return sorted(range(len(q)), key=lambda i: (-q[i], i))[:k]


def test_import_does_not_load_sympy() -> None:
    code = "import sys, spectheory, spectheory.symbolic; assert 'sympy' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@settings(max_examples=60, derandomize=True)
@given(data=st_.data(), V=st_.integers(2, 4), n=st_.integers(1, 3),
       kind=st_.sampled_from(["iid", "wor", "greedy", "independent"]))
def test_expression_equals_exact_equals_lp(
    data: st_.DataObject, V: int, n: int, kind: str
) -> None:
    if kind in ("wor", "greedy"):
        n = min(n, V)
    ps, qs = sy.symbols(V, "p"), sy.symbols(V, "q")
    p = data.draw(rational_dist(V))
    sub = dict(zip(ps, p, strict=True))
    if kind == "independent":
        qsyms = [sy.symbols(V, f"q{j}_") for j in range(n)]
        qnum = [data.draw(rational_dist(V)) for _ in range(n)]
        for a, b in zip(qsyms, qnum, strict=True):
            sub.update(zip(a, b, strict=True))
        qarg: object = qsyms
    else:
        qnum = data.draw(rational_dist(V, min_support=min(n, V)))
        sub.update(zip(qs, qnum, strict=True))
        qarg = qs
    fixed = _top(qnum, n - 1) if kind == "greedy" else None
    expr = sy.optimal_acceptance_expr(ps, qarg, n, kind, fixed=fixed)
    raw = sy.optimal_acceptance_expr(ps, qarg, n, kind, fixed=fixed, simplify=False)
    scheme = _scheme(kind, qnum, n)
    exact = st.optimal_acceptance(p, scheme, method="exact").value
    lp = st.optimal_acceptance([float(x) for x in p], scheme, method="lp").value
    assert sy.substitute(expr, sub) == R(exact.numerator, exact.denominator)
    assert sy.substitute(raw, sub) == R(exact.numerator, exact.denominator)
    assert abs(float(exact) - lp) <= EXACT_VS_LP_TOL


@settings(max_examples=20, derandomize=True)
@given(data=st_.data(), V=st_.integers(2, 4), n=st_.integers(2, 3),
       kind=st_.sampled_from(["iid", "wor"]))
def test_prefix_form_with_true_order(data: st_.DataObject, V: int, n: int, kind: str) -> None:
    n = min(n, V)
    ps, qs = sy.symbols(V, "p"), sy.symbols(V, "q")
    p = data.draw(rational_dist(V))
    q = data.draw(rational_dist(V, min_support=n))
    order = sorted(range(V), key=lambda i: (0, p[i] / q[i], i) if q[i] > 0 else (1, 0, i))
    expr = sy.optimal_acceptance_expr(ps, qs, n, kind, order=order)
    assert len(expr.args) <= V  # term 1 plus at most V - 1 proper prefixes
    sub = {**dict(zip(ps, p, strict=True)), **dict(zip(qs, q, strict=True))}
    exact = st.optimal_acceptance(p, _scheme(kind, q, n), method="exact", strategy="subsets")
    assert sy.substitute(expr, sub) == R(exact.value.numerator, exact.value.denominator)


@pytest.mark.parametrize("kind", ["iid", "wor", "greedy"])
def test_n1_is_sum_of_min(kind: str) -> None:
    ps, qs = sy.symbols(3, "p"), sy.symbols(3, "q")
    expr = sy.optimal_acceptance_expr(ps, qs, 1, kind)
    assert expr == sum(sympy.Min(a, b) for a, b in zip(ps, qs, strict=True))
    # and it agrees with the raw Min over subsets on the worked example of theory.md section 8
    raw = sy.optimal_acceptance_expr(ps, qs, 1, kind, simplify=False)
    sub = dict(zip(ps + qs, [R(3, 5), R(3, 10), R(1, 10), R(1, 5), R(3, 10), R(1, 2)], strict=True))
    # single draft: 3/5 (theory.md section 8)
    assert sy.substitute(raw, sub) == sy.substitute(expr, sub) == R(3, 5)


def test_section8_values_symbolically() -> None:
    # theory.md section 8: iid 19/25, without replacement 31/35, greedy 4/5.
    p = [R(3, 5), R(3, 10), R(1, 10)]
    q = [R(1, 5), R(3, 10), R(1, 2)]
    assert sy.optimal_acceptance_expr(p, q, 2, "iid") == R(19, 25)
    assert sy.optimal_acceptance_expr(p, q, 2, "wor") == R(31, 35)
    assert sy.optimal_acceptance_expr(p, q, 2, "greedy") == R(4, 5)


TRAP_Q = [R(2, 5), R(2, 5), R(1, 5)]
TRAP_P = [R(3, 10), R(3, 10), R(2, 5)]


@pytest.fixture(scope="module")
def trap_conditions() -> list[sympy.core.relational.Relational]:
    return sy.acceptance_one_conditions(TRAP_Q, 2)


def test_singleton_trap_pair_condition(
    trap_conditions: list[sympy.core.relational.Relational],
) -> None:
    # theory.md section 2: every singleton passes, S = {0, 1} fails (alpha* = 0.96).
    p0, p1, _ = sy.symbols(3, "p")
    pair = sympy.Ge(p0 + p1, R(16, 25), evaluate=False)
    assert pair in trap_conditions
    sub = dict(zip(sy.symbols(3, "p"), TRAP_P, strict=True))
    others = [c for c in trap_conditions if c != pair]
    singles = [c for c in trap_conditions if len(c.lhs.free_symbols) == 1]
    assert len(singles) == 3 and all(bool(sy.substitute(c, sub)) for c in singles)
    # non-redundant: the trap point satisfies every other kept condition and violates the pair
    assert all(bool(sy.substitute(c, sub)) for c in others)
    assert not bool(sy.substitute(pair, sub))


@settings(max_examples=25, derandomize=True)
@given(p=rational_dist(3))
def test_conditions_characterise_alpha_one(
    trap_conditions: list[sympy.core.relational.Relational], p: list[sympy.Rational]
) -> None:
    sub = dict(zip(sy.symbols(3, "p"), p, strict=True))
    holds = all(bool(sy.substitute(c, sub)) for c in trap_conditions)
    alpha = st.optimal_acceptance(p, st.IID(TRAP_Q, 2), method="exact").value
    assert holds == (alpha == 1)


def test_greedy_conditions_reduce() -> None:
    # By hand: greedy n = 2 on q = (1/2, 1/4, 1/8, 1/8) fixes D = {0}, q' = (0, 1/2, 1/4, 1/4) on
    # the rest; alpha* = p(D) + sum min(p, q') = 1 iff p(y) <= q'(y) for y = 1, 2, 3, i.e.
    # p(Omega minus y) >= 1 - q'(y): three conditions, every other one is implied.
    q = [R(1, 2), R(1, 4), R(1, 8), R(1, 8)]
    p = sy.symbols(4, "p")
    conds = sy.acceptance_one_conditions(q, 2, scheme="greedy")
    expected = {
        sympy.Ge(p[0] + p[2] + p[3], R(1, 2), evaluate=False),
        sympy.Ge(p[0] + p[1] + p[3], R(3, 4), evaluate=False),
        sympy.Ge(p[0] + p[1] + p[2], R(3, 4), evaluate=False),
    }
    assert set(conds) == expected
    # unreduced: the 7 sets containing D, minus {0} itself (right-hand side 0)
    assert len(sy.acceptance_one_conditions(q, 2, scheme="greedy", reduce=False)) == 6


def test_two_drafts_closed_form_proof() -> None:
    proof = sy.prove_two_drafts_closed_form(3)
    assert proof.proved is True
    assert len(proof.steps) == 2 + 2**3
    md = proof.to_markdown()
    assert "**Proved.**" in md and "$$" in md


@settings(max_examples=15, derandomize=True)
@given(p=rational_dist(3), q=rational_dist(3))
def test_two_drafts_closed_form_values(p: list[sympy.Rational], q: list[sympy.Rational]) -> None:
    ps, qs = sy.symbols(3, "p"), sy.symbols(3, "q")
    form = sy.two_drafts_closed_form(ps, qs)
    sub = {**dict(zip(ps, p, strict=True)), **dict(zip(qs, q, strict=True))}
    exact = st.optimal_acceptance(p, st.IID(q, 2), method="exact").value
    assert sy.substitute(form, sub) == R(exact.numerator, exact.denominator)


def test_latex_and_markdown(tmp_path: Path) -> None:
    ps, qs = sy.symbols(3, "p"), sy.symbols(3, "q")
    expr = sy.optimal_acceptance_expr(ps, qs, 2)
    tex = sy.latex(expr)
    assert tex.startswith(r"\min") and "q_{0}" in tex
    d = sy.derive_optimal_acceptance(ps, qs, 2, "iid")
    assert d.steps[-1][1].rhs == expr
    out = d.write_markdown(tmp_path / "derivation.md")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Optimal acceptance") and text.count("$$") >= 2 * 6
    assert "Result:" in d.to_text()


def test_errors() -> None:
    with pytest.raises(ValueError, match="MAX_SYMBOLIC_V"):
        sy.optimal_acceptance_expr(sy.symbols(7, "p"), sy.symbols(7, "q"), 2)
    with pytest.raises(ValueError, match="argument 'fixed'"):
        sy.optimal_acceptance_expr(sy.symbols(3, "p"), sy.symbols(3, "q"), 2, "greedy")
    with pytest.raises(ValueError, match="argument 'q'"):
        sy.optimal_acceptance_expr(sy.symbols(3, "p"), [sy.symbols(3, "q")], 2, "independent")
    with pytest.raises(ValueError, match=r"argument 'p'.*not 1"):
        sy.optimal_acceptance_expr([R(1, 2), R(1, 3), R(1, 3)], sy.symbols(3, "q"), 2)
    with pytest.raises(ValueError, match="argument 'order'"):
        sy.optimal_acceptance_expr(sy.symbols(3, "p"), sy.symbols(3, "q"), 2, order=[0, 1])
    with pytest.raises(ValueError, match="argument 'scheme'"):
        sy.optimal_acceptance_expr(sy.symbols(3, "p"), sy.symbols(3, "q"), 2, "hub")
    assert F(1) == 1  # Fractions and sympy Rationals compare equal to ints (used above)


def test_v5_without_replacement_n3() -> None:
    # A larger fixed instance: V = 5, n = 3, checked against the exact solver and the LP.
    V, n = 5, 3
    ps, qs = sy.symbols(V, "p"), sy.symbols(V, "q")
    p = [R(1, 10), R(2, 5), R(1, 5), R(1, 5), R(1, 10)]
    q = [R(1, 2), R(1, 8), R(1, 8), R(1, 8), R(1, 8)]
    expr = sy.optimal_acceptance_expr(ps, qs, n, "wor")
    sub = {**dict(zip(ps, p, strict=True)), **dict(zip(qs, q, strict=True))}
    scheme = st.WithoutReplacement(q, n)
    exact = st.optimal_acceptance(p, scheme, method="exact").value
    lp = st.optimal_acceptance([float(x) for x in p], scheme, method="lp").value
    assert sy.substitute(expr, sub) == R(exact.numerator, exact.denominator)
    assert abs(float(exact) - lp) <= EXACT_VS_LP_TOL
