"""Solvers for alpha*: sorted prefix, explicit LP (HiGHS / cvxpy), brute-force subsets, and the
modules registered in :data:`spectheory.solvers.registry.SOLVER_MODULES`."""

from .registry import SOLVER_MODULES, SolverEntry, entries, register

__all__ = ["SOLVER_MODULES", "SolverEntry", "entries", "register"]
