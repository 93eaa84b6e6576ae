r"""The one result type returned by every :math:`\alpha^*` solver, and its parts.

Dual sign convention (stated once, used everywhere)
---------------------------------------------------
The explicit LP is solved in its max-flow form over token *sets* :math:`t` of draft tuples
(mass :math:`Q(t)`) and tokens :math:`y` (mass :math:`p(y)`):

.. math::

    \max_{\pi \ge 0} \sum_{t}\sum_{y \in t} \pi(t, y)
    \quad\text{s.t.}\quad \sum_{y\in t} \pi(t,y) \le Q(t),\qquad \sum_{t \ni y} \pi(t,y) \le p(y).

Its dual variables are the **non-negative** multipliers :math:`u_t` (tuple rows) and :math:`v_y`
(token rows):

.. math::

    \min_{u, v \ge 0} \sum_t Q(t)\,u_t + \sum_y p(y)\,v_y
    \quad\text{s.t.}\quad u_t + v_y \ge 1 \ \ \text{for every } y \in t.

An integral optimum is :math:`v = 1_H`, :math:`u_t = 1[t \not\subseteq H]`, with value
:math:`1 + p(H) - Q(H^n)`; the set :math:`H` is the *witness* of every :class:`Result`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Certificate", "Duals", "Plan", "Result", "Status"]


class Status(enum.Enum):
    """Outcome of a solve. Never free text."""

    #: Exact (a theorem, or a primal/dual pair within ``CERT_GAP_TOL``).
    OPTIMAL = "optimal"
    #: The solver finished, but its certificate gap exceeds the tolerance; the value is reported
    #: together with ``info["gap"]``.
    INACCURATE = "inaccurate"
    #: No usable solution (the solver failed after its retries).
    FAILED = "failed"

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


@dataclass(frozen=True, eq=False)
class Plan:
    r"""A primal plan of the max-flow LP: accepted mass on edges (token set :math:`t`, token :math:`y`).

    Attributes
    ----------
    sets
        Token sets of the (merged) draft tuples, ``(T, n)`` int64 padded with ``-1``.
    mass
        :math:`Q(t)` per set, ``(T,)``.
    edge_set, edge_token
        Edge endpoints, ``(E,)`` each: set index and token id.
    flow
        Accepted mass per edge :math:`\pi(t, y) \ge 0`, ``(E,)``.
    """

    sets: np.ndarray
    mass: np.ndarray
    edge_set: np.ndarray
    edge_token: np.ndarray
    flow: np.ndarray

    @property
    def value(self) -> float:
        """Total accepted mass :math:`\\sum \\pi` (the primal objective)."""
        return float(np.sum(self.flow))

    def coupling(self, p: np.ndarray) -> np.ndarray:
        r"""The full transport plan ``(T, V)``: accepted edges plus the rejected mass of each set
        spread over the unmatched target mass (proportionally). Rows sum to ``mass``; columns to
        ``p`` (up to rounding)."""
        p = np.asarray(p, dtype=np.float64)
        T, V = len(self.mass), p.shape[-1]
        pi = np.zeros((T, V))
        np.add.at(pi, (self.edge_set, self.edge_token), self.flow)
        rej = np.maximum(self.mass - pi.sum(axis=1), 0.0)
        res = np.maximum(p - pi.sum(axis=0), 0.0)
        tot = res.sum()
        if tot > 0:
            pi += np.outer(rej, res / tot)
        return pi


@dataclass(frozen=True, eq=False)
class Duals:
    """Dual variables (non-negative; convention in the module docstring): ``u`` per set, ``v`` per
    token."""

    u: np.ndarray
    v: np.ndarray

    def value(self, p: np.ndarray, mass: np.ndarray) -> float:
        return float(np.dot(mass, self.u) + np.dot(p, self.v))


@dataclass(frozen=True, eq=False)
class Result:
    r"""Optimal acceptance :math:`\alpha^*` with its certificate.

    Attributes
    ----------
    value
        :math:`\alpha^*` (float for one position, ``(B,)`` array for a batch). For exact methods it
        equals the witness's subset value :math:`1 + p(H^*) - Q(H^{*n})`.
    witness
        Boolean mask of :math:`H^*` (``(V,)`` or ``(B, V)``), the minimiser of the subset form
        (dual certificate).
    status
        :class:`Status` (worst over the batch).
    method
        The method that ran (``"prefix"``, ``"lp"``, ``"cvxpy"``, ``"subsets"``, ...).
    scheme
        The scheme's short name (``"iid"``, ``"wor"``, ...).
    plan
        Primal plan(s) when an LP ran (one :class:`Plan`, or a tuple of them for a batch).
    duals
        LP dual variables when an LP ran (same layout as ``plan``).
    info
        Solver details: ``time_s``, solver name/version, ``error_bound``, ``gap``, ...
    """

    value: float | np.ndarray
    witness: np.ndarray
    status: Status
    method: str
    scheme: str = ""
    plan: Plan | tuple[Plan, ...] | None = None
    duals: Duals | tuple[Duals, ...] | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_rows(
        cls, value: np.ndarray, witness: np.ndarray, *, single: bool, **fields: Any
    ) -> Result:
        """Build a result from per-row arrays ``value (B,)`` and ``witness (B, V)``; with
        ``single`` the one row is returned as a float and a ``(V,)`` mask."""
        if single:
            return cls(value=float(value[0]), witness=witness[0], **fields)
        return cls(value=value, witness=witness, **fields)

    @property
    def converged(self) -> bool:
        """True when the status is :attr:`Status.OPTIMAL`."""
        return self.status is Status.OPTIMAL

    @property
    def batched(self) -> bool:
        return np.ndim(self.value) > 0

    def witness_tokens(self, row: int | None = None) -> np.ndarray:
        """Token ids of :math:`H^*` (of batch row ``row``)."""
        w = self.witness if row is None else self.witness[row]
        if w.ndim != 1:
            raise ValueError("argument 'row': required for a batched result")
        return np.flatnonzero(w)

    def __float__(self) -> float:
        if self.batched:
            raise TypeError("a batched Result has one value per row; use .value")
        return float(self.value)

    def __repr__(self) -> str:
        if self.batched:
            v = np.asarray(self.value)
            val = f"<{v.shape[0]} values, mean {v.mean():.6g}>"
        else:
            val = f"{float(self.value):.12g}"
        return (
            f"Result(value={val}, status={self.status.value}, method={self.method!r}, "
            f"scheme={self.scheme!r})"
        )


@dataclass(frozen=True)
class Certificate:
    """What :func:`spectheory.certify` recomputed, independently of the solver.

    Attributes
    ----------
    dual_value
        :math:`1 + p(H) - Q(H^n)` of the witness: an upper bound on :math:`\\alpha^*`.
    primal_value
        A recomputed lower bound on :math:`\alpha^*`: the accepted mass of the plan when a plan
        is present; for two independent drafts solved by the quadtree, :math:`1 +` the smallest
        leaf bound of ``info["box_certificate"]`` (:func:`spectheory.certify.check_box_certificate`);
        else None.
    gap
        ``dual_value - primal_value`` (None without a lower bound).
    plan_violation
        Largest violation of the plan's constraints (0 without a plan).
    value_error
        ``|result.value - dual_value|``.
    ok
        Whether the witness reproduces the value and, with a plan, the plan is feasible and closes
        the gap, all within the named tolerances.
    """

    dual_value: float | np.ndarray
    primal_value: float | np.ndarray | None
    gap: float | np.ndarray | None
    plan_violation: float
    value_error: float
    ok: bool
