r"""The main job's report: optimal acceptance, verifier gaps and block efficiency on real positions.

Given per-position target and draft distributions :math:`p_t, q_t` (rows of ``(T, V)`` arrays, e.g.
from :func:`spectheory.models.collect`), :func:`analyze` computes for every draft scheme
(i.i.d., without replacement, greedy) and every number of drafts :math:`n`:

* :math:`\alpha^*_t = \min_H [1 + p_t(H) - Q_t(H^n)]` per position (Hu et al., arXiv 2502.18779;
  SpecTr, arXiv 2310.15141), summarised by its mean and quantiles;
* the exact acceptance of each registered verifier (:mod:`spectheory.verifiers`) and its gap
  :math:`\alpha^*(p_t, Q_{\text{rule}}) - \alpha_{\text{rule},t} \ge 0`
  (via :func:`spectheory.gap`);
* the expected block efficiency of a chain of :math:`\gamma` draft positions,
  :math:`\tau = 1 + \sum_{i \le \gamma} \prod_{j \le i} \alpha_{s+j-1}`, averaged over the start
  positions :math:`s` of the text (teacher forcing: the text itself is the accepted path).

:class:`Analysis` writes JSON, CSV and two PNG plots (:math:`\alpha^*` against :math:`n` per
scheme; the distribution of per-position gaps). Schemes for which no fast exact method is
registered at this vocabulary size are reported as unavailable, with the solver's reason, never
approximated silently.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ._validate import SpecTheoryInputError, as_distribution, check_n

__all__ = [
    "DEFAULT_NS",
    "DEFAULT_QUANTILES",
    "DEFAULT_SCHEMES",
    "Analysis",
    "analyze",
    "block_level",
    "chain_efficiency",
]

#: Numbers of drafts reported by default.
DEFAULT_NS: tuple[int, ...] = (1, 2, 4, 8)
#: Draft schemes reported by default (names of :func:`spectheory.gap`).
DEFAULT_SCHEMES: tuple[str, ...] = ("iid", "wor", "greedy")
#: Quantiles of the per-position summaries.
DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
#: Draft chain length for the block efficiency.
DEFAULT_GAMMA: int = 4
#: Verifiers reported when registered (as in :func:`spectheory.gap`; ``naive`` is not lossless).
DEFAULT_VERIFIERS: tuple[str, ...] = ("sd", "rrs", "rrs_wor", "kseq", "spechub", "greedy", "optimal")
#: Methods that enumerate tuples or subsets: never used by the report at real vocabulary sizes.
_EXPLICIT_METHODS = frozenset({"lp", "cvxpy", "subsets", "exact"})

_SCHEME_LABEL = {"iid": "IID", "wor": "WithoutReplacement", "greedy": "Greedy", "hub": "Hub"}


def _scheme(name: str, q: np.ndarray, n: int) -> Any:
    from .schemes import scheme_from_name

    return scheme_from_name(name, q, n)


def chain_efficiency(alpha: np.ndarray, gamma: int) -> float:
    r"""Mean block efficiency of :math:`\gamma`-position chains along a text.

    .. math::

        \bar\tau = \frac{1}{T - \gamma + 1} \sum_{s=0}^{T-\gamma}
        \Bigl(1 + \sum_{i=1}^{\gamma} \prod_{j=0}^{i-1} \alpha_{s+j}\Bigr)

    (theory section 7; with :func:`spectheory.blocks.block_efficiency` when that module is
    present). Fewer than :math:`\gamma` positions use one shorter chain.
    """
    a = np.asarray(alpha, dtype=np.float64)
    g = min(check_n(gamma, "gamma"), len(a))
    windows = np.lib.stride_tricks.sliding_window_view(a, g)
    try:
        from .blocks import block_efficiency
    except ImportError:  # pragma: no cover - blocks is part of the package

        def block_efficiency(x: Any) -> Any:
            return 1.0 + np.cumprod(x, axis=-1).sum(axis=-1)

    return float(np.mean(block_efficiency(np.clip(windows, 0.0, 1.0))))


def _stats(x: np.ndarray, quantiles: Sequence[float]) -> dict[str, float]:
    out = {"mean": float(np.mean(x))}
    for qq in quantiles:
        out[f"q{round(100 * qq):02d}"] = float(np.quantile(x, qq))
    return out


@dataclass
class Analysis:
    """Everything :func:`analyze` measured.

    Attributes
    ----------
    ns, schemes
        The numbers of drafts and the scheme names.
    alpha_star
        ``(scheme, n)`` -> :math:`\\alpha^*` per position ``(T,)``; missing when unavailable
        (the reason is in ``notes``).
    acceptance, gap, scheme_of
        ``(verifier, n)`` -> acceptance per position, gap per position, and the scheme name whose
        :math:`\\alpha^*` bounds the verifier.
    single_draft
        :math:`\\sum_y \\min(p_t, q_t)` per position.
    gamma
        Chain length of the block efficiencies.
    notes
        What was skipped or capped and why.
    meta
        Provenance (models, text, knobs, sizes, timings).
    blocks
        Block-level rows of :func:`block_level` (empty when not computed).
    bias
        ``(verifier, n)`` -> exact total variation of a lossy rule's output law from ``p`` per
        position (lossy rules have no entry in ``gap``: their acceptance may exceed
        :math:`\alpha^*`).
    """

    ns: tuple[int, ...]
    schemes: tuple[str, ...]
    alpha_star: dict[tuple[str, int], np.ndarray]
    acceptance: dict[tuple[str, int], np.ndarray]
    gap: dict[tuple[str, int], np.ndarray]
    scheme_of: dict[tuple[str, int], str]
    single_draft: np.ndarray
    gamma: int = DEFAULT_GAMMA
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    bias: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)

    @property
    def positions(self) -> int:
        return int(self.single_draft.shape[0])

    def rows(self) -> list[dict[str, Any]]:
        """Summary rows: one per (scheme, n) for :math:`\\alpha^*` and one per (verifier, n).

        Keys: ``kind`` (``"alpha*"`` or ``"verifier"``), ``name``, ``scheme``, ``n``, ``mean``,
        the quantiles, ``gap_mean`` (lossless verifiers; NaN for lossy ones), ``lossless``,
        ``bias_mean`` (mean total variation of the output from p; 0 for lossless rules),
        ``block_efficiency`` (of a lossy rule: tokens per call of a chain that no longer samples
        from p).
        """
        out: list[dict[str, Any]] = []
        qkeys = [f"q{round(100 * q):02d}" for q in self.quantiles]
        for n in self.ns:
            for s in self.schemes:
                a = self.alpha_star.get((s, n))
                row: dict[str, Any] = {"kind": "alpha*", "name": s, "scheme": s, "n": n,
                                       "lossless": True}
                if a is None:
                    row.update({"mean": math.nan, **dict.fromkeys(qkeys, math.nan),
                                "gap_mean": math.nan, "bias_mean": 0.0,
                                "block_efficiency": math.nan})
                else:
                    row.update(_stats(a, self.quantiles))
                    row["gap_mean"] = 0.0
                    row["bias_mean"] = 0.0
                    row["block_efficiency"] = chain_efficiency(a, self.gamma)
                out.append(row)
            for (v, vn), acc in self.acceptance.items():
                if vn != n:
                    continue
                lossy = (v, n) in self.bias
                row = {"kind": "verifier", "name": v, "scheme": self.scheme_of[(v, n)], "n": n,
                       "lossless": not lossy}
                row.update(_stats(acc, self.quantiles))
                if lossy:
                    row["gap_mean"] = math.nan
                    row["bias_mean"] = float(np.mean(self.bias[(v, n)]))
                else:
                    g = self.gap[(v, n)]
                    row["gap_mean"] = (_nz(float(np.mean(g))) if np.all(np.isfinite(g))
                                       else math.nan)
                    row["bias_mean"] = 0.0
                row["block_efficiency"] = chain_efficiency(acc, self.gamma)
                out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``meta`` (with the provenance keys ``spectheory_version`` and
        ``created_utc``, an ISO 8601 UTC timestamp), ``summary`` (:meth:`rows`), ``per_position``,
        ``notes``."""

        def clean(x: Any) -> Any:
            if isinstance(x, float) and not math.isfinite(x):
                return None
            return x

        per: dict[str, Any] = {
            "single_draft": self.single_draft.tolist(),
            "alpha_star": {f"{s}/n={n}": a.tolist() for (s, n), a in self.alpha_star.items()},
            "acceptance": {f"{v}/n={n}": a.tolist() for (v, n), a in self.acceptance.items()},
            "gap": {f"{v}/n={n}": a.tolist() for (v, n), a in self.gap.items()},
            "bias": {f"{v}/n={n}": a.tolist() for (v, n), a in self.bias.items()},
        }
        from . import __version__

        prov = {"spectheory_version": __version__,
                "created_utc": datetime.now(UTC).isoformat(timespec="seconds")}
        return {
            "meta": {**prov, **self.meta, "positions": self.positions, "ns": list(self.ns),
                     "schemes": list(self.schemes), "gamma": self.gamma},
            "summary": [{k: clean(v) for k, v in r.items()} for r in self.rows()],
            "per_position": per,
            "blocks": [{k: clean(v) for k, v in r.items()} for r in self.blocks],
            "notes": list(self.notes),
        }

    def write(self, outdir: str | Path, *, plots: bool = True) -> dict[str, Path]:
        """Write ``report.json``, ``summary.csv`` and (with ``plots``) ``alpha_vs_n.png`` and
        ``gap_distribution.png`` into ``outdir``; return the paths by kind."""
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "report.json", "csv": out / "summary.csv"}
        paths["json"].write_text(json.dumps(self.to_dict(), indent=1, default=str) + "\n")
        rows = self.rows()
        with paths["csv"].open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
        if plots:
            paths.update(self.plot(out))
        return paths

    def plot(self, outdir: str | Path) -> dict[str, Path]:
        """The two PNG plots (matplotlib, Agg backend)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = Path(outdir)
        title = self.meta.get("title", "")
        fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=110)
        colors = {"iid": "C0", "wor": "C1", "greedy": "C2", "hub": "C3"}
        lo, hi = self.quantiles[0], self.quantiles[-1]
        band = f"q{round(100 * lo):02d}-q{round(100 * hi):02d}"
        for s in self.schemes:
            ns = [n for n in self.ns if (s, n) in self.alpha_star]
            if not ns:
                continue
            a = [self.alpha_star[(s, n)] for n in ns]
            ax.plot(ns, [float(np.mean(x)) for x in a], "o-", color=colors.get(s),
                    label=f"α* {_SCHEME_LABEL.get(s, s)} (mean)")
            # the band as its two edges (thin dotted lines) plus a very light fill:
            # overlapping bands of several schemes stay readable
            los = [float(np.quantile(x, lo)) for x in a]
            his = [float(np.quantile(x, hi)) for x in a]
            ax.fill_between(ns, los, his, color=colors.get(s), alpha=0.04, lw=0)
            ax.plot(ns, los, ":", color=colors.get(s), lw=0.9, alpha=0.8,
                    label=f"α* {_SCHEME_LABEL.get(s, s)} {band}")
            ax.plot(ns, his, ":", color=colors.get(s), lw=0.9, alpha=0.8)
        for v, marker in (("rrs", "x"), ("kseq", "+")):
            ns = [n for n in self.ns if (v, n) in self.acceptance]
            if ns:  # drawn in the colour of the scheme whose alpha* bounds it
                s = self.scheme_of[(v, ns[0])]
                ax.plot(ns, [float(np.mean(self.acceptance[(v, n)])) for n in ns],
                        marker=marker, ls="--", color=colors.get(s, "C7"),
                        label=f"{v} verifier, {_SCHEME_LABEL.get(s, s)} drafts (mean)",
                        alpha=0.9)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(self.ns), [str(n) for n in self.ns])
        ax.set_xlabel("number of drafts n")
        ax.set_ylabel(f"acceptance per position (dotted: {band} of α*)")
        ax.set_title(f"Optimal acceptance α* vs n{': ' + title if title else ''}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
        fig.tight_layout()
        p1 = out / "alpha_vs_n.png"
        fig.savefig(p1)
        plt.close(fig)

        panels = [n for n in self.ns if any(k[1] == n for k in self.gap)]
        # a panel where every gap is 0 (n = 1: every lossless rule is optimal with one draft,
        # alpha* = sum min(p, q)) carries no information: left out and said so in the title
        flat = [n for n in panels if all(
            np.all(np.abs(g[np.isfinite(g)]) <= 1e-12)
            for (v, vn), g in self.gap.items() if vn == n)]
        panels = [n for n in panels if n not in flat] or panels
        flat = [n for n in flat if n not in panels]
        fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.2 * max(len(panels), 1), 3.6),
                                 dpi=110, sharey=True, squeeze=False)
        for ax, n in zip(axes[0], panels, strict=False):
            keys = [v for (v, vn) in self.gap if vn == n and np.all(np.isfinite(self.gap[(v, vn)]))]
            data = [self.gap[(v, n)] for v in keys]
            if data:
                ax.boxplot(data, showfliers=True, flierprops={"markersize": 2})
                ax.set_xticks(range(1, len(keys) + 1), keys, rotation=45, fontsize=7)
            ax.set_title(f"n = {n}", fontsize=9)
            ax.grid(alpha=0.3, axis="y")
        axes[0][0].set_ylabel("per-position gap α*(scheme) − acceptance")
        omitted = (f"\n(n = {', '.join(map(str, flat))} left out: every gap is 0, all lossless "
                   "rules reach α*)" if flat else "")
        fig.suptitle(f"Verifier gaps{': ' + title if title else ''}{omitted}", fontsize=9)
        fig.tight_layout()
        p2 = out / "gap_distribution.png"
        fig.savefig(p2)
        plt.close(fig)
        return {"plot_alpha": p1, "plot_gap": p2}


def analyze(
    p: Any,
    q: Any,
    *,
    ns: Sequence[int] = DEFAULT_NS,
    schemes: Sequence[str] = DEFAULT_SCHEMES,
    verifiers: Sequence[str] | None = None,
    lossy: Sequence[str] | None = None,
    gamma: int = DEFAULT_GAMMA,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    meta: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Analysis:
    r"""Optimal acceptance, verifier acceptance and gaps, block efficiency, per position.

    Parameters
    ----------
    p, q
        Target and draft distributions, ``(T, V)`` (one row per position) or ``(V,)``.
    ns
        Numbers of drafts.
    schemes
        Scheme names (``"iid"``, ``"wor"``, ``"greedy"``, ``"hub"``).
    verifiers
        Verifier names; default: the standard lossless rules registered in
        :mod:`spectheory.verifiers` whose exact acceptance is affordable at this size.
    lossy
        Lossy rules (``lossless = False``) reported with their acceptance and exact bias (total
        variation of the output law from ``p``), never with a gap. Default: every registered rule
        of :data:`spectheory.gap.DEFAULT_LOSSY`; ``()`` for none.
    gamma
        Chain length for the block efficiency.
    quantiles
        Quantiles of the summaries.
    meta
        Provenance stored in the report.
    progress
        Called with a short description after each unit of work (one per ``n``).

    Returns
    -------
    Analysis

    Raises
    ------
    ValueError
        Invalid distributions (naming the argument and row), ``n`` or scheme names.
    """
    P = np.atleast_2d(as_distribution(p, "p"))
    Q = np.atleast_2d(as_distribution(q, "q"))
    if P.shape != Q.shape:
        raise SpecTheoryInputError(
            f"argument 'q': shape {Q.shape} does not match the shape {P.shape} of 'p'"
        )
    ns_t = tuple(check_n(n) for n in ns)
    for s in schemes:
        if s not in _SCHEME_LABEL:
            raise SpecTheoryInputError(
                f"argument 'schemes': unknown scheme {s!r} (known: {', '.join(_SCHEME_LABEL)})"
            )
    from . import verifiers as vmod
    from .gap import DEFAULT_LOSSY, LOSSY_NOTE, N_FREE_LOSSY, _rows, lossy_values

    notes: list[str] = []
    bias: dict[tuple[str, int], np.ndarray] = {}
    lossy_names = ([v for v in DEFAULT_LOSSY if v in set(vmod.names())] if lossy is None
                   else list(lossy))
    for v in lossy_names:
        if vmod.get(v).lossless:
            raise SpecTheoryInputError(f"argument 'lossy': {v!r} is a lossless rule")
    n_free: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    alpha: dict[tuple[str, int], np.ndarray] = {}
    acc: dict[tuple[str, int], np.ndarray] = {}
    gaps: dict[tuple[str, int], np.ndarray] = {}
    scheme_of: dict[tuple[str, int], str] = {}
    known = set(vmod.names())
    extra: dict[tuple[str, int], np.ndarray | None] = {}  # alpha* of verifiers' other schemes
    for n in ns_t:
        for s in schemes:
            if s == "hub" and n != 2:
                continue
            a = _alpha_or_note(s, P, Q, n, notes)
            if a is not None:
                alpha[(s, n)] = a
        wanted = list(verifiers) if verifiers is not None else [
            v for v in DEFAULT_VERIFIERS
            if v in known and not (v == "spechub" and n != 2) and not (v == "greedy" and n < 2)
        ]
        for v in wanted:
            rule = vmod.get(v)()
            try:
                if not rule.exact_feasible(P, Q, n):
                    notes.append(f"verifier {v}, n = {n}: exact acceptance too costly at this "
                                 "size (Monte Carlo via spectheory.gap(..., verifiers=[...])); "
                                 "skipped")
                    continue
                s = rule.scheme(Q[0], n).name
                a_rule = _rows(rule, P, Q, n)
            except SpecTheoryInputError as exc:
                notes.append(f"verifier {v}, n = {n}: skipped: {_short(exc, 200)}{_hint(exc)}")
                continue
            scheme_of[(v, n)] = s
            acc[(v, n)] = a_rule
            bound = alpha.get((s, n))
            if bound is None:
                if (s, n) not in extra:
                    extra[(s, n)] = _alpha_or_note(s, P, Q, n, notes)
                bound = extra[(s, n)]
            gaps[(v, n)] = (np.full(P.shape[0], np.nan) if bound is None
                            else bound - a_rule)
        for v in lossy_names:
            rule = vmod.get(v)()
            try:
                scheme_of[(v, n)] = rule.scheme(Q[0], n).name
                if v in N_FREE_LOSSY and v in n_free:
                    acc[(v, n)], bias[(v, n)] = n_free[v]
                else:
                    acc[(v, n)], bias[(v, n)] = lossy_values(rule, P, Q, n)
                    if v in N_FREE_LOSSY:
                        n_free[v] = (acc[(v, n)], bias[(v, n)])
            except SpecTheoryInputError as exc:
                scheme_of.pop((v, n), None)
                notes.append(f"lossy rule {v}, n = {n}: skipped: {_short(exc, 200)}"
                             f"{_hint(exc)}")
        if progress is not None:
            progress(f"n = {n}")
    if bias:
        notes.append(LOSSY_NOTE)
    return Analysis(
        ns=ns_t,
        schemes=tuple(schemes),
        alpha_star=alpha,
        acceptance=acc,
        gap=gaps,
        scheme_of=scheme_of,
        single_draft=np.minimum(P, Q).sum(axis=1),
        gamma=check_n(gamma, "gamma"),
        quantiles=tuple(float(x) for x in quantiles),
        notes=list(dict.fromkeys(notes)),
        meta=dict(meta or {}, V=int(P.shape[1])),
        bias=bias,
    )


def _nz(x: float) -> float:
    """``-0.0`` (and rounding noise below 1e-15 in magnitude) as ``0.0``."""
    return 0.0 if abs(x) < 1e-15 else x


def _alpha_or_note(s: str, P: np.ndarray, Q: np.ndarray, n: int,
                   notes: list[str]) -> np.ndarray | None:
    """alpha* per position of scheme ``s`` with ``n`` drafts, or None with a note saying why
    (no fast exact method at this size; a draft with fewer than ``n`` tokens, e.g. temperature 0
    or top-k truncation, for which the scheme is undefined)."""
    from .api import optimal_acceptance
    from .solvers import registry

    try:
        sch = _scheme(s, Q, n)
    except SpecTheoryInputError as exc:
        notes.append(f"alpha*[{s}], n = {n}: skipped: {_short(exc, 200)}{_hint(exc, s)}")
        return None
    try:
        entry = registry.pick(sch, "auto", "numpy")
    except ValueError as exc:
        notes.append(f"alpha*[{s}], n = {n}: no exact method at V = {P.shape[1]} "
                     f"({_short(exc)})")
        return None
    if entry.method in _EXPLICIT_METHODS:
        notes.append(f"alpha*[{s}], n = {n}: only the explicit {entry.method!r} method "
                     f"applies, too large at V = {P.shape[1]}; skipped")
        return None
    res = optimal_acceptance(P, sch)
    return np.atleast_1d(np.asarray(res.value, dtype=np.float64))


def _hint(exc: Exception, scheme: str | None = None) -> str:
    """What to do about a draft with fewer than ``n`` tokens of positive mass."""
    if "fewer than n" not in str(exc):
        return ""
    drop = f" or drop {scheme!r} from --schemes" if scheme else ""
    return (" (a one-hot or truncated draft, e.g. temperature 0 or top-k, has fewer tokens than "
            f"n: lower --n{drop})")


def _short(exc: Exception, limit: int = 140) -> str:
    msg = str(exc)
    return msg if len(msg) <= limit else msg[:limit] + "..."


# ----------------------------------------------------------------------------- block level
#: Block-level cases of the report: (structure label, verifier). ``gamma`` is filled in.
BLOCK_CASES: tuple[tuple[str, str], ...] = (("chain", "sd"), ("chain", "block"),
                                            ("tree", "rrs_wor"))
#: Tree of the report's block-level section: two drafts without replacement at depths 1 and 2.
BLOCK_TREE_KS: tuple[int, ...] = (2, 2)


def block_level(
    target: Any,
    draft: Any,
    contexts: Sequence[Sequence[int]],
    *,
    gamma: int = 3,
    samples: int = 2,
    seed: int = 0,
    level: float = 0.99,
    cases: Sequence[tuple[str, str]] = BLOCK_CASES,
    progress: Callable[[Any], None] | None = None,
) -> list[dict[str, Any]]:
    r"""Accepted draft tokens per target call, block level, averaged over contexts.

    For every case (``("chain", rule)``: :class:`~spectheory.blocks.Chain` ``(gamma)``;
    ``("tree", rule)``: ``Tree.branching(BLOCK_TREE_KS, "wor")``) and every context,
    :func:`spectheory.blocks.block_acceptance` with ``method="mc"`` and ``samples`` draws runs the
    rule on realised drafts. The reported ``mean`` is the average over the contexts of the
    per-context means (each an unbiased estimate), with standard error
    :math:`\sqrt{\sum_k \mathrm{se}_k^2} / K` and a normal interval at ``level``. Unlike the
    per-position tables, the accepted tokens here are drawn from the models (the block's later
    positions are conditioned on drafted tokens, not on the text).

    Parameters
    ----------
    target, draft
        Conditional models ``context -> (V,)`` (:mod:`spectheory.blocks.real` wrappers).
    contexts
        The contexts (e.g. the prefixes of the analysed text ending at each analysed position).
    gamma, samples, seed, level
        Chain length, Monte Carlo draws per context (>= 2), seed, confidence level.
    cases
        ``(structure, verifier)`` pairs.
    progress
        Called after every (case, context).

    Returns
    -------
    list of dict
        One row per case: ``structure``, ``verifier``, ``mean`` (accepted draft tokens per call),
        ``tokens_per_call``, ``stderr``, ``low``, ``high`` (interval of ``mean``), ``level``,
        ``contexts``, ``samples`` (total draws), ``seconds``, or ``error`` when the rule does not
        apply or is not available.
    """
    import time

    from .blocks import Chain, Tree, block_acceptance
    from .verifiers.base import z_value

    gamma = check_n(gamma, "gamma")
    samples = check_n(samples, "samples")
    if samples < 2:
        raise SpecTheoryInputError(f"argument 'samples': need at least 2, got {samples}")
    ctxs = [tuple(int(t) for t in c) for c in contexts]
    if not ctxs:
        raise SpecTheoryInputError("argument 'contexts': no contexts")
    z = z_value(level)
    rows: list[dict[str, Any]] = []
    for ci, (kind, rule) in enumerate(cases):
        if kind == "chain":
            drafts: Any = Chain(gamma)
        elif kind == "tree":
            drafts = Tree.branching(BLOCK_TREE_KS, "wor")
        else:
            raise SpecTheoryInputError(f"argument 'cases': unknown structure {kind!r}")
        label = (f"Chain(gamma={gamma})" if kind == "chain"
                 else f"Tree.branching({BLOCK_TREE_KS}, 'wor')")
        row: dict[str, Any] = {"structure": label, "verifier": rule}
        t0 = time.perf_counter()
        means, var = [], 0.0
        try:
            for k, ctx in enumerate(ctxs):
                r = block_acceptance(target, draft, drafts, rule, context=ctx, method="mc",
                                     samples=samples, seed=seed + 7919 * ci + k, level=level)
                means.append(r.mean)
                var += r.stderr**2
                if progress is not None:
                    progress(None)
        except (ValueError, ImportError) as exc:
            row["error"] = _short(exc)
            rows.append(row)
            continue
        mean = float(np.mean(means))
        se = math.sqrt(var) / len(means)
        row.update({"mean": mean, "tokens_per_call": mean + 1.0, "stderr": se,
                    "low": mean - z * se, "high": mean + z * se, "level": level,
                    "contexts": len(means), "samples": samples * len(means),
                    "seconds": round(time.perf_counter() - t0, 2)})
        rows.append(row)
    return rows
