r"""The verifier-gap report: how far deployed verification rules fall below :math:`\alpha^*`.

For each draft scheme :math:`Q` (i.i.d., without replacement, greedy, ...) the optimal acceptance
:math:`\alpha^*(p, Q) = \min_H [1 + p(H) - Q(H^n)]` bounds the acceptance of every lossless verifier
for that scheme (Hu et al., arXiv 2502.18779; Thomas & Pal, arXiv 2511.15898). The *gap* of a rule
is :math:`\alpha^*(p, Q_{\text{rule}}) - \alpha_{\text{rule}} \ge 0`, computed per position of a
batch ``(B, V)`` and summarised by its mean and quantiles.

Lossy rules (registered with ``lossless = False``: ``naive``, ``exact_match``, ``onehot_draft``,
``typical``, ``ensemble``; :mod:`spectheory.verifiers.lossy`) are shown next to the lossless ones
with their *bias*, the exact total variation :math:`\mathrm{TV}(o, p) = \tfrac12 \sum_y |o(y) -
p(y)|` of their output law :math:`o` from :math:`p`. Their acceptance may exceed :math:`\alpha^*`
(that is what they buy with the bias), so no gap is reported for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._validate import SpecTheoryInputError, check_n

__all__ = ["DEFAULT_LOSSY", "DEFAULT_QUANTILES", "GapReport", "gap"]

#: Quantiles reported in the summaries.
DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)

#: Longest solver message quoted in a report note.
NOTE_CHARS: int = 110

#: Scheme names accepted by ``schemes=`` and the classes they build.
_SCHEMES = ("iid", "wor", "greedy", "hub")

#: Verifiers shown by default (those that apply to the given ``n``). Other registered rules
#: (``"khisti"``, ``"optimal"``) are added by name.
_DEFAULT_VERIFIERS = ("sd", "rrs", "rrs_wor", "kseq", "spechub", "greedy")

#: Lossy rules shown by default (with their bias, never with a gap).
DEFAULT_LOSSY = ("naive", "exact_match", "onehot_draft", "typical", "ensemble")

#: Lossy rules whose output law and acceptance do not depend on ``n`` (they verify the first
#: draft only; :mod:`spectheory.verifiers.lossy`): computed once for several ``n``.
N_FREE_LOSSY = frozenset({"onehot_draft", "ensemble"})


def lossy_values(v: Any, P: np.ndarray, Q: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact acceptance and bias (TV of the output law from ``p``) per row of a lossy rule."""
    acc = _rows(v, P, Q, n)
    if hasattr(v, "bias"):
        tv = np.atleast_1d(np.asarray(v.bias(P, Q, n), dtype=np.float64))
    else:
        tv = 0.5 * np.abs(np.atleast_2d(v.output_law(P, Q, n)) - P).sum(axis=-1)
    return acc, np.maximum(tv, 0.0)


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
        Verifier name -> the scheme name whose :math:`\alpha^*` bounds it (for a lossy rule: the
        scheme its drafts come from; it bounds nothing).
    notes
        Human-readable remarks (estimated values, schemes without an exact method).
    bias
        Lossy verifier name -> exact total variation of its output law from ``p`` per position
        (lossless verifiers are not in it: their bias is 0).
    """

    n: int
    alpha_star: dict[str, np.ndarray]
    acceptance: dict[str, np.ndarray]
    stderr: dict[str, np.ndarray]
    scheme_of: dict[str, str]
    notes: list[str] = field(default_factory=list)
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    bias: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def gap(self) -> dict[str, np.ndarray]:
        r"""Lossless verifier name -> :math:`\alpha^*(\text{its scheme}) - \text{acceptance}`,
        per position (lossy rules have no gap: see :attr:`bias`)."""
        return {
            v: self.alpha_star[s] - self.acceptance[v]
            for v, s in self.scheme_of.items() if v not in self.bias
        }

    def lossless(self, verifier: str) -> bool:
        """Whether ``verifier`` keeps the target's distribution (bias 0)."""
        return verifier not in self.bias

    @property
    def batch_size(self) -> int:
        first = next(iter({**self.alpha_star, **self.acceptance}.values()))
        return int(first.shape[0])

    def to_dict(self) -> dict[str, np.ndarray]:
        """A flat dict of arrays (one column per quantity, one row per position)."""
        out: dict[str, np.ndarray] = {"position": np.arange(self.batch_size)}
        for s, a in self.alpha_star.items():
            out[f"alpha_star[{s}]"] = a
        gaps = self.gap
        for v, a in self.acceptance.items():
            out[f"acceptance[{v}]"] = a
            if v in gaps:
                out[f"gap[{v}]"] = gaps[v]
            else:
                out[f"bias[{v}]"] = self.bias[v]
        return out

    def records(self) -> list[dict[str, Any]]:
        """Tidy records: one per (position, verifier) with scheme, alpha*, acceptance, gap,
        ``lossless`` and ``bias`` (lossy rules: gap and alpha* NaN, bias their TV from p)."""
        gaps = self.gap
        recs: list[dict[str, Any]] = []
        for b in range(self.batch_size):
            for v, s in self.scheme_of.items():
                lossy = v in self.bias
                recs.append(
                    {
                        "position": b,
                        "n": self.n,
                        "verifier": v,
                        "scheme": s,
                        "alpha_star": (float(self.alpha_star[s][b]) if s in self.alpha_star
                                       else float("nan")),
                        "acceptance": float(self.acceptance[v][b]),
                        "stderr": float(self.stderr[v][b]),
                        "gap": float("nan") if lossy else float(gaps[v][b]),
                        "lossless": not lossy,
                        "bias": float(self.bias[v][b]) if lossy else 0.0,
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
            if v in self.bias:
                out[f"bias[{v}]"] = stats(self.bias[v])
            elif np.all(np.isfinite(gaps[v])):
                out[f"gap[{v}]"] = stats(gaps[v])
        return out

    def table(self) -> str:
        """A plain-text table: one row per verifier (mean acceptance, scheme, mean alpha*, gap
        mean and quantiles over positions, bias); lossy rules are marked and show their bias
        (mean total variation of the output from p) instead of a gap."""
        qs = [f"gap q{round(100 * q):02d}" for q in self.quantiles]
        head = ["verifier", "scheme", "acceptance", "alpha*", "gap mean", *qs, "bias (TV)"]
        rows = []
        gaps = self.gap
        for v, s in self.scheme_of.items():
            est = "~" if np.any(self.stderr[v] > 0) else ""
            a = self.alpha_star.get(s)
            star = "n/a" if a is None else _num(np.mean(a))
            if v in self.bias:
                cells = [f"{v} (lossy)", s, f"{est}{_num(np.mean(self.acceptance[v]))}", star,
                         "lossy", *("-" for _ in self.quantiles),
                         _num(np.mean(self.bias[v]))]
            else:
                g = gaps[v]
                cells = [
                    v,
                    s,
                    f"{est}{_num(np.mean(self.acceptance[v]))}",
                    star,
                    _num(np.mean(g)),
                    *(_num(np.quantile(g, q)) for q in self.quantiles),
                    "0",
                ]
            rows.append(cells)
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
        out = [f"n = {self.n}, positions = {self.batch_size}", line.rstrip(), "-" * len(line)]
        out += [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]
        out += [f"note: {m}" for m in self.notes]
        if self.bias:
            out.append("note: " + LOSSY_NOTE)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


#: What the lossy rows of a table mean.
LOSSY_NOTE = ("lossy rules do not keep the target's distribution: bias (TV) is the exact total "
              "variation of their output law from p; their acceptance may exceed alpha* (the "
              "bound holds for lossless rules only), so no gap is reported for them")


def _num(x: Any, digits: int = 6) -> str:
    """A fixed-point number without a negative zero (``-0.000000`` -> ``0.000000``)."""
    out = f"{float(x):.{digits}f}"
    return out[1:] if out.startswith("-") and float(out) == 0 else out


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
    lossy: Sequence[str] | None = None,
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
        them. Lossy rules named here are reported like those of ``lossy``.
    schemes
        Scheme names among ``"iid"``, ``"wor"``, ``"greedy"``, ``"hub"`` whose :math:`\alpha^*`
        to report; the schemes of the chosen verifiers are always added.
    mc_samples, seed
        Monte Carlo budget (per position) for a verifier whose exact acceptance is too costly at
        this size (RRS without replacement, ``n >= 3`` at large ``V``); such values are marked
        ``~`` in the table and carry a standard error.
    quantiles
        Quantiles of the per-position summaries.
    lossy
        Lossy rules (``lossless = False``) to show with their bias, never with a gap. Default:
        every registered one of ``DEFAULT_LOSSY`` when ``verifiers`` is not given, none
        otherwise; ``()`` for none. A lossy rule that does not apply (e.g. ``onehot_draft``
        with fewer than ``n`` draft tokens) is skipped with a note.

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
        lossy = [v for v in DEFAULT_LOSSY if v in known] if lossy is None else list(lossy)
    else:
        verifiers = list(verifiers)
        lossy = [] if lossy is None else list(lossy)
    for name in lossy:
        if vmod.get(name).lossless:
            raise SpecTheoryInputError(f"argument 'lossy': {name!r} is a lossless rule")
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
    bias: dict[str, np.ndarray] = {}
    for name in [*verifiers, *(v for v in lossy if v not in verifiers)]:
        v = vmod.get(name)()
        if not v.lossless:
            try:
                scheme_of[name] = v.scheme(Q[0], n).name
                acc[name], bias[name] = lossy_values(v, P, Q, n)
            except SpecTheoryInputError as exc:
                scheme_of.pop(name, None)
                notes.append(f"{name} (lossy): skipped: {_clip(str(exc))}")
                continue
            err[name] = np.zeros(B)
            continue
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
    wanted = list(dict.fromkeys([*(schemes or ()),
                                 *(s for v, s in scheme_of.items() if v not in bias)]))
    alpha: dict[str, np.ndarray] = {}
    for s in wanted:
        try:
            res = optimal_acceptance(P, _build_scheme(s, Q, n))
            alpha[s] = np.atleast_1d(np.asarray(res.value, dtype=np.float64))
        except ValueError as exc:
            if s not in scheme_of.values():
                raise
            alpha[s] = np.full(B, np.nan)
            notes.append(f"alpha*[{s}] unavailable: {_clip(str(exc))}")
    return GapReport(
        n=n,
        alpha_star=alpha,
        acceptance=acc,
        stderr=err,
        scheme_of=scheme_of,
        notes=notes,
        quantiles=tuple(float(x) for x in quantiles),
        bias=bias,
    )


def _clip(msg: str) -> str:
    return msg if len(msg) <= NOTE_CHARS else msg[:NOTE_CHARS] + "..."


