r"""Draft schemes: the joint law :math:`Q` of the :math:`n` drafted tokens.

A scheme is pure, validated data. It knows

* :meth:`Scheme.prob_all_in` -- :math:`Q(H^n) = \Pr(\text{all } n \text{ drafts lie in } H)` for token
  sets :math:`H` given as boolean masks (the only quantity the subset form of :math:`\alpha^*` needs);
* :meth:`Scheme.enumerate` -- the explicit list of draft tuples and their probabilities (small
  :math:`V`; the input of the explicit LP);
* :meth:`Scheme.sample` -- draws of draft tuples with a :class:`numpy.random.Generator`.

It never solves anything: solvers live in :mod:`spectheory.solvers`.

Distributions ``q`` may be one row of shape ``(V,)`` or a batch ``(B, V)`` (one row per decoding
position); :meth:`Scheme.row` extracts one position.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ._validate import (
    SpecTheoryInputError,
    as_distribution,
    check_n,
    check_support_at_least,
    exact_distribution,
)
from .tolerances import MAX_TUPLES

__all__ = [
    "IID",
    "Greedy",
    "Hub",
    "Independent",
    "Joint",
    "Scheme",
    "WithoutReplacement",
    "exclusive_sums",
    "scheme_from_name",
]

#: Short names of the single-draft-model schemes, as used by reports and the command line.
SCHEME_NAMES: tuple[str, ...] = ("iid", "wor", "greedy", "hub")


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def exclusive_sums(q: np.ndarray) -> np.ndarray:
    r"""``1 - q_i`` computed as :math:`\sum_{j \ne i} q_j` (prefix plus suffix sums, last axis).

    Subtracting from 1 cancels catastrophically when ``q`` is one-hot to machine precision (low
    temperature): the sum of the other entries keeps their true, tiny size.
    """
    zero = np.zeros((*q.shape[:-1], 1))
    # Exclusive cumulative sums (shifted, never cumsum - q, which cancels next to a dominant entry).
    before = np.concatenate([zero, np.cumsum(q[..., :-1], axis=-1)], axis=-1)
    after = np.concatenate(
        [np.flip(np.cumsum(np.flip(q[..., 1:], axis=-1), axis=-1), axis=-1), zero], axis=-1
    )
    out = before + after
    return out


def _categorical(rng: np.random.Generator, probs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Draw indices from the last-axis distributions ``probs`` (shape (*batch, V)).

    Returns shape ``shape + batch`` ... with the batch axes last-but-none: ``(*shape, *batch)``.
    """
    cdf = np.cumsum(probs, axis=-1)
    total = cdf[..., -1:]
    batch = probs.shape[:-1]
    u = rng.random((*shape, *batch, 1)) * total
    # searchsorted per row: broadcast comparison is O(V) per draw, acceptable for sampling utilities.
    idx = (u >= cdf).sum(axis=-1) if probs.shape[-1] <= 4096 else _searchsorted_rows(cdf, u)
    # Guard against u landing on a zero-mass tail because of rounding.
    return np.minimum(idx, probs.shape[-1] - 1)


def _searchsorted_rows(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    batch = cdf.shape[:-1]
    if not batch:
        return np.searchsorted(cdf, u[..., 0], side="right")
    out = np.empty(u.shape[:-1], dtype=np.int64)
    for b in np.ndindex(*batch):
        out[(..., *b)] = np.searchsorted(cdf[b], u[(..., *b, 0)], side="right")
    return out


@dataclass(frozen=True, eq=False)
class Scheme:
    r"""Base class of draft schemes (the joint law :math:`Q` of the draft tuple :math:`\bar x`).

    Attributes
    ----------
    n
        Number of drafts per tuple.
    V
        Vocabulary size.
    batch_shape
        ``()`` for one position, ``(B,)`` for a batch of positions.
    exchangeable
        Whether the law of the tuple is invariant under permutations (tuples may then be merged into
        multisets; the LP merges by token *set* for every scheme, which is always valid because the
        acceptance edges depend only on the set).
    """

    name: ClassVar[str] = "scheme"
    exchangeable: ClassVar[bool] = False

    # ------------------------------------------------------------------ shape
    @property
    def n(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def V(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return ()

    @property
    def is_batched(self) -> bool:
        return bool(self.batch_shape)

    def row(self, b: int) -> Scheme:
        """The scheme of batch row ``b`` (``self`` when unbatched)."""
        return self

    def _check_unbatched(self, what: str) -> None:
        if self.is_batched:
            raise SpecTheoryInputError(
                f"{type(self).__name__}.{what} needs one position; this scheme has batch shape "
                f"{self.batch_shape}: use .row(b)"
            )

    # ------------------------------------------------------------------ law
    def prob_all_in(self, H: Any) -> np.ndarray:
        r"""Return :math:`Q(H^n) = \Pr(\bar x_1, \dots, \bar x_n \in H)`.

        Parameters
        ----------
        H
            Boolean mask(s) of shape ``(..., V)`` that broadcast against the scheme's batch
            (``(B, V)`` gives one value per row; ``(M, 1, V)`` gives ``M`` sets for every row).

        Returns
        -------
        numpy.ndarray
            Float64 array of the broadcast leading shape.
        """
        H = self._as_mask(H)
        tuples, probs = self.enumerate()
        inside = H[..., tuples].all(axis=-1)  # (..., T)
        return inside @ probs

    def _as_mask(self, H: Any) -> np.ndarray:
        H = np.asarray(H)
        if H.dtype != np.bool_:
            if H.ndim == 1 and H.shape[0] != self.V and np.issubdtype(H.dtype, np.integer):
                mask = np.zeros(self.V, dtype=bool)
                mask[H] = True
                return mask
            H = H.astype(bool)
        if H.shape[-1] != self.V:
            raise SpecTheoryInputError(
                f"argument 'H': last axis has size {H.shape[-1]}, expected V = {self.V}"
            )
        return H

    def enumerate(self) -> tuple[np.ndarray, np.ndarray]:
        """All draft tuples with positive probability: ``(tuples (T, n) int64, probs (T,))``.

        Raises a ValueError for batched schemes or when there are more than ``MAX_TUPLES`` tuples.
        """
        raise NotImplementedError  # pragma: no cover

    def sample(self, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
        """Draw draft tuples.

        Returns an int64 array of shape ``(*batch, n)`` when ``size`` is None, else
        ``(size, *batch, n)``.
        """
        raise NotImplementedError  # pragma: no cover

    def draft_marginal(self) -> np.ndarray:
        r"""Per-token inclusion probability :math:`\Pr(y \in \bar x)` (small V: by enumeration)."""
        self._check_unbatched("draft_marginal")
        tuples, probs = self.enumerate()
        out = np.zeros(self.V)
        for j in range(tuples.shape[1]):
            first = np.ones(len(tuples), dtype=bool)
            for i in range(j):
                first &= tuples[:, i] != tuples[:, j]
            np.add.at(out, tuples[first, j], probs[first])
        return out

    def _guard_count(self, count: float) -> None:
        if count > MAX_TUPLES:
            raise SpecTheoryInputError(
                f"{type(self).__name__} with V = {self.V}, n = {self.n} has about {count:.3g} "
                f"draft tuples, more than MAX_TUPLES = {MAX_TUPLES}; explicit enumeration (LP) is "
                "for small vocabularies"
            )


# ---------------------------------------------------------------------- single-q schemes
@dataclass(frozen=True, eq=False)
class _SingleQ(Scheme):
    q: np.ndarray
    n_: int = field(default=1, repr=False)
    #: The exact entries of ``q`` as Fractions when every input entry was an exact rational
    #: (int, Fraction, sympy Rational), else None; used by ``method="exact"``.
    exact_q = None

    def __init__(self, q: Any, n: int = 1, *, normalize: bool = False) -> None:
        object.__setattr__(self, "q", _readonly(as_distribution(q, "q", normalize=normalize)))
        object.__setattr__(self, "exact_q", exact_distribution(q, "q", normalize=normalize))
        object.__setattr__(self, "n_", check_n(n))
        self._check()

    def _check(self) -> None:
        pass

    @property
    def n(self) -> int:
        return self.n_

    @property
    def V(self) -> int:
        return int(self.q.shape[-1])

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.q.shape[:-1])

    def row(self, b: int) -> Scheme:
        if not self.is_batched:
            return self
        out = object.__new__(type(self))
        object.__setattr__(out, "q", _readonly(self.q[b]))
        object.__setattr__(out, "n_", self.n_)
        if self.exact_q is not None:
            object.__setattr__(out, "exact_q", self.exact_q[b])
        return out

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.q.shape))
        return f"{type(self).__name__}(q=<{shape}>, n={self.n})"


class IID(_SingleQ):
    r"""``n`` i.i.d. drafts from ``q`` (sampling with replacement).

    :math:`Q(H^n) = q(H)^n`. The sorted-prefix theorem holds (Hu et al., arXiv 2502.18779; proof in
    ``docs/theory.md``), so :math:`\alpha^*` costs one sort.

    Parameters
    ----------
    q
        Draft distribution, ``(V,)`` or ``(B, V)``.
    n
        Number of drafts, ``n >= 1``.
    normalize
        Rescale each row of ``q`` to sum to 1 (never done unless asked).
    """

    name: ClassVar[str] = "iid"
    exchangeable: ClassVar[bool] = True

    def prob_all_in(self, H: Any) -> np.ndarray:
        H = self._as_mask(H)
        return np.sum(np.where(H, self.q, 0.0), axis=-1) ** self.n

    def enumerate(self) -> tuple[np.ndarray, np.ndarray]:
        self._check_unbatched("enumerate")
        support = np.flatnonzero(self.q > 0)
        self._guard_count(float(len(support)) ** self.n)
        tuples = np.array(list(itertools.product(support, repeat=self.n)), dtype=np.int64)
        tuples = tuples.reshape(-1, self.n)
        probs = np.prod(self.q[tuples], axis=1)
        return tuples, probs

    def draft_marginal(self) -> np.ndarray:
        # Pr(y in drafts) = 1 - (1 - q_y)^n, with 1 - q_y as the sum of the others.
        return -np.expm1(self.n * np.log1p(-self.q)) if np.all(self.q < 1) else (
            1.0 - exclusive_sums(self.q) ** self.n
        )

    def sample(self, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
        shape = () if size is None else (size,)
        draws = _categorical(rng, self.q, (*shape, self.n))  # (*shape, n, *batch)
        return np.moveaxis(draws, len(shape), -1)


class WithoutReplacement(_SingleQ):
    r"""``n`` drafts sampled sequentially from ``q`` without replacement.

    :math:`Q(\bar x) = \prod_j q(\bar x_j) / (1 - \sum_{l<j} q(\bar x_l))` for distinct entries.
    Requires at least ``n`` tokens with :math:`q > 0` (otherwise ``n`` distinct drafts do not exist).

    :math:`Q(H^n)` uses the series :math:`1 - \lambda_H \sum_{m<n} G_m(H)` with
    :math:`\lambda_H = q(\Omega\setminus H)` (``docs/theory.md``); closed forms for ``n <= 3`` and
    enumeration of ordered tuples for larger ``n`` on small vocabularies.
    """

    name: ClassVar[str] = "wor"
    exchangeable: ClassVar[bool] = True

    def _check(self) -> None:
        check_support_at_least(
            self.q, self.n, "q", "sampling n distinct drafts without replacement is undefined"
        )

    def prob_all_in(self, H: Any) -> np.ndarray:
        H = self._as_mask(H)
        q = self.q
        qH = np.where(H, q, 0.0)
        lam = np.sum(np.where(H, 0.0, q), axis=-1)  # mass outside H, never 1 - q(H)
        if self.n == 1:
            return np.sum(qH, axis=-1)
        rest = exclusive_sums(q)  # 1 - q_i without cancellation
        # Positive-term forms (no cancellation, every factor <= 1):
        #   Q(H^2) = sum_{i in H} q_i * q(H \ i) / (1 - q_i)
        #   Q(H^3) = sum_{i != j in H} q_i * q_j/(1 - q_i) * q(H \ {i,j}) / (1 - q_i - q_j)
        qH_excl = exclusive_sums(qH)
        with np.errstate(divide="ignore", invalid="ignore"):
            first = np.where(qH > 0, qH / np.where(rest > 0, rest, 1.0), 0.0)
        if self.n == 2:
            return np.sum(first * qH_excl, axis=-1)
        if self.n == 3 and self.V <= 64:
            V = self.V
            off = ~np.eye(V, dtype=bool)
            # exclusive pair sums by direct summation: O(V^3), exact up to rounding
            k_out = off[None, :, :] & off[:, None, :]  # [i, j, k] = (k != j) & (k != i)
            rest2 = np.einsum("ijk,...k->...ij", k_out.astype(np.float64), q)
            qH2 = np.einsum("ijk,...k->...ij", k_out.astype(np.float64), qH)
            qi = qH[..., :, None]
            qj = qH[..., None, :]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(
                    (qi > 0) & (qj > 0) & off & (rest2 > 0),
                    first[..., :, None] * qj * qH2 / np.where(rest2 > 0, rest2, 1.0),
                    0.0,
                )
            return np.sum(t, axis=(-2, -1))
        if self.n == 3 and self.V <= 4096:
            # G_2 = sum_{i != j in H} q_i/(1-q_i) * q_j/(1-q_i-q_j); 1-q_i-q_j as the rest of the
            # larger entry minus the smaller one.
            with np.errstate(divide="ignore", invalid="ignore"):
                a = np.where(qH > 0, qH / rest, 0.0)  # q_i / (1 - q_i) on H
            G1 = np.sum(a, axis=-1)
            qi = q[..., :, None]
            qj = q[..., None, :]
            big_rest = np.where(qi >= qj, rest[..., :, None], rest[..., None, :])
            rest2 = np.maximum(big_rest - np.minimum(qi, qj), 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                term = np.where(rest2 > 0, qj / rest2, 0.0)
            term = term * (1.0 - np.eye(self.V))
            inner = np.einsum("...ij,...j->...i", term, (qH > 0).astype(np.float64))
            G2 = np.sum(a * inner, axis=-1)
            return np.maximum(np.sum(qH, axis=-1) - lam * (G1 + G2), 0.0)
        if self.is_batched or math.perm(int(np.count_nonzero(q > 0)), self.n) > MAX_TUPLES:
            # Any n at any V: the exponential-race quadrature of spectheory.solvers.wor.
            return self._prob_all_in_race(H)
        return Scheme.prob_all_in(self, H)

    def _prob_all_in_race(self, H: np.ndarray) -> np.ndarray:
        from .solvers.wor import wor_prob_all_in

        lead = np.broadcast_shapes(self.q.shape[:-1], H.shape[:-1])
        qb = np.broadcast_to(self.q, (*lead, self.V))
        Hb = np.broadcast_to(H, qb.shape)
        out = np.empty(qb.shape[:-1])
        for idx in np.ndindex(*qb.shape[:-1]):
            out[idx] = wor_prob_all_in(qb[idx], Hb[idx], self.n)[0]
        return out

    def enumerate(self) -> tuple[np.ndarray, np.ndarray]:
        self._check_unbatched("enumerate")
        support = np.flatnonzero(self.q > 0)
        k = len(support)
        self._guard_count(math.perm(k, self.n))
        tuples = np.array(list(itertools.permutations(support, self.n)), dtype=np.int64)
        tuples = tuples.reshape(-1, self.n)
        probs = np.ones(len(tuples))
        used = np.zeros(len(tuples))
        for j in range(self.n):
            x = tuples[:, j]
            if j == 0:
                denom = np.ones(len(tuples))
            else:
                # 1 - sum of earlier drafts = mass of all other tokens not yet drawn.
                denom = np.maximum(1.0 - used, 0.0)
                denom = np.where(denom < 1e-3, self._rest_exact(tuples[:, :j]), denom)
            probs *= self.q[x] / denom
            used += self.q[x]
        return tuples, probs

    def _rest_exact(self, drawn: np.ndarray) -> np.ndarray:
        """Mass of the tokens not in ``drawn`` (rows), summed directly (no cancellation)."""
        out = np.empty(len(drawn))
        q = self.q
        total_order = np.argsort(q)  # small first: accurate summation
        qs = q[total_order]
        for r, row in enumerate(drawn):
            keep = ~np.isin(total_order, row)
            out[r] = math.fsum(qs[keep])
        return out

    def sample(self, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
        # Gumbel-top-n: the order of log q + Gumbel noise is exactly sampling without replacement.
        shape = () if size is None else (size,)
        with np.errstate(divide="ignore"):
            logq = np.log(self.q)
        keys = logq + rng.gumbel(size=(*shape, *self.q.shape))
        if self.n == 1:
            return np.argmax(keys, axis=-1)[..., None]
        top = np.argpartition(-keys, self.n - 1, axis=-1)[..., : self.n]
        top_keys = np.take_along_axis(keys, top, axis=-1)
        order = np.argsort(-top_keys, axis=-1, kind="stable")
        return np.take_along_axis(top, order, axis=-1)


class Greedy(_SingleQ):
    r"""Greedy drafts (Hu et al., arXiv 2502.18779): the top-``(n-1)`` tokens of ``q`` are always
    drafted, the last draft is sampled from ``q`` restricted to the remaining tokens.

    Tie-break: tokens are ranked by ``q`` descending, ties by smaller token index first (a stable
    sort of ``-q``). With :math:`D` the fixed tokens,
    :math:`Q(H^n) = 1[D \subseteq H]\, q(H\setminus D)/q(\Omega\setminus D)`.
    Requires at least ``n`` tokens with :math:`q > 0`.
    """

    name: ClassVar[str] = "greedy"

    def _check(self) -> None:
        check_support_at_least(
            self.q, self.n, "q", "the last greedy draft needs mass outside the top n - 1 tokens"
        )

    @property
    def fixed(self) -> np.ndarray:
        """The fixed drafts :math:`D` in rank order, shape ``(*batch, n - 1)``."""
        return np.argsort(-self.q, axis=-1, kind="stable")[..., : self.n - 1]

    def fixed_mask(self) -> np.ndarray:
        """Boolean mask of :math:`D`, shape ``(*batch, V)``."""
        mask = np.zeros(self.q.shape, dtype=bool)
        np.put_along_axis(mask, self.fixed, True, axis=-1)
        return mask

    def rest_mass(self) -> np.ndarray:
        r""":math:`q(\Omega \setminus D)` summed directly over the rest (never ``1 - q(D)``)."""
        return np.sum(np.where(self.fixed_mask(), 0.0, self.q), axis=-1)

    def prob_all_in(self, H: Any) -> np.ndarray:
        H = self._as_mask(H)
        D = self.fixed_mask()
        has_D = np.all(H | ~D, axis=-1)
        inside = np.sum(np.where(H & ~D, self.q, 0.0), axis=-1)
        return np.where(has_D, inside / self.rest_mass(), 0.0)

    def enumerate(self) -> tuple[np.ndarray, np.ndarray]:
        self._check_unbatched("enumerate")
        D = self.fixed
        Dm = self.fixed_mask()
        last = np.flatnonzero((self.q > 0) & ~Dm)
        tuples = np.empty((len(last), self.n), dtype=np.int64)
        tuples[:, : self.n - 1] = D
        tuples[:, -1] = last
        return tuples, self.q[last] / self.rest_mass()

    def sample(self, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
        shape = () if size is None else (size,)
        rest = np.where(self.fixed_mask(), 0.0, self.q)
        last = _categorical(rng, rest, shape)  # (*shape, *batch)
        D = np.broadcast_to(self.fixed, (*shape, *self.fixed.shape))
        return np.concatenate([D, last[..., None]], axis=-1)


class Hub(_SingleQ):
    r"""The SpecHub two-draft law: hub :math:`a = \arg\max q` (smallest index on ties);
    :math:`\bar x_1 \sim q`; if :math:`\bar x_1 = a` then :math:`\bar x_2 \sim q(\cdot \mid \ne a)`,
    else :math:`\bar x_2 = a`.

    Every tuple contains :math:`a`, and :math:`Q(H^2) = 1[a \in H]\, q(H \setminus a)/(1 - q(a))`,
    the same set function as ``Greedy(q, 2)``. Requires at least 2 tokens with :math:`q > 0`.
    """

    name: ClassVar[str] = "hub"

    def __init__(self, q: Any, *, normalize: bool = False) -> None:
        super().__init__(q, 2, normalize=normalize)

    def _check(self) -> None:
        check_support_at_least(self.q, 2, "q", "SpecHub needs mass outside the hub token")

    @property
    def hub(self) -> np.ndarray:
        """The hub token per row."""
        return np.argmax(self.q, axis=-1)

    def _rest(self) -> np.ndarray:
        hub_mask = np.zeros(self.q.shape, dtype=bool)
        np.put_along_axis(hub_mask, np.asarray(self.hub)[..., None], True, axis=-1)
        return hub_mask, np.sum(np.where(hub_mask, 0.0, self.q), axis=-1)

    def prob_all_in(self, H: Any) -> np.ndarray:
        H = self._as_mask(H)
        hub_mask, rest = self._rest()
        has_a = np.any(H & hub_mask, axis=-1)
        inside = np.sum(np.where(H & ~hub_mask, self.q, 0.0), axis=-1)
        return np.where(has_a, inside / rest, 0.0)

    def enumerate(self) -> tuple[np.ndarray, np.ndarray]:
        self._check_unbatched("enumerate")
        a = int(self.hub)
        _, rest = self._rest()
        others = np.flatnonzero((self.q > 0) & (np.arange(self.V) != a))
        first_hub = np.stack([np.full(len(others), a), others], axis=1)
        first_other = np.stack([others, np.full(len(others), a)], axis=1)
        tuples = np.concatenate([first_hub, first_other]).astype(np.int64)
        probs = np.concatenate([self.q[a] * self.q[others] / rest, self.q[others]])
        return tuples, probs

    def sample(self, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
        shape = () if size is None else (size,)
        hub_mask, _ = self._rest()
        first = _categorical(rng, self.q, shape)
        second_other = _categorical(rng, np.where(hub_mask, 0.0, self.q), shape)
        a = np.broadcast_to(self.hub, first.shape)
        second = np.where(first == a, second_other, a)
        return np.stack([first, second], axis=-1)

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.q.shape))
        return f"Hub(q=<{shape}>)"


# ---------------------------------------------------------------------- several draft models
@dataclass(frozen=True, eq=False)
class Independent(Scheme):
    r"""One draft from each of ``n`` different draft models: :math:`\bar x_j \sim q_j`
    independently, so :math:`Q(H^n) = \prod_j q_j(H)`.

    No single ratio order is exact here; :math:`H \mapsto p(H) - \prod_j q_j(H)` is submodular
    (``docs/theory.md``).

    Parameters
    ----------
    qs
        Sequence of ``n`` draft distributions, all ``(V,)`` or all ``(B, V)``; or one array of shape
        ``(n, V)`` / ``(n, B, V)``.
    """

    qs: tuple[np.ndarray, ...]
    name: ClassVar[str] = "independent"
    #: Exact entries of each ``qs[j]`` (Fractions) when all were exact rationals, else None.
    exact_qs = None

    def __init__(self, qs: Sequence[Any] | np.ndarray, *, normalize: bool = False) -> None:
        if isinstance(qs, np.ndarray) and qs.ndim >= 2:
            qs = list(qs)
        if not isinstance(qs, Sequence) or isinstance(qs, (str, bytes)) or len(qs) == 0:
            raise SpecTheoryInputError(
                "argument 'qs': expected a non-empty sequence of draft distributions"
            )
        arrs = tuple(
            _readonly(as_distribution(q, f"qs[{j}]", normalize=normalize))
            for j, q in enumerate(qs)
        )
        for j, a in enumerate(arrs[1:], start=1):
            if a.shape != arrs[0].shape:
                raise SpecTheoryInputError(
                    f"argument 'qs[{j}]': shape {a.shape} differs from qs[0] shape {arrs[0].shape}"
                )
        object.__setattr__(self, "qs", arrs)
        exact = tuple(
            exact_distribution(q, f"qs[{j}]", normalize=normalize) for j, q in enumerate(qs)
        )
        if all(e is not None for e in exact):
            object.__setattr__(self, "exact_qs", exact)

    @property
    def n(self) -> int:
        return len(self.qs)

    @property
    def V(self) -> int:
        return int(self.qs[0].shape[-1])

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.qs[0].shape[:-1])

    @property
    def stacked(self) -> np.ndarray:
        """The draft distributions as one array ``(n, *batch, V)``."""
        return np.stack(self.qs)

    def row(self, b: int) -> Scheme:
        if not self.is_batched:
            return self
        out = object.__new__(Independent)
        object.__setattr__(out, "qs", tuple(_readonly(q[b]) for q in self.qs))
        if self.exact_qs is not None:
            object.__setattr__(out, "exact_qs", tuple(e[b] for e in self.exact_qs))
        return out

    def prob_all_in(self, H: Any) -> np.ndarray:
        H = self._as_mask(H)
        out = None
        for q in self.qs:
            s = np.sum(np.where(H, q, 0.0), axis=-1)
            out = s if out is None else out * s
        return out

    def enumerate(self) -> tuple[np.ndarray, np.ndarray]:
        self._check_unbatched("enumerate")
        supports = [np.flatnonzero(q > 0) for q in self.qs]
        self._guard_count(float(np.prod([len(s) for s in supports])))
        tuples = np.array(list(itertools.product(*supports)), dtype=np.int64).reshape(-1, self.n)
        probs = np.ones(len(tuples))
        for j, q in enumerate(self.qs):
            probs *= q[tuples[:, j]]
        return tuples, probs

    def sample(self, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
        shape = () if size is None else (size,)
        return np.stack([_categorical(rng, q, shape) for q in self.qs], axis=-1)

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.qs[0].shape))
        return f"Independent(qs=<{self.n} x {shape}>)"


@dataclass(frozen=True, eq=False)
class Joint(Scheme):
    r"""Any explicit law over ordered draft tuples.

    Parameters
    ----------
    tuples
        Integer array ``(T, n)`` of token ids in ``[0, V)``. Repeated rows are allowed (their
        probabilities add).
    probs
        Probabilities ``(T,)``: finite, non-negative, summing to 1.
    V
        Vocabulary size; default ``max(tuples) + 1``.
    normalize
        Rescale ``probs`` to sum to 1.
    """

    tuples: np.ndarray
    probs: np.ndarray
    V_: int = field(default=0, repr=False)
    name: ClassVar[str] = "joint"
    #: Exact ``probs`` (Fractions) when every entry was an exact rational, else None.
    exact_probs = None

    def __init__(
        self, tuples: Any, probs: Any, V: int | None = None, *, normalize: bool = False
    ) -> None:
        try:
            t = np.asarray(tuples)
        except (TypeError, ValueError) as exc:  # ragged rows
            raise SpecTheoryInputError(
                f"argument 'tuples': expected a (T, n) array of token ids with rows of equal "
                f"length ({exc})"
            ) from None
        if t.dtype == object:
            raise SpecTheoryInputError(
                "argument 'tuples': expected a (T, n) array of token ids with rows of equal length"
            )
        if t.ndim == 1:
            t = t[:, None]
        if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
            raise SpecTheoryInputError(
                f"argument 'tuples': expected a non-empty (T, n) array, got shape {t.shape}"
            )
        if not np.issubdtype(t.dtype, np.integer):
            if np.issubdtype(t.dtype, np.floating) and np.all(t == np.round(t)):
                t = t.astype(np.int64)
            else:
                raise SpecTheoryInputError("argument 'tuples': token ids must be integers")
        if t.min() < 0:
            raise SpecTheoryInputError("argument 'tuples': token ids must be >= 0")
        if V is not None and (
            isinstance(V, (bool, np.bool_)) or not isinstance(V, (int, np.integer))
        ):
            raise SpecTheoryInputError(
                f"argument 'V': vocabulary size must be an integer, got {V!r}"
            )
        Vv = int(t.max()) + 1 if V is None else int(V)
        if Vv < 1:
            raise SpecTheoryInputError("argument 'V': empty vocabulary (V = 0)")
        if t.max() >= Vv:
            raise SpecTheoryInputError(
                f"argument 'tuples': token id {int(t.max())} is out of range for V = {Vv}"
            )
        pr = as_distribution(probs, "probs", normalize=normalize, allow_batch=False)
        if pr.shape[0] != t.shape[0]:
            raise SpecTheoryInputError(
                f"argument 'probs': length {pr.shape[0]} does not match {t.shape[0]} tuples"
            )
        object.__setattr__(self, "tuples", _readonly(t.astype(np.int64)))
        object.__setattr__(self, "probs", _readonly(pr))
        object.__setattr__(self, "V_", Vv)
        exact = exact_distribution(probs, "probs", normalize=normalize)
        object.__setattr__(self, "exact_probs", exact)

    @property
    def n(self) -> int:
        return int(self.tuples.shape[1])

    @property
    def V(self) -> int:
        return self.V_

    def enumerate(self) -> tuple[np.ndarray, np.ndarray]:
        keep = self.probs > 0
        return self.tuples[keep], self.probs[keep]

    def sample(self, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
        idx = rng.choice(len(self.probs), size=size, p=self.probs)
        return self.tuples[idx]

    def __repr__(self) -> str:
        return f"Joint(T={len(self.probs)}, n={self.n}, V={self.V})"


def scheme_from_name(name: str, q: Any, n: int) -> Scheme:
    """Build a single-draft-model scheme from its short name (``SCHEME_NAMES``).

    ``"hub"`` ignores ``n`` (SpecHub always drafts 2 tokens).
    """
    if name == "iid":
        return IID(q, n)
    if name == "wor":
        return WithoutReplacement(q, n)
    if name == "greedy":
        return Greedy(q, n)
    if name == "hub":
        return Hub(q)
    raise SpecTheoryInputError(
        f"argument 'schemes': unknown scheme {name!r} (known: {', '.join(SCHEME_NAMES)})"
    )
