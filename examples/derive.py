"""Derive optimal acceptance symbolically, as a user would in a script.

Prints (as text and as LaTeX) alpha* for V = 3 tokens and n = 2 drafts -- i.i.d., without
replacement, greedy -- checks one instance against the exact rational solver, lists the conditions
on p under which alpha* = 1 (including the singleton-check trap), and proves Khisti et al.'s
two-draft closed form. Pass a path to also write the i.i.d. derivation as Markdown.

Run: ``python examples/derive.py [derivation.md]``
"""

from __future__ import annotations

import sys
from fractions import Fraction

import sympy

import spectheory as st
from spectheory import symbolic as sy


def main(argv: list[str]) -> None:
    V, n = 3, 2
    p = sy.symbols(V, "p")
    q = sy.symbols(V, "q")

    print("alpha* as a Min over subset terms 1 + p(H) - Q(H^n)  (V = 3, n = 2)\n")
    for scheme in ("iid", "wor"):
        expr = sy.optimal_acceptance_expr(p, q, n, scheme)
        print(f"[{scheme}]  {expr}")
        print(f"[{scheme}]  LaTeX: {sy.latex(expr)}\n")
    greedy = sy.optimal_acceptance_expr(p, q, n, "greedy", fixed=[2])
    print(f"[greedy, D = {{2}}]  {greedy}")
    print(f"[greedy]  LaTeX: {sy.latex(greedy)}\n")
    prefix = sy.optimal_acceptance_expr(p, q, n, "iid", order=[2, 1, 0])
    print(f"[iid, ratio order p2/q2 <= p1/q1 <= p0/q0]  {prefix}\n")
    print(f"[n = 1]  {sy.optimal_acceptance_expr(p, q, 1)}\n")

    # Check one instance (theory reference, worked example): symbolic value == exact solver.
    pv = [Fraction(3, 5), Fraction(3, 10), Fraction(1, 10)]
    qv = [Fraction(1, 5), Fraction(3, 10), Fraction(1, 2)]
    values = dict(zip(p + q, pv + qv, strict=True))
    sym = sy.substitute(sy.optimal_acceptance_expr(p, q, n, "iid"), values)
    exact = st.optimal_acceptance(pv, st.IID(qv, n), method="exact")
    print(f"p = (3/5, 3/10, 1/10), q = (1/5, 3/10, 1/2): symbolic {sym}, exact solver "
          f"{exact.value}, witness H* = {exact.witness_tokens().tolist()}\n")

    print("alpha* = 1 iff (non-redundant conditions), q = (2/5, 2/5, 1/5), n = 2:")
    trap_q = [sympy.Rational(2, 5), sympy.Rational(2, 5), sympy.Rational(1, 5)]
    for cond in sy.acceptance_one_conditions(trap_q, n):
        print(f"    {cond!s:<28} LaTeX: {sy.latex(cond)}")
    print("  (p = (.3, .3, .4) passes every single-token condition and fails p0 + p1 >= 16/25)\n")
    print("alpha* = 1 iff, symbolic q:")
    for cond in sy.acceptance_one_conditions(q, n):
        print(f"    {cond}")

    proof = sy.prove_two_drafts_closed_form(3)
    print(f"\nKhisti's two-draft closed form equals the subset form (V = 3): {proof.proved}")
    print(f"    {sy.two_drafts_closed_form()}")

    if len(argv) > 1:
        path = sy.derive_optimal_acceptance(p, q, n, "iid").write_markdown(argv[1])
        print(f"\nwrote the derivation to {path}")


if __name__ == "__main__":
    main(sys.argv)
