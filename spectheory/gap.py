r"""The verifier-gap report: how far deployed verification rules fall below :math:`\alpha^*`.

For each draft scheme :math:`Q` (i.i.d., without replacement, greedy, ...) the optimal acceptance
:math:`\alpha^*(p, Q) = \min_H [1 + p(H) - Q(H^n)]` bounds the acceptance of every lossless verifier
for that scheme (Hu et al., arXiv 2502.18779; Thomas & Pal, arXiv 2511.15898). The *gap* of a rule
is :math:`\alpha^*(p, Q_{\text{rule}}) - \alpha_{\text{rule}} \ge 0`, computed per position of a
batch ``(B, V)`` and summarised by its mean and quantiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._validate import SpecTheoryInputError, check_n

__all__ = ["DEFAULT_QUANTILES", "GapReport", "gap"]

#: Quantiles reported in the summaries.
DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)

#: Longest solver message quoted in a report note.
NOTE_CHARS: int = 110

#: Scheme names accepted by ``schemes=`` and the classes they build.
_SCHEMES = ("iid", "wor", "greedy", "hub")

#: Verifiers shown by default (those that apply to the given ``n``). Other registered rules
#: (``"khisti"``, ``"optimal"``) are added by name.
_DEFAULT_VERIFIERS = ("sd", "rrs", "rrs_wor", "kseq", "spechub", "greedy")


def _rows(v: Any, P: np.ndarray, Q: np.ndarray, n: int) -> np.ndarray:
    """Acceptance per row: one batched call when the rule takes ``(B, V)``, else row by row."""
    try:
        out = np.atleast_1d(np.asarray(v.acceptance(P, Q, n), dtype=np.float64))
        if out.shape == (P.shape[0],):
            return out
    except ValueError:
        pass
    return np.array([float(v.acceptance(P[b], Q[b], n)) for b in range(P.shape[0])])


def _build_scheme(name: str, q: np.ndarray, n: int) -> Any:
    from .schemes import scheme_from_name

    return scheme_from_name(name, q, n)


@dataclass(frozen=True)
class GapReport:
    r"""Result of :func:`gap`.

    Attributes
    ----------
    n
        Number of drafts.
    alpha_star
        Scheme name -> :math:`\alpha^*` per position, shape ``(B,)`` (NaN where no exact method
        applies; the reason is in ``notes``).
    acceptance
        Verifier name -> acceptance per position ``(B,)``.
    stderr
        Verifier name -> standard error per position (0 for exact values, positive where the
        acceptance is a Monte Carlo estimate).
    scheme_of
        Verifier name -> the scheme name whose :math:`\alpha^*` bounds it.
    notes
        Human-readable remarks (estimated values, schemes without an exact method).
    """

    n: int
    alpha_star: dict[str, np.ndarray]
    acceptance: dict[str, np.ndarray]
    stderr: dict[str, np.ndarray]
    scheme_of: dict[str, str]
    notes: list[str] = field(default_factory=list)
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES

    @property
    def gap(self) -> dict[str, np.ndarray]:
        r"""Verifier name -> :math:`\alpha^*(\text{its scheme}) - \text{acceptance}`, per
        position."""
        return {
            v: self.alpha_star[s] - self.acceptance[v] for v, s in self.scheme_of.items()
        }

    @property
    def batch_size(self) -> int:
        return int(next(iter(self.alpha_star.values())).shape[0])

    def to_dict(self) -> dict[str, np.ndarray]:
        """A flat dict of arrays (one column per quantity, one row per position)."""
        out: dict[str, np.ndarray] = {"position": np.arange(self.batch_size)}
        for s, a in self.alpha_star.items():
            out[f"alpha_star[{s}]"] = a
        gaps = self.gap
        for v, a in self.acceptance.items():
            out[f"acceptance[{v}]"] = a
            out[f"gap[{v}]"] = gaps[v]
        return out

    def records(self) -> list[dict[str, Any]]:
        """Tidy records: one per (position, verifier) with scheme, alpha*, acceptance, gap."""
        gaps = self.gap
        recs: list[dict[str, Any]] = []
        for b in range(self.batch_size):
            for v, s in self.scheme_of.items():
                recs.append(
                    {
                        "position": b,
                        "n": self.n,
                        "verifier": v,
                        "scheme": s,
                        "alpha_star": float(self.alpha_star[s][b]),
                        "acceptance": float(self.acceptance[v][b]),
                        "stderr": float(self.stderr[v][b]),
                        "gap": float(gaps[v][b]),
                    }
                )
        return recs

    def summary(self) -> dict[str, dict[str, float]]:
        """Per verifier and per scheme: mean and the quantiles over positions."""
        out: dict[str, dict[str, float]] = {}

        def stats(x: np.ndarray) -> dict[str, float]:
            d = {"mean": float(np.mean(x))}
            for qq in self.quantiles:
                d[f"q{round(100 * qq):02d}"] = float(np.quantile(x, qq))
            return d

        for s, a in self.alpha_star.items():
            if np.all(np.isfinite(a)):
                out[f"alpha*[{s}]"] = stats(a)
        gaps = self.gap
        for v in self.scheme_of:
            out[f"acc[{v}]"] = stats(self.acceptance[v])
            if np.all(np.isfinite(gaps[v])):
                out[f"gap[{v}]"] = stats(gaps[v])
        return out

    def table(self) -> str:
        """A plain-text table: one row per verifier (mean acceptance, scheme, mean alpha*, gap
        mean and quantiles over positions)."""
        qs = [f"gap q{round(100 * q):02d}" for q in self.quantiles]
        head = ["verifier", "scheme", "acceptance", "alpha*", "gap mean", *qs]
        rows = []
        gaps = self.gap
        for v, s in self.scheme_of.items():
            g = gaps[v]
            est = "~" if np.any(self.stderr[v] > 0) else ""
            cells = [
                v,
                s,
                f"{est}{np.mean(self.acceptance[v]):.6f}",
                f"{np.mean(self.alpha_star[s]):.6f}",
                f"{np.mean(g):.6f}",
                *(f"{np.quantile(g, q):.6f}" for q in self.quantiles),
            ]
            rows.append(cells)
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
        out = [f"n = {self.n}, positions = {self.batch_size}", line.rstrip(), "-" * len(line)]
        out += [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]
        out += [f"note: {m}" for m in self.notes]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


def gap(
    p: Any,
    q: Any,
    n: int,
    verifiers: Sequence[str] | None = None,
    schemes: Sequence[str] | None = None,
    *,
    mc_samples: int = 2000,
    seed: int = 0,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
) -> GapReport:
    r"""Optimal acceptance per draft scheme, each verifier's acceptance, and its gap.

    Parameters
    ----------
    p, q
        Target and draft distributions, ``(V,)`` or ``(B, V)`` (one row per decoding position).
    n
        Number of drafts.
    verifiers
        Registered verifier names (:func:`spectheory.verifiers.names`). Default: every standard
        rule that applies to ``n`` (``"sd"``, ``"rrs"``, ``"rrs_wor"``, ``"kseq"``, ``"spechub"``
        only for ``n = 2``, ``"greedy"`` for ``n >= 2``); name ``"khisti"`` / ``"optimal"`` to add
        them. ``"naive"`` is never a default (it is not lossless, its "gap" is meaningless).
    schemes
        Scheme names among ``"iid"``, ``"wor"``, ``"greedy"``, ``"hub"`` whose :math:`\alpha^*`
        to report; the schemes of the chosen verifiers are always added.
    mc_samples, seed
        Monte Carlo budget (per position) for a verifier whose exact acceptance is too costly at
        this size (RRS without replacement, ``n >= 3`` at large ``V``); such values are marked
        ``~`` in the table and carry a standard error.
    quantiles
        Quantiles of the per-position summaries.

    Returns
    -------
    GapReport
        ``table()`` / ``str()``, ``to_dict()``, ``records()``, ``summary()``, ``gap``.

    Raises
    ------
    ValueError
        Invalid ``p``/``q``/``n``, an unknown verifier or scheme name.

    Examples
    --------
    >>> import spectheory as st
    >>> r = st.gap([0.6, 0.3, 0.1], [0.2, 0.3, 0.5], 2, verifiers=["rrs", "rrs_wor"])
    >>> round(float(r.gap["rrs"][0]), 12), round(float(r.gap["rrs_wor"][0]), 12)
    (0.08, 0.125714285714)
    """
    from . import verifiers as vmod
    from .api import optimal_acceptance
    from .verifiers.sd import validate_pair

    n = check_n(n)
    pv, qv = validate_pair(p, q)
    P, Q = np.atleast_2d(pv), np.atleast_2d(qv)
    B = P.shape[0]
    if verifiers is None:
        known = set(vmod.names())
        verifiers = [
            v
            for v in _DEFAULT_VERIFIERS
            if v in known
            and not (v == "spechub" and n != 2)
            and not (v == "greedy" and n < 2)
        ]
    else:
        verifiers = list(verifiers)
    for s in schemes or ():
        if s not in _SCHEMES:
            raise SpecTheoryInputError(
                f"argument 'schemes': unknown scheme {s!r} (known: {', '.join(_SCHEMES)})"
            )
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    acc: dict[str, np.ndarray] = {}
    err: dict[str, np.ndarray] = {}
    scheme_of: dict[str, str] = {}
    for name in verifiers:
        v = vmod.get(name)()
        scheme_of[name] = v.scheme(Q[0], n).name
        if v.exact_feasible(P, Q, n):
            acc[name] = _rows(v, P, Q, n)
            err[name] = np.zeros(B)
        else:
            ests = [v.acceptance_mc(P[b], Q[b], n, rng, mc_samples) for b in range(B)]
            acc[name] = np.array([e.mean for e in ests])
            err[name] = np.array([e.stderr for e in ests])
            notes.append(
                f"{name}: Monte Carlo estimate ({mc_samples} paths per position; exact "
                "enumeration too costly at this size)"
            )
    wanted = list(dict.fromkeys([*(schemes or ()), *scheme_of.values()]))
    alpha: dict[str, np.ndarray] = {}
    for s in wanted:
        try:
            res = optimal_acceptance(P, _build_scheme(s, Q, n))
            alpha[s] = np.atleast_1d(np.asarray(res.value, dtype=np.float64))
        except ValueError as exc:
            if s not in scheme_of.values():
                raise
            alpha[s] = np.full(B, np.nan)
            msg = str(exc)
            if len(msg) > NOTE_CHARS:
                msg = msg[:NOTE_CHARS] + "..."
            notes.append(f"alpha*[{s}] unavailable: {msg}")
    return GapReport(
        n=n,
        alpha_star=alpha,
        acceptance=acc,
        stderr=err,
        scheme_of=scheme_of,
        notes=notes,
        quantiles=tuple(float(x) for x in quantiles),
    )


