r"""Speculative decoding block by block, for any conditional models (:func:`decode`).

Each *target call* is one :class:`~spectheory.blocks.problem.BlockProblem` at the current context:
the draft structure is realised from the draft model, the block verifier's sampler returns
``(u, y)`` (:mod:`spectheory.blocks.verify`), and the output ``path(u) + (y,)`` is appended to the
context. This repeats until ``num_tokens`` tokens have been generated. Nothing here depends on the
models being tabular: real models only need to be callables ``context -> (V,)`` (see
:mod:`spectheory.blocks.real` for cached wrappers of n-gram and ``transformers`` models).

Lazy drafting. Token-level rules walk down the tree and only look at the children of the nodes
they stand on. For them (:class:`~spectheory.blocks.verify.TokenLevel`) the realisation is drawn
lazily: the children of a node are drafted, jointly and from :math:`q(\cdot\mid\text{path})` as
:meth:`BlockProblem.sample` would, the first time the verifier reads one of them. The children of
different nodes are independent given their paths, so the realisation has the same law as a full
draw and the verifier's output has the same law; only the draft model calls of subtrees the
verifier never enters are saved (what a real system spends drafting them does not change the
tokens per call). Other rules (``"block"``, ``"multipath"``, ``"traversal"``, user rules) get the
full realisation of :meth:`BlockProblem.sample`.

The last block is truncated: when a call yields more tokens than are still needed, the tokens are
cut at ``num_tokens`` but the per-call statistics keep the call's full accepted length (so they
are draws of exactly the quantity :func:`~spectheory.blocks.block_acceptance` computes).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validate import SpecTheoryInputError
from ..verifiers.base import z_value
from .drafts import as_tree, sample_children
from .problem import BlockProblem, Model
from .verify import BlockVerifier, TokenLevel, block_verifier

__all__ = ["DecodeResult", "decode"]


@dataclass(frozen=True)
class DecodeResult:
    r"""Outcome of :func:`decode`.

    Attributes
    ----------
    tokens
        The ``num_tokens`` generated token ids (int64), after the starting context.
    accepted
        Accepted draft tokens of every target call (int64, one entry per call; the last call's
        full accepted length even when its block was truncated).
    calls
        Number of target calls (blocks).
    mean
        Mean accepted draft tokens per call, ``accepted.mean()``.
    tokens_per_call
        ``mean + 1``: tokens per target call (the convention of
        :attr:`~spectheory.blocks.BlockAcceptance.tokens_per_call`).
    stderr
        Standard error of ``mean`` (``accepted.std(ddof=1) / sqrt(calls)``; ``nan`` with one call).
        Successive calls run at different contexts, so this treats them as a sample of the
        per-call law along the generated text (a normal interval; exact for context-free models).
    low, high
        Confidence interval of ``tokens_per_call`` at ``level``.
    truncated
        Tokens of the last block cut off at ``num_tokens``.
    verifier, structure
        The verifier's name and the draft structure's description.
    starts
        Index into ``tokens`` at which every call's block begins.
    """

    tokens: np.ndarray
    accepted: np.ndarray
    calls: int
    mean: float
    tokens_per_call: float
    stderr: float
    low: float
    high: float
    level: float
    truncated: int
    verifier: str
    structure: str
    starts: np.ndarray

    @property
    def generated_per_call(self) -> float:
        """``len(tokens) / calls`` (differs from ``tokens_per_call`` by the truncated tail)."""
        return len(self.tokens) / self.calls


class LazyRealization(Sequence):
    """A realisation whose nodes are drafted when first read (module docstring).

    ``tokens[0] = -1``; reading ``tokens[c]`` drafts all children of ``c``'s parent at once."""

    def __init__(self, problem: BlockProblem, rng: np.random.Generator) -> None:
        self.problem = problem
        self.tree = problem.tree
        self.rng = rng
        self._tok: list[int | None] = [-1] + [None] * self.tree.num_nodes

    def __len__(self) -> int:
        return len(self._tok)

    def __getitem__(self, u: Any) -> Any:
        if isinstance(u, slice):
            return tuple(self[i] for i in range(*u.indices(len(self))))
        u = operator.index(u)
        if u < 0:
            u += len(self._tok)
        t = self._tok[u]
        if t is None:
            tree = self.tree
            par = tree.parents[u]
            q = self.problem.q(tree.path(self, par))
            qf = q.astype(np.float64) if q.dtype == object else q
            ch = tree.children[par]
            for c, y in zip(ch, sample_children(qf, len(ch), tree.scheme, self.rng), strict=True):
                self._tok[c] = int(y)
            t = self._tok[u]
        return t

    @property
    def drawn(self) -> int:
        """Number of nodes drafted so far."""
        return sum(t is not None for t in self._tok[1:])


def _check_num_tokens(num_tokens: Any) -> int:
    if (
        isinstance(num_tokens, bool)
        or not isinstance(num_tokens, int | np.integer)
        or int(num_tokens) < 1
    ):
        raise SpecTheoryInputError(
            f"argument 'num_tokens': must be an integer >= 1, got {num_tokens!r}"
        )
    return int(num_tokens)


def _check_rng(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool) and int(rng) >= 0:
        return np.random.default_rng(int(rng))
    raise SpecTheoryInputError(
        f"argument 'rng': expected a numpy Generator or a non-negative integer seed, got {rng!r}"
    )


def _check_context(context: Any) -> tuple[int, ...]:
    if isinstance(context, str | bytes):
        raise SpecTheoryInputError(
            f"argument 'context': expected a sequence of token ids, got {context!r}"
        )
    try:
        arr = np.asarray(context)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.asarray(arr, dtype=np.float64) == np.round(arr.astype(np.float64))):
                raise ValueError
        out = tuple(int(t) for t in np.ravel(arr))
    except (TypeError, ValueError):
        raise SpecTheoryInputError(
            f"argument 'context': expected a sequence of token ids, got {context!r}"
        ) from None
    if arr.ndim > 1 or any(t < 0 for t in out):
        raise SpecTheoryInputError(
            "argument 'context': expected a flat sequence of non-negative token ids"
        )
    return out


def decode(
    target: Model,
    draft: Model,
    drafts: Any,
    verifier: Any,
    num_tokens: int,
    rng: Any,
    *,
    context: Any = (),
    level: float = 0.99,
    lazy: bool = True,
    progress: Callable[[int], None] | None = None,
) -> DecodeResult:
    r"""Run speculative decoding block by block until ``num_tokens`` tokens are generated.

    Parameters
    ----------
    target, draft
        Conditional models ``context tuple -> (V,)`` (tabular models of
        :mod:`spectheory.blocks.models`, or the real-model wrappers of
        :mod:`spectheory.blocks.real`).
    drafts
        :class:`~spectheory.blocks.Chain`, :class:`~spectheory.blocks.Chains` or
        :class:`~spectheory.blocks.Tree`.
    verifier
        A block-level rule name (``"block"``, ``"multipath"``, ``"traversal"``), a token-level
        rule name (``"sd"``, ``"rrs"``, ``"rrs_wor"``, ...), a token-level
        :class:`~spectheory.verifiers.base.Verifier` or a
        :class:`~spectheory.blocks.verify.BlockVerifier`.
    num_tokens
        How many tokens to generate (the last block is truncated; module docstring).
    rng
        A :class:`numpy.random.Generator` (or an integer seed).
    context
        Token ids before the first block.
    level
        Confidence level of ``low``/``high``.
    lazy
        Draft token-level rules' trees lazily (same law; module docstring).
    progress
        Called after every target call with the number of tokens generated so far.

    Returns
    -------
    DecodeResult

    Examples
    --------
    >>> import numpy as np
    >>> from spectheory.blocks import Chain, Markov, decode
    >>> p = Markov([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]])
    >>> out = decode(p, p, Chain(3), "sd", 10, np.random.default_rng(0))
    >>> out.tokens_per_call, len(out.tokens), out.calls      # identical draft: all accepted
    (4.0, 10, 3)
    """
    if not callable(target):
        raise SpecTheoryInputError("argument 'target': expected a callable context -> (V,)")
    if not callable(draft):
        raise SpecTheoryInputError("argument 'draft': expected a callable context -> (V,)")
    tree = as_tree(drafts)
    rule: BlockVerifier = block_verifier(verifier, tree)
    n_tok = _check_num_tokens(num_tokens)
    gen = _check_rng(rng)
    ctx = _check_context(context)
    z = z_value(level)
    if progress is not None and not callable(progress):
        raise SpecTheoryInputError("argument 'progress': expected a callable or None")

    seq = list(ctx)
    start = len(seq)
    accepted: list[int] = []
    starts: list[int] = []
    use_lazy = bool(lazy) and isinstance(rule, TokenLevel)
    leaves = [u for u in range(1, tree.num_nodes + 1) if not tree.children[u]]
    while len(seq) - start < n_tok:
        problem = BlockProblem(target, draft, drafts, tuple(seq))
        if use_lazy:
            tokens: Any = LazyRealization(problem, gen)
        else:
            tokens = problem.sample(gen)
            pre = getattr(target, "prefetch", None)
            if callable(pre):  # one target call scores every drafted path (real models)
                for leaf in leaves:
                    pre((*seq, *tree.path(tokens, leaf)))
        u, y = rule.sample(problem, tokens, gen)
        starts.append(len(seq) - start)
        seq.extend(tree.path(tokens, u))
        seq.append(int(y))
        accepted.append(tree.depth[u])
        if progress is not None:
            progress(min(len(seq) - start, n_tok))
    out = np.asarray(seq[start : start + n_tok], dtype=np.int64)
    acc = np.asarray(accepted, dtype=np.int64)
    mean = float(acc.mean())
    se = float(acc.std(ddof=1) / np.sqrt(len(acc))) if len(acc) > 1 else float("nan")
    return DecodeResult(
        tokens=out,
        accepted=acc,
        calls=len(acc),
        mean=mean,
        tokens_per_call=mean + 1.0,
        stderr=se,
        low=mean + 1.0 - z * se,
        high=mean + 1.0 + z * se,
        level=float(level),
        truncated=len(seq) - start - n_tok,
        verifier=rule.name,
        structure=_describe(drafts),
        starts=np.asarray(starts, dtype=np.int64),
    )


def _describe(drafts: Any) -> str:
    d = getattr(drafts, "describe", None)
    return d() if callable(d) else repr(drafts)
