r"""Block efficiency of (multi-draft) speculative decoding.

One *block* is one target call: the drafter proposes a chain of :math:`\gamma` positions (at each
position :math:`n` drafts), the verifier walks down the chain, and the block ends at the first
rejection (whose output token is still kept) or after :math:`\gamma` acceptances plus one bonus
token from the target. The *block efficiency* is the expected number of tokens per target call,

.. math:: \tau = 1 + \mathbb{E}[\text{accepted drafts}]
   = 1 + \sum_{i=1}^{\gamma} \prod_{j \le i} \alpha_j

when position :math:`i` accepts with probability :math:`\alpha_i` given that the earlier ones did
(theory section 7). With a constant :math:`\alpha` this is Leviathan et al.'s
:math:`(1 - \alpha^{\gamma+1})/(1 - \alpha)` (arXiv 2211.17192), an approximation that ignores how
acceptance depends on the context. The exact value for a model pair is the tree recursion over the
per-token accepted mass :math:`a(y \mid h) = \Pr(\text{accept and } Y = y \mid h)`:

.. math:: A(h, d) = \sum_y a(y \mid h)\,\bigl(1 + A(h\cdot y,\ d - 1)\bigr),\quad A(h, 0) = 0,
   \qquad \tau = 1 + A(h_0, \gamma).

Model: at every accepted position the drafter proposes :math:`n` fresh drafts from
:math:`q(\cdot \mid h)` for the next position (an :math:`n`-ary draft tree of depth :math:`\gamma`
in which the verifier of the next level only sees the children of the accepted token).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validate import SpecTheoryInputError, as_distribution, check_n
from ..verifiers.base import Estimate, Verifier, estimate_from

__all__ = [
    "Simulation",
    "block_efficiency",
    "constant_alpha_efficiency",
    "expected_accepted",
    "simulate",
    "speedup",
    "tree_efficiency",
]

#: A conditional next-token model: context (tuple of token ids) -> distribution (V,).
Model = Callable[[tuple[int, ...]], Any]

#: Largest number of tree nodes :func:`tree_efficiency` will visit.
MAX_TREE_NODES: int = 2_000_000


def _gamma(gamma: Any) -> int:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, np.integer)) or gamma < 0:
        raise SpecTheoryInputError(f"argument 'gamma': must be an integer >= 0, got {gamma!r}")
    return int(gamma)


def expected_accepted(alphas: Any) -> float | np.ndarray:
    r"""Expected accepted drafts :math:`\sum_{i\le\gamma}\prod_{j\le i}\alpha_j` of a chain.

    Parameters
    ----------
    alphas
        Per-position conditional acceptances ``(gamma,)`` or a batch ``(B, gamma)``, in
        :math:`[0, 1]`.
    """
    a = np.asarray(alphas, dtype=np.float64)
    if a.ndim not in (1, 2):
        raise SpecTheoryInputError(
            f"argument 'alphas': expected shape (gamma,) or (B, gamma), got {a.shape}"
        )
    bad = ~np.isfinite(a) | (a < 0) | (a > 1)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        row = f", row {idx[0]}" if a.ndim == 2 else ""
        raise SpecTheoryInputError(
            f"argument 'alphas'{row}: entry {idx[-1]} is {a[idx]!r}, not a probability in [0, 1]"
        )
    out = np.cumprod(a, axis=-1).sum(axis=-1)
    return float(out) if out.ndim == 0 else out


def block_efficiency(alphas: Any) -> float | np.ndarray:
    r"""Block efficiency :math:`\tau = 1 + \sum_{i\le\gamma}\prod_{j\le i}\alpha_j` (tokens per
    target call) of a chain with per-position acceptances ``alphas``, ``(gamma,)`` or
    ``(B, gamma)``."""
    return 1.0 + expected_accepted(alphas)


def constant_alpha_efficiency(alpha: Any, gamma: int) -> float | np.ndarray:
    r"""Leviathan et al.'s :math:`\tau = (1 - \alpha^{\gamma+1})/(1 - \alpha)` for a constant
    acceptance (:math:`\gamma + 1` at :math:`\alpha = 1`)."""
    g = _gamma(gamma)
    a = np.asarray(alpha, dtype=np.float64)
    if np.any(~np.isfinite(a) | (a < 0) | (a > 1)):
        raise SpecTheoryInputError(f"argument 'alpha': must lie in [0, 1], got {alpha!r}")
    out = np.sum(a[..., None] ** np.arange(g + 1), axis=-1)  # 1 + a + ... + a^gamma, stable
    return float(out) if out.ndim == 0 else out


def _pq(target: Model, draft: Model, h: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    p = as_distribution(target(h), f"target({h})", allow_batch=False)
    q = as_distribution(draft(h), f"draft({h})", allow_batch=False)
    if p.shape != q.shape:
        raise SpecTheoryInputError(
            f"argument 'draft': at context {h} draft V = {q.shape[0]} differs from target "
            f"V = {p.shape[0]}"
        )
    return p, q


def _verifier(v: str | Verifier) -> Verifier:
    if isinstance(v, Verifier):
        return v
    from ..verifiers import get

    return get(v)()


def tree_efficiency(
    target: Model,
    draft: Model,
    verifier: str | Verifier,
    n: int,
    gamma: int,
    context: Sequence[int] = (),
) -> float:
    r"""Exact block efficiency :math:`\tau = 1 + A(h_0, \gamma)` by the tree recursion over the
    verifier's accepted mass :math:`a(y \mid h)` (module docstring). For small models: visits
    every context with positive accepted mass up to depth :math:`\gamma` (at most
    :data:`MAX_TREE_NODES`).

    Parameters
    ----------
    target, draft
        Conditional models: a context tuple -> a distribution ``(V,)``.
    verifier
        A registered verifier name or instance.
    n, gamma
        Drafts per position and chain length.
    context
        The starting context :math:`h_0`.
    """
    v = _verifier(verifier)
    n = check_n(n)
    g = _gamma(gamma)
    visited = [0]

    def A(h: tuple[int, ...], d: int) -> float:
        if d == 0:
            return 0.0
        visited[0] += 1
        if visited[0] > MAX_TREE_NODES:
            raise SpecTheoryInputError(
                f"argument 'gamma': the draft tree has more than MAX_TREE_NODES = {MAX_TREE_NODES} "
                "nodes; use simulate()"
            )
        p, q = _pq(target, draft, h)
        a = np.asarray(v.accepted_mass(p, q, n), dtype=np.float64)
        total = 0.0
        for y in np.flatnonzero(a > 0):
            total += float(a[y]) * (1.0 + A((*h, int(y)), d - 1))
        return total

    return 1.0 + A(tuple(int(t) for t in context), g)


@dataclass(frozen=True)
class Simulation:
    """Result of :func:`simulate`: block efficiency per verifier with a confidence interval, and
    the mean per-position acceptance seen along the way."""

    block_efficiency: dict[str, Estimate]
    mean_acceptance: dict[str, float]
    n: int
    gamma: int
    blocks: int

    def table(self) -> str:
        lines = [f"n = {self.n}, gamma = {self.gamma}, blocks = {self.blocks}",
                 "verifier  tau       99% CI                mean accept"]
        for name, e in self.block_efficiency.items():
            lines.append(
                f"{name:<9} {e.mean:.4f}    [{e.low:.4f}, {e.high:.4f}]    "
                f"{self.mean_acceptance[name]:.4f}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def simulate(
    target: Model,
    draft: Model,
    verifiers: Sequence[str | Verifier],
    n: int,
    gamma: int,
    rng: np.random.Generator,
    *,
    blocks: int = 2000,
    context: Sequence[int] = (),
    level: float = 0.99,
) -> Simulation:
    r"""Monte Carlo simulation of multi-draft speculative decoding over two conditional models.

    Each block starts from ``context`` (independent blocks, so the estimate is a plain mean with a
    normal confidence interval): for positions :math:`1..\gamma`, draw :math:`n` drafts from the
    verifier's scheme for :math:`q(\cdot\mid h)`, call the verifier's ``sample`` (as a decoder
    would), append its output; stop at the first rejection; after :math:`\gamma` acceptances add
    one bonus token from :math:`p(\cdot\mid h)`. Tokens per block = accepted + 1.

    Returns
    -------
    Simulation
        ``block_efficiency[name]`` is an :class:`~spectheory.verifiers.base.Estimate` of
        :math:`\tau`; ``mean_acceptance[name]`` the fraction of verified positions accepted.
    """
    n = check_n(n)
    g = _gamma(gamma)
    if blocks < 2:
        raise SpecTheoryInputError(f"argument 'blocks': need at least 2, got {blocks}")
    h0 = tuple(int(t) for t in context)
    cache: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}

    def pq(h: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        if h not in cache:
            cache[h] = _pq(target, draft, h)
        return cache[h]

    eff: dict[str, Estimate] = {}
    mean_acc: dict[str, float] = {}
    for vv in verifiers:
        v = _verifier(vv)
        schemes: dict[tuple[int, ...], Any] = {}
        tokens = np.empty(blocks)
        n_acc = n_pos = 0
        for b in range(blocks):
            h = h0
            accepted = 0
            for _ in range(g):
                p, q = pq(h)
                if h not in schemes:
                    schemes[h] = v.scheme(q, n)
                drafts = schemes[h].sample(rng)
                y, ok = v.sample(p, q, drafts, rng)
                n_pos += 1
                h = (*h, int(y))
                if not ok:
                    break
                accepted += 1
                n_acc += 1
            tokens[b] = accepted + 1
        eff[v.name] = estimate_from(tokens, level)
        mean_acc[v.name] = n_acc / max(n_pos, 1)
    return Simulation(eff, mean_acc, n, g, int(blocks))


def speedup(
    tau: Any,
    gamma: int,
    cost_ratio: float,
    *,
    n: int = 1,
    verify_cost: float = 1.0,
    parallel_drafts: bool = True,
) -> float | np.ndarray:
    r"""Expected wall-time speed-up over plain autoregressive decoding.

    A block costs :math:`\gamma` draft steps and one verification, and yields :math:`\tau` tokens;
    plain decoding costs one target call per token. With :math:`c` the cost of one draft step
    relative to one target call,

    .. math:: S = \frac{\tau}{\gamma\, c_n + v_n},\qquad c_n = c \ (\text{drafts batched})
       \ \text{or}\ n c,

    where :math:`v_n` is the cost of verifying the :math:`n`-draft tree of depth :math:`\gamma` in
    one target call (``verify_cost``, 1 for a single chain that fits in one forward pass). For
    :math:`n = 1`, :math:`v_1 = 1` and :math:`\tau = (1 - \alpha^{\gamma+1})/(1 - \alpha)` this is
    Leviathan et al.'s improvement factor
    :math:`(1 - \alpha^{\gamma+1}) / ((1 - \alpha)(\gamma c + 1))` (arXiv 2211.17192, Thm 3.8).
    The speed-up is also the token rate in tokens per target-call time.
    """
    g = _gamma(gamma)
    n = check_n(n)
    if not (np.isfinite(cost_ratio) and cost_ratio >= 0):
        raise SpecTheoryInputError(f"argument 'cost_ratio': must be >= 0, got {cost_ratio!r}")
    if not (np.isfinite(verify_cost) and verify_cost > 0):
        raise SpecTheoryInputError(f"argument 'verify_cost': must be > 0, got {verify_cost!r}")
    t = np.asarray(tau, dtype=np.float64)
    if np.any(~np.isfinite(t) | (t < 1) | (t > g + 1 + 1e-12)):
        raise SpecTheoryInputError(
            f"argument 'tau': block efficiency must lie in [1, gamma + 1], got {tau!r}"
        )
    c = cost_ratio if parallel_drafts else n * cost_ratio
    out = t / (g * c + verify_cost)
    return float(out) if out.ndim == 0 else out
