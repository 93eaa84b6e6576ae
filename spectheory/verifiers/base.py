r"""The common verifier interface.

A *verifier* is a rule that, given the target :math:`p`, the draft distribution(s) :math:`q`, and the
drawn drafts :math:`\bar x`, outputs a token :math:`Y`. It is *lossless* when :math:`Y \sim p` exactly,
and it *accepts* when :math:`Y` is one of the drafts. Every lossless rule's acceptance is at most
:math:`\alpha^*` of its draft scheme (:func:`spectheory.optimal_acceptance`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..schemes import Scheme

__all__ = [
    "Estimate",
    "Verifier",
    "finish_law",
    "get",
    "is_exact_input",
    "law_pair",
    "law_vector",
    "law_zeros",
    "names",
    "register",
]


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate with its standard error and a two-sided confidence interval."""

    mean: float
    stderr: float
    low: float
    high: float
    samples: int
    level: float = 0.99

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high


class Verifier(abc.ABC):
    """Base class of verification rules.

    Subclasses set ``name`` (the registry key), ``lossless`` and implement the methods below. ``p``
    and ``q`` are ``(V,)`` or batches ``(B, V)`` where the rule allows.
    """

    name: ClassVar[str] = ""
    lossless: ClassVar[bool] = True

    @abc.abstractmethod
    def scheme(self, q: Any, n: int) -> Scheme:
        """The draft scheme this rule verifies (whose alpha* bounds its acceptance)."""

    def acceptance(self, p: Any, q: Any, n: int) -> float | np.ndarray:
        r"""Exact acceptance probability :math:`\Pr(Y \in \bar x) = \sum_y a(y)`.

        Default: the sum of :meth:`accepted_mass` (a float for one position, ``(B,)`` for a batch).
        Rules with a cheaper closed form override it.
        """
        a = self.accepted_mass(p, q, n).sum(axis=-1)
        return float(a) if a.ndim == 0 else a

    @abc.abstractmethod
    def accepted_mass(self, p: Any, q: Any, n: int) -> np.ndarray:
        r"""Per-token accepted mass :math:`a(y) = \Pr(\text{accept and } Y = y)`; sums to the
        acceptance."""

    @abc.abstractmethod
    def sample(
        self, p: Any, q: Any, drafts: Any, rng: np.random.Generator
    ) -> tuple[int, bool]:
        """Verify one draft tuple: return ``(output token, accepted)``."""

    def tuple_law(self, p: Any, q: Any, drafts: Any) -> tuple[np.ndarray, np.ndarray]:
        r"""Exact conditional law of the rule's output given one drafted tuple.

        Parameters
        ----------
        p, q
            Target and draft distribution(s), as passed to :meth:`sample` (one position).
        drafts
            One draft tuple, shape ``(n,)``, in the order ``scheme(q, n).sample`` produces it.

        Returns
        -------
        (acc, rej)
            Both of shape ``(V,)``: ``acc[y]`` = Pr(the rule accepts and outputs ``y`` | drafts)
            (nonzero only on drafted tokens; "accepts" is the flag :meth:`sample` returns),
            ``rej[y]`` = Pr(the rule rejects and outputs ``y`` | drafts);
            ``acc.sum() + rej.sum() == 1``. Summed over the scheme's tuples with their
            probabilities, ``acc`` is :meth:`accepted_mass` and ``acc + rej`` is the output law.
            Rational rules (sd, rrs, rrs_wor, greedy, spechub, naive) also take ``p``, ``q`` as
            lists / object arrays of :class:`fractions.Fraction` and then return object arrays
            of Fractions (exact arithmetic; float entries are converted exactly).
        """
        raise NotImplementedError(f"verifier {self.name!r} does not implement tuple_law")

    # ------------------------------------------------------------------ additive helpers
    def exact_feasible(self, p: Any, q: Any, n: int) -> bool:
        """Whether :meth:`acceptance` is exact and affordable here (closed forms: always)."""
        return True

    def acceptance_mc(
        self,
        p: Any,
        q: Any,
        n: int,
        rng: np.random.Generator,
        samples: int = 10_000,
        level: float = 0.99,
    ) -> Estimate:
        r"""Monte Carlo estimate of the acceptance by running :meth:`sample` on drafts drawn from
        :meth:`scheme`: the sample mean of :math:`1[\text{accepted}]`, with a normal-approximation
        confidence interval at ``level``. One position only (``p``, ``q`` of shape ``(V,)``)."""
        from .._validate import check_rng

        check_rng(rng)
        pv = as_single(p, "p")
        scheme = self.scheme(q, n)
        drafts = scheme.sample(rng, samples)
        acc = np.fromiter(
            (self.sample(pv, q, drafts[s], rng)[1] for s in range(samples)),
            dtype=np.float64,
            count=samples,
        )
        return estimate_from(acc, level)


def z_value(level: float) -> float:
    """Two-sided standard normal quantile for a confidence ``level`` in (0, 1)."""
    from statistics import NormalDist

    if not 0.0 < level < 1.0:
        raise ValueError(f"argument 'level': must lie in (0, 1), got {level!r}")
    return float(NormalDist().inv_cdf(0.5 + level / 2.0))


def estimate_from(values: np.ndarray, level: float = 0.99) -> Estimate:
    """An :class:`Estimate` (mean, standard error, normal CI at ``level``) of i.i.d. ``values``."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size < 2:
        raise ValueError(f"argument 'values': need at least 2 samples, got {v.size}")
    mean = float(v.mean())
    se = float(v.std(ddof=1) / np.sqrt(v.size))
    z = z_value(level)
    return Estimate(mean, se, mean - z * se, mean + z * se, int(v.size), level)


def is_exact_input(*xs: Any) -> bool:
    """Whether any of ``xs`` holds exact rationals: an object array or a (nested) list with a
    :class:`fractions.Fraction` (or other non-integer ``numbers.Rational``) entry."""
    import numbers

    for x in xs:
        if isinstance(x, np.ndarray) and x.dtype != object:
            continue
        try:
            flat = np.asarray(x, dtype=object).ravel()
        except (TypeError, ValueError):
            continue
        if any(
            isinstance(v, numbers.Rational) and not isinstance(v, (int, np.integer))
            for v in flat
        ):
            return True
    return False


def law_vector(x: Any, name: str, exact: bool) -> np.ndarray:
    """One validated distribution ``(V,)`` for :meth:`Verifier.tuple_law`: float64, or with
    ``exact`` an object array of :class:`fractions.Fraction` (floats converted without rounding;
    the checks of :func:`as_single` apply to its float copy)."""
    from fractions import Fraction

    fv = as_single(x, name)
    if not exact:
        return fv
    out = np.empty(fv.shape[0], dtype=object)
    out[:] = [Fraction(v) for v in np.asarray(x, dtype=object).ravel()]
    return out


def law_zeros(V: int, exact: bool) -> np.ndarray:
    """A zero vector of the dtype :meth:`Verifier.tuple_law` returns."""
    if not exact:
        return np.zeros(V)
    from fractions import Fraction

    out = np.empty(V, dtype=object)
    out[:] = [Fraction(0)] * V
    return out


def finish_law(acc: np.ndarray, rej: np.ndarray, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(acc, rej)`` as float64 arrays, or with ``exact`` as object arrays of Fractions (entries
    that numpy turned into Python ints, e.g. ``max(x, 0)``, become Fractions)."""
    if not exact:
        return np.asarray(acc, dtype=np.float64), np.asarray(rej, dtype=np.float64)
    from fractions import Fraction

    def conv(a: np.ndarray) -> np.ndarray:
        out = np.empty(len(a), dtype=object)
        out[:] = [Fraction(v) for v in a]
        return out

    return conv(acc), conv(rej)


def law_pair(p: Any, q: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validated ``(p, q, exact)`` of one position for :meth:`Verifier.tuple_law`."""
    from .._validate import SpecTheoryInputError

    exact = is_exact_input(p, q)
    pv, qv = law_vector(p, "p", exact), law_vector(q, "q", exact)
    if pv.shape != qv.shape:
        raise SpecTheoryInputError(
            f"argument 'q': vocabulary size {qv.shape[0]} does not match p's V = {pv.shape[0]}"
        )
    return pv, qv, exact


def as_single(x: Any, name: str) -> np.ndarray:
    """Validate one distribution ``(V,)`` (no batch) and return it as float64."""
    from .._validate import as_distribution

    return as_distribution(x, name, allow_batch=False)


_REGISTRY: dict[str, type[Verifier]] = {}


def register(cls: type[Verifier]) -> type[Verifier]:
    """Class decorator: make ``cls`` reachable as ``spectheory.verifiers.acceptance(cls.name, ...)``."""
    if not cls.name:
        raise ValueError(f"verifier class {cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> type[Verifier]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"argument 'name': unknown verifier {name!r} (known: {', '.join(names())})"
        ) from None
