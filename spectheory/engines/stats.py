r"""One record for every engine (:class:`EngineStats`), the parser dispatch (:func:`parse`) and what
the numbers imply for a chain of drafts (:func:`fit_chain`).

A chain of :math:`k` drafts verified token by token accepts :math:`\tau_{\mathrm{acc}}` draft tokens
with :math:`r_i = \Pr(\tau_{\mathrm{acc}} \ge i) = \prod_{j \le i} c_j`, so
:math:`\mathbb{E}[\tau_{\mathrm{acc}}] = \sum_{i \le k} r_i` (theory section 7). Any chain has
:math:`1 \ge r_1 \ge r_2 \ge \dots \ge 0`; rates that increase with the position are inconsistent
with one chain of fixed length (drafts of varying length, or rates averaged over intervals of
different draft counts) and :func:`fit_chain` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validate import SpecTheoryInputError

__all__ = ["ENGINES", "ChainFit", "EngineStats", "detect", "fit_chain", "parse"]

#: Engines :func:`parse` knows.
ENGINES: tuple[str, ...] = ("vllm", "sglang", "llamacpp")


@dataclass(frozen=True)
class EngineStats:
    r"""What an engine's log or metrics say about speculative decoding, in one convention.

    Attributes
    ----------
    engine, source
        ``"vllm"``, ``"sglang"`` or ``"llamacpp"``, and which format was read (e.g.
        ``"vllm log line"``, ``"vllm prometheus"``).
    mean_acceptance_length
        As the engine defines it (vLLM, SGLang: tokens per target call, the bonus token included;
        llama.cpp prints none: computed as :math:`1 + \text{accepted}/\text{drafts}`).
    mean_accepted
        :math:`\mathbb{E}[\tau_{\mathrm{acc}}]`, accepted draft tokens per target call (no bonus).
    position_rates, conditional_rates
        Unconditional :math:`r_i` and conditional :math:`c_i = r_i/r_{i-1}` (None when the input
        has no per-position data).
    num_drafts, drafted_tokens, accepted_tokens
        Counts (None where the input does not determine them).
    num_speculative_tokens
        :math:`k`, the draft length, when known.
    notes
        Conversions and assumptions made, and warnings.
    """

    engine: str
    source: str
    mean_acceptance_length: float | None
    mean_accepted: float | None
    position_rates: np.ndarray | None
    conditional_rates: np.ndarray | None
    num_drafts: int | None
    drafted_tokens: int | None
    accepted_tokens: int | None
    num_speculative_tokens: int | None = None
    records: int = 1
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted / drafted tokens (what vLLM calls the draft acceptance rate)."""
        if self.accepted_tokens is None or not self.drafted_tokens:
            return None
        return self.accepted_tokens / self.drafted_tokens

    @property
    def tokens_per_call(self) -> float | None:
        return None if self.mean_accepted is None else 1.0 + self.mean_accepted

    def to_dict(self) -> dict[str, Any]:
        def arr(x: Any) -> Any:
            return None if x is None else [float(v) for v in x]

        return {
            "engine": self.engine, "source": self.source,
            "mean_acceptance_length": self.mean_acceptance_length,
            "mean_accepted": self.mean_accepted, "tokens_per_call": self.tokens_per_call,
            "position_rates": arr(self.position_rates),
            "conditional_rates": arr(self.conditional_rates),
            "num_drafts": self.num_drafts, "drafted_tokens": self.drafted_tokens,
            "accepted_tokens": self.accepted_tokens, "acceptance_rate": self.acceptance_rate,
            "num_speculative_tokens": self.num_speculative_tokens, "records": self.records,
            "notes": list(self.notes), **self.extra,
        }


def conditional(r: np.ndarray) -> np.ndarray:
    """:math:`c_i = r_i / r_{i-1}` with :math:`r_0 = 1` (``nan`` where :math:`r_{i-1} = 0`)."""
    prev = np.concatenate(([1.0], r[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(prev > 0, r / np.where(prev > 0, prev, 1.0), np.nan)


def detect(text: str) -> str:
    """Guess the engine from the text (raises when nothing matches)."""
    if "SpecDecoding metrics" in text or "vllm:spec_decode" in text:
        return "vllm"
    if "spec_verify_ct" in text or "accept len:" in text or "sglang:spec_accept" in text:
        return "sglang"
    if ("n_drafted" in text or "draft acceptance rate" in text or "#gen drafts" in text):
        return "llamacpp"
    raise SpecTheoryInputError(
        "argument 'text': no speculative-decoding statistics of vLLM, SGLang or llama.cpp found; "
        "pass --engine to choose the parser"
    )


def parse(text: str, engine: str | None = None) -> EngineStats:
    """Parse an engine's log lines or metrics into :class:`EngineStats`.

    Parameters
    ----------
    text
        Log text (any number of lines; statistics lines are found among other output), a Prometheus
        exposition, or (SGLang) JSON responses / ``meta_info`` objects.
    engine
        ``"vllm"``, ``"sglang"``, ``"llamacpp"``, or None to detect it.
    """
    if not isinstance(text, str):
        raise SpecTheoryInputError(f"argument 'text': expected a string, got {type(text).__name__}")
    eng = detect(text) if engine is None else engine
    if eng == "vllm":
        from .vllm import parse_vllm

        return parse_vllm(text)
    if eng == "sglang":
        from .sglang import parse_sglang

        return parse_sglang(text)
    if eng == "llamacpp":
        from .llamacpp import parse_llamacpp

        return parse_llamacpp(text)
    raise SpecTheoryInputError(
        f"argument 'engine': expected one of {', '.join(ENGINES)}, got {engine!r}"
    )


# ---------------------------------------------------------------------- what the numbers imply
@dataclass(frozen=True)
class ChainFit:
    r"""A per-position conditional profile fitted to an engine's numbers.

    ``conditional[i-1]`` is :math:`c_i` for :math:`i = 1..` ``max_k``: measured where the engine
    reports it, extrapolated beyond by a geometric fit of :math:`\log c_i` over the measured
    positions (or a constant :math:`c` solving :math:`\sum_{i\le k} c^i = \mathbb{E}[\tau]` when only
    the mean is known). ``expected[k-1]`` is :math:`\mathbb{E}[\tau_{\mathrm{acc}}]` for a chain of
    :math:`k` drafts."""

    conditional: np.ndarray
    measured: int
    method: str
    warnings: tuple[str, ...]

    @property
    def expected(self) -> np.ndarray:
        return np.cumsum(np.cumprod(self.conditional))

    def tokens_per_call(self, k: int) -> float:
        return 1.0 + (float(self.expected[k - 1]) if k >= 1 else 0.0)

    def best_k(self, cost: Any) -> tuple[int, np.ndarray]:
        """The chain length maximising tokens per unit time under a
        :class:`spectheory.trees.CostModel` (``k = 0``: no speculation)."""
        ks = np.arange(len(self.conditional) + 1)
        tpc = np.concatenate(([1.0], 1.0 + self.expected))
        rate = tpc / cost.step(ks, ks)
        return int(np.argmax(rate)), rate

    def to_dict(self) -> dict[str, Any]:
        return {"conditional": [float(x) for x in self.conditional], "measured": self.measured,
                "method": self.method, "expected_accepted": [float(x) for x in self.expected],
                "warnings": list(self.warnings)}


def _solve_constant(mean: float, k: int) -> float:
    lo, hi = 0.0, 1.0
    if mean >= k:
        return 1.0
    for _ in range(100):
        c = (lo + hi) / 2
        if sum(c**i for i in range(1, k + 1)) < mean:
            lo = c
        else:
            hi = c
    return (lo + hi) / 2


def fit_chain(stats: EngineStats, max_k: int = 16, k: int | None = None) -> ChainFit:
    """Fit a conditional profile to ``stats`` (see :class:`ChainFit`); ``k`` overrides the engine's
    draft length when the input does not state it (SGLang scheduler lines)."""
    warn: list[str] = []
    r = stats.position_rates
    if r is not None and len(r) > 0:
        r = np.asarray(r, dtype=np.float64)
        if np.any(r < -1e-9) or np.any(r > 1 + 1e-9):
            warn.append("per-position rates outside [0, 1]")
        inc = np.flatnonzero(np.diff(r) > 1e-9)
        if inc.size:
            warn.append(
                "unconditional per-position rates increase at position(s) "
                f"{', '.join(str(i + 2) for i in inc)}: no single chain of fixed length has such "
                "rates (drafts of varying length, or intervals with different draft counts, are "
                "mixed); the fit uses the running minimum"
            )
        r = np.minimum.accumulate(np.clip(r, 0.0, 1.0))
        full = stats.num_speculative_tokens is not None and len(r) == stats.num_speculative_tokens
        if full and stats.mean_accepted is not None and abs(float(r.sum()) - stats.mean_accepted) > 0.02:
            warn.append(
                f"sum of per-position rates {r.sum():.3f} differs from the mean accepted length "
                f"{stats.mean_accepted:.3f}: the rates do not describe the same drafts"
            )
        c = np.nan_to_num(conditional(r), nan=0.0)
        m = len(c)
        if max_k > m:
            ok = (c > 0) & (np.arange(m) >= 0)
            if ok.sum() >= 2:
                i = np.flatnonzero(ok) + 1.0
                slope, icpt = np.polyfit(i, np.log(c[ok]), 1)
                slope = min(slope, 0.0)
                ext = np.exp(icpt + slope * np.arange(m + 1, max_k + 1))
                method = "measured, geometric extrapolation of log c_i"
            else:
                ext = np.full(max_k - m, c[-1] if m else 0.0)
                method = "measured, last rate held constant"
            c = np.concatenate([c, np.clip(ext, 0.0, 1.0)])
        else:
            method = "measured"
        return ChainFit(c[:max_k], min(m, max_k), method, tuple(warn))
    kk = k or stats.num_speculative_tokens
    if stats.mean_accepted is None or kk is None:
        raise SpecTheoryInputError(
            "the input has no per-position rates and no draft length: pass --k (the engine's "
            "number of speculative tokens) to fit a constant acceptance"
        )
    c0 = _solve_constant(stats.mean_accepted, kk)
    warn.append(
        f"no per-position rates: constant conditional acceptance {c0:.4f} fitted to the mean "
        f"accepted length {stats.mean_accepted:.4f} with k = {kk} (Leviathan et al.'s model, which "
        "can be far off on real models)"
    )
    return ChainFit(np.full(max_k, c0), 0, "constant fitted to the mean", tuple(warn))
