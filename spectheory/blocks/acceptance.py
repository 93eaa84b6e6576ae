r"""Exact and Monte Carlo block-level quantities of a verifier on a draft structure.

Conventions (stated once, theory section 10): :math:`\tau_{\mathrm{acc}}` counts the **accepted
draft tokens** of one target call; tokens per call are :math:`\tau_{\mathrm{acc}} + 1` (the
correction or bonus token). ``position_rates[i-1]`` is the unconditional
:math:`r_i = \Pr(\tau_{\mathrm{acc}} \ge i)` that vLLM and llama.cpp log;
``conditional_rates[i-1]`` is :math:`c_i = r_i / r_{i-1}` (``nan`` where :math:`r_{i-1} = 0`).

``method="exact"`` enumerates every realisation of the draft structure and the verifier's exact
conditional output law on it (:meth:`~spectheory.blocks.verify.BlockVerifier.output_law`), so it
is exact in float64 and in Fractions when the models give Fractions. ``method="mc"`` runs the
verifier's sampler on drawn realisations and reports a normal confidence interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any

import numpy as np

from .._validate import SpecTheoryInputError
from ..verifiers.base import z_value
from .problem import BlockProblem, Model
from .verify import BlockVerifier, block_verifier

__all__ = [
    "BlockAcceptance",
    "BlockMethod",
    "block_acceptance",
    "block_output_law",
    "lossless_gap",
    "sequence_law",
]


class BlockMethod(StrEnum):
    """How a block quantity was computed."""

    EXACT = "exact"
    MC = "mc"


@dataclass(frozen=True)
class BlockAcceptance:
    r"""Accepted draft tokens per target call of one verifier on one draft structure.

    Attributes
    ----------
    mean
        :math:`\mathbb{E}[\tau_{\mathrm{acc}}]`, accepted draft tokens per call (no bonus token).
    tokens_per_call
        ``mean + 1``.
    length_pmf
        ``length_pmf[k] = Pr(tau_acc = k)`` for ``k = 0..depth`` (float64).
    position_rates
        Unconditional :math:`r_i = \Pr(\tau_{\mathrm{acc}} \ge i)`, ``i = 1..depth``.
    conditional_rates
        :math:`c_i = r_i / r_{i-1}` (``r_0 = 1``; ``nan`` where :math:`r_{i-1} = 0`).
    stderr
        Standard error of ``mean`` (0 when exact).
    method
        :class:`BlockMethod`.
    low, high
        Confidence interval of ``mean`` at ``level`` (equal to ``mean`` when exact).
    exact
        For exact computations on Fraction models: ``{"mean": Fraction, "length_pmf":
        [Fraction, ...]}``; else ``None``.
    """

    mean: float
    tokens_per_call: float
    length_pmf: np.ndarray
    position_rates: np.ndarray
    conditional_rates: np.ndarray
    stderr: float
    method: BlockMethod
    verifier: str
    structure: str
    low: float
    high: float
    level: float = 0.99
    samples: int | None = None
    exact: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def contains(self, x: float) -> bool:
        """Whether ``x`` lies in the confidence interval (exact: equals ``mean`` to 1e-12)."""
        if self.method is BlockMethod.EXACT:
            return abs(x - self.mean) <= 1e-12 * max(1.0, abs(self.mean))
        return self.low <= x <= self.high


def _rates(pmf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tail = np.cumsum(pmf[::-1])[::-1]  # tail[k] = Pr(L >= k)
    r = tail[1:].copy()
    prev = tail[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(prev > 0, r / np.where(prev > 0, prev, 1.0), np.nan)
    return np.minimum(r, 1.0), np.minimum(c, 1.0)


def _check_method(method: Any) -> BlockMethod:
    try:
        return BlockMethod(method)
    except ValueError:
        raise SpecTheoryInputError(
            f"argument 'method': expected 'exact' or 'mc', got {method!r}"
        ) from None


def block_acceptance(
    target: Model,
    draft: Model,
    drafts: Any,
    verifier: Any,
    *,
    context: Any = (),
    method: str = "exact",
    samples: int | None = None,
    seed: int | None = None,
    level: float = 0.99,
) -> BlockAcceptance:
    r"""Accepted draft tokens per target call of ``verifier`` on ``drafts``.

    Parameters
    ----------
    target, draft
        Conditional models ``context -> (V,)`` (floats or Fractions; see
        :mod:`spectheory.blocks.models` for tabular models and wrappers).
    drafts
        :class:`~spectheory.blocks.Chain`, :class:`~spectheory.blocks.Chains` or
        :class:`~spectheory.blocks.Tree`.
    verifier
        A name (``"sd"``, ``"rrs"``, ..., ``"block"``, ``"multipath"``, ``"traversal"``), a
        token-level :class:`~spectheory.verifiers.base.Verifier` or a
        :class:`~spectheory.blocks.verify.BlockVerifier`.
    context
        Tokens before the block.
    method
        ``"exact"`` (enumeration; small vocabularies and structures) or ``"mc"``.
    samples, seed
        Monte Carlo sample count (default 10,000) and seed.
    level
        Confidence level of the Monte Carlo interval.

    Examples
    --------
    >>> import numpy as np
    >>> from spectheory.blocks import Chain, Markov, block_acceptance
    >>> p = Markov([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]])
    >>> q = Markov([0.5, 0.5], [[0.5, 0.5], [0.5, 0.5]])
    >>> round(block_acceptance(p, q, Chain(2), "sd").mean, 6)
    1.0
    """
    m = _check_method(method)
    z_value(level)  # validates level
    problem = BlockProblem(target, draft, drafts, context)
    rule = block_verifier(verifier, problem.tree)
    depth = problem.tree.max_depth
    if m is BlockMethod.EXACT:
        if samples is not None:
            raise SpecTheoryInputError("argument 'samples': only for method='mc'")
        pmf_exact = _exact_pmf(problem, rule, depth)
        pmf = np.array([float(x) for x in pmf_exact])
        mean_exact = sum((k * x for k, x in enumerate(pmf_exact)), start=0 * pmf_exact[0])
        mean = float(mean_exact)
        r, c = _rates(pmf)
        ex = (
            {"mean": mean_exact, "length_pmf": list(pmf_exact)} if problem.exact else None
        )
        return BlockAcceptance(
            mean, mean + 1.0, pmf, r, c, 0.0, m, rule.name, _describe(drafts), mean, mean,
            level, None, ex, {"V": problem.V},
        )
    S = 10_000 if samples is None else int(samples)
    if S < 2:
        raise SpecTheoryInputError(f"argument 'samples': need at least 2, got {samples!r}")
    rng = np.random.default_rng(seed)
    lengths = np.empty(S, dtype=np.int64)
    for s in range(S):
        tokens = problem.sample(rng)
        u, _ = rule.sample(problem, tokens, rng)
        lengths[s] = problem.tree.depth[u]
    pmf = np.bincount(lengths, minlength=depth + 1).astype(np.float64) / S
    mean = float(lengths.mean())
    se = float(lengths.std(ddof=1) / np.sqrt(S))
    z = z_value(level)
    r, c = _rates(pmf)
    return BlockAcceptance(
        mean, mean + 1.0, pmf, r, c, se, m, rule.name, _describe(drafts), mean - z * se,
        mean + z * se, level, S, None, {"V": problem.V, "seed": seed},
    )


def _describe(drafts: Any) -> str:
    d = getattr(drafts, "describe", None)
    return d() if callable(d) else repr(drafts)


def _exact_pmf(problem: BlockProblem, rule: BlockVerifier, depth: int) -> list[Any]:
    zero: Any = Fraction(0) if problem.exact else 0.0
    pmf = [zero] * (depth + 1)
    for tokens, pr in problem.realizations():
        for u, mass in rule.output_law(problem, tokens).items():
            pmf[problem.tree.depth[u]] += pr * _total(mass)
    return pmf


def _total(mass: np.ndarray) -> Any:
    return sum(mass.tolist(), start=0 * mass[0]) if mass.dtype == object else float(mass.sum())


# ---------------------------------------------------------------------- output laws
def block_output_law(
    target: Model, draft: Model, drafts: Any, verifier: Any, *, context: Any = ()
) -> dict[tuple[int, ...], Any]:
    r"""Exact law of the block's output sequence :math:`z = \text{path}(u)\cdot y` (a dict from
    token tuples to probabilities), summed over all draft realisations."""
    problem = BlockProblem(target, draft, drafts, context)
    rule = block_verifier(verifier, problem.tree)
    return _output_law(problem, rule)


def _output_law(problem: BlockProblem, rule: BlockVerifier) -> dict[tuple[int, ...], Any]:
    law: dict[tuple[int, ...], Any] = {}
    for tokens, pr in problem.realizations():
        for u, mass in rule.output_law(problem, tokens).items():
            path = problem.tree.path(tokens, u)
            for y in range(problem.V):
                if mass[y] != 0:
                    z = (*path, y)
                    law[z] = law.get(z, 0 * mass[y]) + pr * mass[y]
    return law


def sequence_law(
    problem: BlockProblem, law: dict[tuple[int, ...], Any], length: int
) -> dict[tuple[int, ...], Any]:
    r"""Law of the first ``length`` tokens when the block outputs ``z`` with law ``law`` and the
    target continues after it: :math:`\sum_{z \preceq s} \Pr(z)\,p(s_{|z|+1:} \mid z)`."""
    out: dict[tuple[int, ...], Any] = {}
    stack = [(z, w) for z, w in law.items()]
    while stack:
        z, w = stack.pop()
        if len(z) >= length:
            s = z[:length]
            out[s] = out.get(s, 0 * w) + w
            continue
        p = problem.p(z)
        for y in range(problem.V):
            if p[y] != 0:
                stack.append(((*z, y), w * p[y]))
    return out


def lossless_gap(
    target: Model, draft: Model, drafts: Any, verifier: Any, *, context: Any = ()
) -> Any:
    r"""Total variation between the law of the first :math:`\gamma + 1` output tokens and the
    target's: 0 (exactly, on Fraction models) for a lossless rule.

    The output law comes from exact enumeration (:func:`block_output_law`); the target's law of
    :math:`\gamma + 1` tokens by its chain rule."""
    problem = BlockProblem(target, draft, drafts, context)
    rule = block_verifier(verifier, problem.tree)
    L = problem.tree.max_depth + 1
    got = sequence_law(problem, _output_law(problem, rule), L)
    one: Any = Fraction(1) if problem.exact else 1.0
    want = sequence_law(problem, {(): one}, L)
    keys = set(got) | set(want)
    zero: Any = 0 * one
    return sum((abs(got.get(s, zero) - want.get(s, zero)) for s in keys), start=zero) / 2

