r"""Monte Carlo block acceptance over many contexts at once (issue 16, "Block level").

:func:`~spectheory.blocks.block_acceptance` with ``method="mc"`` calls the two models once per
context and path, in Python. On a real pair the cheap way is the way a decoder batches: draft all
contexts in lockstep, one batched draft forward per depth, then one batched target forward over
every drafted prefix, then verify all rows with array arithmetic. :func:`block_acceptance_batched`
does exactly that for one chain (:class:`~spectheory.blocks.Chain`) with the verifiers ``"sd"``
(token-level speculative sampling down the chain) and ``"block"`` (Sun et al.'s block
verification, :class:`~spectheory.blocks.rules.BlockVerification`).

The conditionals depend on the drafted tokens, so a fixed ``(B, gamma + 1, V)`` array of
teacher-forced conditionals describes a block only for one given draft path; the function
therefore takes *batched conditional models*::

    target_batch(prefixes: list[tuple[int, ...]]) -> (len(prefixes), V) array
    draft_batch(prefixes: list[tuple[int, ...]]) -> (len(prefixes), V) array

(:func:`batch_model` turns a per-context model into one by stacking rows).

Only the accepted length is sampled: the correction or bonus token does not change it and is not
drawn (its law is the scalar rule's; losslessness is checked exactly elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validate import SpecTheoryInputError
from ..verifiers.base import z_value
from .acceptance import BlockAcceptance, BlockMethod, _rates
from .drafts import Chain

__all__ = [
    "BatchModel",
    "BatchedBlockAcceptance",
    "batch_model",
    "block_acceptance_batched",
    "block_h",
    "sd_acceptance",
]

#: A batched conditional model: a list of contexts -> ``(len(contexts), V)`` float array.
BatchModel = Callable[[list[tuple[int, ...]]], Any]

_VERIFIERS = ("sd", "block")
_BACKENDS = ("numpy", "jax")


@dataclass(frozen=True)
class BatchedBlockAcceptance(BlockAcceptance):
    r""":class:`~spectheory.blocks.BlockAcceptance` of the average over ``B`` contexts, plus the
    per-context samples.

    ``mean`` is the average of all ``B * samples`` accepted lengths (every context weighs the
    same). ``stderr`` treats them as independent draws: exact when the contexts are themselves a
    random sample and ``samples = 1``, conservative (it includes the spread between contexts)
    for the average over these fixed contexts.

    Attributes
    ----------
    lengths
        ``(B, samples)`` int64 accepted draft tokens per target call.
    per_context_mean
        ``(B,)`` ``lengths.mean(axis=1)``.
    """

    lengths: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    per_context_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))


def batch_model(model: Callable[[tuple[int, ...]], Any]) -> BatchModel:
    """A batched model from a per-context one (``model(context) -> (V,)``), by stacking rows."""

    def f(contexts: list[tuple[int, ...]]) -> np.ndarray:
        return np.stack([np.asarray(model(c), dtype=np.float64) for c in contexts])

    return f


# ---------------------------------------------------------------------- vectorised rules
def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    r"""Row-wise :math:`\min(\text{num}/\text{den}, 1)`, with ``den = 0`` read as the limit (1 when
    ``num > 0``, else 0): the convention of :func:`spectheory.blocks.rules._ratio`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.minimum(num / np.where(den > 0, den, 1.0), 1.0)
    return np.where(den > 0, r, np.where(num > 0, 1.0, 0.0))


def sd_acceptance(p_x: np.ndarray, q_x: np.ndarray) -> np.ndarray:
    r"""Token-level SD acceptance :math:`\min(1, p(x)/q(x))` of drafted tokens, elementwise."""
    return _ratio(np.asarray(p_x, dtype=np.float64), np.asarray(q_x, dtype=np.float64))


def block_h(ps: np.ndarray, qs: np.ndarray, xs: np.ndarray) -> np.ndarray:
    r"""Sun et al.'s block acceptances :math:`h_1..h_\gamma` for ``R`` rows at once.

    Parameters
    ----------
    ps
        ``(gamma + 1, R, V)``: ``ps[i, r]`` = :math:`p(\cdot\mid x^{i})` of row ``r``.
    qs
        ``(gamma, R, V)``: the draft laws the tokens were drawn from.
    xs
        ``(gamma, R)`` drafted tokens.

    Returns
    -------
    ``(gamma, R)`` array, row ``i - 1`` = :math:`h_i`; equal (to rounding) to the ``h`` of
    :func:`spectheory.blocks.rules._bv_weights` row by row, with the same conventions
    (``w_i`` via the limit when ``q(x) = 0``; :math:`h_i = 1` where the denominator is 0).
    """
    g, R = xs.shape
    rows = np.arange(R)
    w = np.ones(R)
    h = np.empty((g, R))
    diff = np.empty(ps.shape[1:])
    tmp = np.empty_like(diff)
    for i in range(g):
        x = xs[i]
        w_next = _ratio(w * ps[i, rows, x], qs[i, rows, x])
        if i > 0:  # h_i for 1 <= i < gamma uses w_i, p_i, q_i
            np.multiply(ps[i], w[:, None], out=diff)
            diff -= qs[i]  # w_i p_i - q_i
            s = np.maximum(diff, 0.0, out=tmp).sum(axis=1)
            # sum [q_i - w_i p_i]_+ (no cancellation); -(a - b) == b - a exactly in IEEE
            d = -np.minimum(diff, 0.0, out=tmp).sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                h[i - 1] = np.where(d > 0, s / np.where(d > 0, d, 1.0), 1.0)
        w = w_next
    h[g - 1] = w
    return h


def _sd_lengths(acc: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Accepted length: the number of leading positions with ``eta <= acceptance``."""
    ok = eta <= acc  # (gamma, R)
    return np.cumprod(ok, axis=0).sum(axis=0)


def _block_lengths(h: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Accepted length: the largest ``i`` with ``eta_i <= h_i`` (0 when none), as
    :func:`spectheory.blocks.rules._block_sample`."""
    g = h.shape[0]
    ok = eta <= h  # (gamma, R)
    idx = np.arange(1, g + 1)[:, None]
    return np.where(ok, idx, 0).max(axis=0)


# ---------------------------------------------------------------------- sampling
def _check_rows(a: Any, n: int, name: str, V: int | None) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] == 0:
        raise SpecTheoryInputError(
            f"argument {name!r}: expected shape ({n}, V) for {n} prefixes, got {arr.shape}"
        )
    if V is not None and arr.shape[1] != V:
        raise SpecTheoryInputError(f"argument {name!r}: V = {arr.shape[1]}, expected {V}")
    sums = arr.sum(axis=1)  # a NaN or infinite entry makes its row sum non-finite
    if not np.all(np.isfinite(sums)) or arr.min() < 0:
        raise SpecTheoryInputError(f"argument {name!r}: entries must be finite and >= 0")
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-6)
    if bad.size:
        raise SpecTheoryInputError(f"argument {name!r}: row {int(bad[0])} sums to {sums[bad[0]]!r}, not 1")
    return arr


def _draw(q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One token per row of ``q`` (inverse CDF; never a token of zero mass)."""
    c = np.cumsum(q, axis=1)
    u = rng.random(q.shape[0]) * c[:, -1]
    x = (c <= u[:, None]).sum(axis=1)
    x = np.minimum(x, q.shape[1] - 1)
    rows = np.arange(q.shape[0])
    zero = q[rows, x] <= 0  # only by rounding at the top end: take the last token with mass
    if zero.any():
        last = q.shape[1] - 1 - np.argmax(q[zero, ::-1] > 0, axis=1)
        x[zero] = last
    return x


@dataclass(frozen=True)
class _Drawn:
    lengths: np.ndarray  # (R,)
    V: int


def _prefixes(ctx: list[tuple[int, ...]], S: int) -> list[tuple[int, ...]]:
    return [c for c in ctx for _ in range(S)]  # row r = context r // S


def _all_prefixes(prefixes: list[tuple[int, ...]], g: int) -> list[tuple[int, ...]]:
    """Every drafted prefix of every row, depth-major: context + x_1..x_i for i = 0..gamma."""
    return [h[: len(h) - g + i] for i in range(g + 1) for h in prefixes]


def _lengths_numpy(
    target_batch: BatchModel,
    draft_batch: BatchModel,
    verifier: str,
    ctx: list[tuple[int, ...]],
    S: int,
    g: int,
    seed: Any,
) -> _Drawn:
    rng = np.random.default_rng(seed)
    prefixes = _prefixes(ctx, S)
    R = len(prefixes)
    xs = np.empty((g, R), dtype=np.int64)
    qs: np.ndarray | None = None
    V: int | None = None
    for i in range(g):
        q = _check_rows(draft_batch(prefixes), R, "draft_batch", V)
        if qs is None:
            V = q.shape[1]
            qs = np.empty((g, R, V))
        qs[i] = q
        x = _draw(q, rng)
        xs[i] = x
        prefixes = [(*h, int(t)) for h, t in zip(prefixes, x.tolist(), strict=True)]
    allp = _all_prefixes(prefixes, g)
    P = _check_rows(target_batch(allp), R * (g + 1), "target_batch", V).reshape(g + 1, R, -1)
    rows = np.arange(R)
    eta = rng.random((g, R))
    if verifier == "sd":
        p_x = P[np.arange(g)[:, None], rows[None, :], xs]
        q_x = qs[np.arange(g)[:, None], rows[None, :], xs]
        lengths = _sd_lengths(sd_acceptance(p_x, q_x), eta)
    else:
        lengths = _block_lengths(block_h(P, qs, xs), eta)
    return _Drawn(lengths, int(P.shape[2]))


def _to_device(jax: Any, a: np.ndarray) -> Any:
    """``a`` on JAX's default device. On a CPU ``device_put`` shares the memory of a 64-byte
    aligned C-contiguous array instead of copying it, so an array that is not aligned is copied
    into one that is (one copy either way; none when it already is)."""
    if a.ctypes.data % 64 or not a.flags.c_contiguous:
        buf = np.empty(a.size + 8)
        off = (-buf.ctypes.data % 64) // 8
        b = buf[off : off + a.size].reshape(a.shape)
        np.copyto(b, a)
        a = b
    return jax.device_put(a)


def _lengths_jax(
    target_batch: BatchModel,
    draft_batch: BatchModel,
    verifier: str,
    ctx: list[tuple[int, ...]],
    S: int,
    g: int,
    seed: Any,
) -> _Drawn:
    """The JAX backend: the same model calls and validation; draws and verification in
    jit-compiled float64 JAX (:mod:`spectheory.blocks.batched_jax`)."""
    import jax

    from ..solvers.jax_backend.solve import x64
    from . import batched_jax as bj

    # a 63-bit JAX seed from numpy's seed sequence (fresh entropy when seed is None)
    jseed = int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0] >> np.uint64(1))
    prefixes = _prefixes(ctx, S)
    R = len(prefixes)
    xs = np.empty((g, R), dtype=np.int64)
    qs: list[Any] = []  # the draft rows, kept on the device for the verification
    V: int | None = None
    with x64(True):
        keys = jax.random.split(jax.random.key(jseed), g + 1)
        for i in range(g):
            q = _check_rows(draft_batch(prefixes), R, "draft_batch", V)
            V = q.shape[1]
            qs.append(_to_device(jax, q))
            x = np.asarray(bj._draw_jit(keys[i], qs[i]))
            xs[i] = x
            prefixes = [(*h, int(t)) for h, t in zip(prefixes, x.tolist(), strict=True)]
        allp = _all_prefixes(prefixes, g)
        P = _check_rows(target_batch(allp), R * (g + 1), "target_batch", V).reshape(g + 1, R, -1)
        eta = jax.random.uniform(keys[g], (g, R), dtype=np.float64)
        lengths = np.asarray(bj._lengths_jit(_to_device(jax, P), tuple(qs), xs, eta, verifier=verifier))
    return _Drawn(lengths, int(P.shape[2]))


def block_acceptance_batched(
    target_batch: BatchModel,
    draft_batch: BatchModel,
    drafts: Any,
    verifier: str,
    *,
    contexts: Sequence[Sequence[int]],
    samples: int = 1,
    seed: int | None = None,
    level: float = 0.99,
    backend: str = "numpy",
) -> BatchedBlockAcceptance:
    r"""Monte Carlo accepted draft tokens per target call over many contexts in lockstep.

    For ``R = len(contexts) * samples`` rows (each context repeated ``samples`` times) the chain
    is drafted depth by depth: one ``draft_batch`` call over the ``R`` current prefixes per depth
    (``gamma`` calls), then one ``target_batch`` call over all ``R * (gamma + 1)`` drafted prefixes
    (context, context + x_1, ..., context + x_1..x_gamma), then the verifier runs on all rows as
    array arithmetic. Each row is one draw of :func:`~spectheory.blocks.block_acceptance`
    ``(method="mc")`` at its context.

    Parameters
    ----------
    target_batch, draft_batch
        Batched conditional models: a list of context tuples -> ``(len(list), V)`` floats whose
        rows sum to 1 (:func:`batch_model` wraps a per-context model).
    drafts
        A :class:`~spectheory.blocks.Chain`.
    verifier
        ``"sd"`` (token-level speculative sampling down the chain) or ``"block"`` (Sun et al.).
    contexts
        ``B`` token sequences (the contexts before the block).
    samples
        Draws per context.
    seed, level
        Random seed; confidence level of the interval of the overall mean.
    backend
        ``"numpy"`` (default) or ``"jax"``: the per-depth draws, the verifier arithmetic and the
        accepted lengths run as jit-compiled float64 JAX functions
        (:mod:`spectheory.blocks.batched_jax`, JAX imported only then); the models stay Python
        callables and their outputs are validated the same way. The two backends use different
        random streams (same law, different draws for the same ``seed``).

    Examples
    --------
    >>> from spectheory.blocks import Chain, Markov, block_acceptance_batched
    >>> from spectheory.blocks.batched import batch_model
    >>> p = Markov([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]])
    >>> q = Markov([0.5, 0.5], [[0.5, 0.5], [0.5, 0.5]])
    >>> r = block_acceptance_batched(batch_model(p), batch_model(q), Chain(2), "block",
    ...                              contexts=[(0,), (1,)], samples=500, seed=0)
    >>> r.per_context_mean.shape, r.lengths.shape
    ((2,), (2, 500))
    """
    if not isinstance(backend, str) or backend not in _BACKENDS:
        raise SpecTheoryInputError(
            f"argument 'backend': expected one of {', '.join(map(repr, _BACKENDS))}; got {backend!r}"
        )
    if not isinstance(drafts, Chain):
        raise SpecTheoryInputError(
            f"argument 'drafts': the batched sampler drafts one Chain, got {type(drafts).__name__}"
        )
    if verifier not in _VERIFIERS:
        raise SpecTheoryInputError(
            f"argument 'verifier': batched rules are {', '.join(map(repr, _VERIFIERS))}; got "
            f"{verifier!r} (use block_acceptance(method='mc') for the others)"
        )
    if not callable(target_batch) or not callable(draft_batch):
        raise SpecTheoryInputError(
            "arguments 'target_batch', 'draft_batch': expected callables list[tuple] -> (n, V)"
        )
    try:
        ctx = [tuple(int(t) for t in c) for c in contexts]
    except (TypeError, ValueError):
        raise SpecTheoryInputError("argument 'contexts': expected a sequence of token-id sequences") from None
    B = len(ctx)
    if B == 0:
        raise SpecTheoryInputError("argument 'contexts': need at least one context")
    S = int(samples)
    if S < 1 or S != samples:
        raise SpecTheoryInputError(f"argument 'samples': expected an integer >= 1, got {samples!r}")
    if B * S < 2:
        raise SpecTheoryInputError("arguments 'contexts', 'samples': need at least 2 draws in all")
    z = z_value(level)
    g = drafts.gamma
    R = B * S
    run = _lengths_jax if backend == "jax" else _lengths_numpy
    drawn = run(target_batch, draft_batch, verifier, ctx, S, g, seed)
    V = drawn.V
    lengths = drawn.lengths.astype(np.int64).reshape(B, S)

    flat = lengths.ravel()
    pmf = np.bincount(flat, minlength=g + 1).astype(np.float64) / R
    mean = float(flat.mean())
    se = float(flat.std(ddof=1) / np.sqrt(R))
    r, c = _rates(pmf)
    return BatchedBlockAcceptance(
        mean,
        mean + 1.0,
        pmf,
        r,
        c,
        se,
        BlockMethod.MC,
        verifier,
        drafts.describe(),
        mean - z * se,
        mean + z * se,
        level,
        R,
        None,
        {
            "V": V,
            "seed": seed,
            "contexts": B,
            "samples_per_context": S,
            "backend": backend,
            "target_calls": 1,
            "draft_calls": g,
        },
        lengths,
        lengths.mean(axis=1),
    )
