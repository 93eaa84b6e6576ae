r"""The statistics behind :func:`spectheory.audit.audit`: bins, the test, its power, the TV interval.

**Bins (top tokens plus a binned tail).** Tokens are sorted by :math:`p` (descending) and cut into
consecutive bins of :math:`p`-mass at least :math:`1/k_{\max}`: a token that carries that much
alone is its own bin (the top tokens), the tail is grouped by similar :math:`p`. The last bin is
merged into the previous one when it is lighter than half the target mass. Tokens with
:math:`p = 0` form the *impossible* bin: one output there rejects with p-value 0.

**Test.** Pearson's :math:`X^2 = \sum_b (c_b - N p_b)^2 / (N p_b)` on the :math:`k` bins, referred to
:math:`\chi^2_{k-1}` (every expected count is at least 5 by construction of the sample size).

**Power analysis.** Under an alternative law :math:`o`, :math:`X^2` is approximately noncentral
:math:`\chi^2_{k-1}(\lambda)` with :math:`\lambda = N \chi^2(o_b \,\|\, p_b)` (Cohen's
:math:`w^2 = \chi^2(o_b\|p_b)`). By Cauchy-Schwarz,

.. math:: 2\,\mathrm{TV}(o_b, p_b) = \sum_b \frac{|o_b - p_b|}{\sqrt{p_b}}\sqrt{p_b}
          \le \sqrt{\chi^2(o_b\|p_b)},

so every alternative whose binned law is at total variation :math:`\ge \varepsilon` from
:math:`p_b` has :math:`\lambda \ge 4 N \varepsilon^2`, and the power, increasing in
:math:`\lambda`, is at least :math:`\Pr[\chi^2_{k-1}(4N\varepsilon^2) > \chi^2_{k-1,1-\ell}]`.
:func:`sample_size` returns the smallest :math:`N` for which this reaches ``power`` (bisection on
the exact noncentral distribution). The guarantee is for the binned law: a rule that moves mass
only *inside* a tail bin is seen with the TV of the binned law (singleton bins lose nothing).

**TV interval.** The point estimate is the plug-in :math:`\mathrm{TV}(\hat o_b, p_b)` (biased
upwards by sampling noise). The interval is the Bretagnolle-Huber-Carol bound: with probability at
least :math:`1 - \delta`, :math:`\|\hat o_b - o_b\|_1 \le \sqrt{2(k\ln 2 + \ln(1/\delta))/N}`, so
by the triangle inequality :math:`\mathrm{TV}(o_b, p_b)` lies within
:math:`r = \sqrt{(k \ln 2 + \ln(1/\delta))/(2N)}` of the estimate (non-asymptotic, conservative).

**Sequential mode: a mixture SPRT.** With a Dirichlet prior :math:`\mathrm{Dir}(c\,p_b)` on the
alternative, the Bayes factor

.. math:: M_N = \frac{\Gamma(c)}{\Gamma(c + N)} \prod_b
          \frac{\Gamma(c p_b + n_b)}{\Gamma(c p_b)\, p_b^{n_b}}

is a non-negative martingale of mean 1 under :math:`H_0` (it is the likelihood ratio of the
mixture), so by Ville's inequality :math:`\Pr_{H_0}[\sup_N M_N \ge 1/\alpha] \le \alpha`: the test
may be checked after every sample and stopped at any time. ``c`` is the number of bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Bins",
    "chi_square",
    "detectable_tv",
    "make_bins",
    "msprt_log_bf",
    "power_at",
    "sample_size",
    "tv_radius",
]

#: Smallest expected count per bin for the chi-square approximation.
MIN_EXPECTED = 5.0


@dataclass(frozen=True, eq=False)
class Bins:
    """A partition of the outcomes: ``index[i]`` is the bin of outcome ``i`` (``-1``: p = 0)."""

    index: np.ndarray
    p: np.ndarray

    @property
    def k(self) -> int:
        return int(self.p.shape[0])

    def counts(self, outcomes: np.ndarray) -> tuple[np.ndarray, int]:
        """Counts per bin and the number of outcomes in the impossible bin."""
        b = self.index[np.asarray(outcomes, dtype=np.int64)]
        bad = int(np.count_nonzero(b < 0))
        return np.bincount(b[b >= 0], minlength=self.k), bad


def make_bins(p: np.ndarray, max_bins: int = 64) -> Bins:
    """Top tokens plus a binned tail (module docstring)."""
    p = np.asarray(p, dtype=np.float64)
    if max_bins < 2:
        raise ValueError(f"argument 'bins': need at least 2 bins, got {max_bins}")
    index = np.full(p.shape[0], -1, dtype=np.int64)
    order = np.argsort(-p, kind="stable")
    order = order[p[order] > 0]
    target = 1.0 / max_bins
    masses: list[float] = []
    cur, b = 0.0, 0
    for i in order:
        index[i] = b
        cur += p[i]
        if cur >= target:
            masses.append(cur)
            cur, b = 0.0, b + 1
    if cur > 0:
        if masses and cur < target / 2:
            index[index == b] = b - 1
            masses[-1] += cur
        else:
            masses.append(cur)
    pb = np.asarray(masses)
    if pb.shape[0] < 2:  # a point mass: nothing to test but the impossible bin
        pb = np.array([1.0])
    return Bins(index, pb / pb.sum())


def chi_square(counts: np.ndarray, p: np.ndarray) -> tuple[float, int, float]:
    """Pearson's statistic, its degrees of freedom and the p-value."""
    from scipy.stats import chi2

    N = float(counts.sum())
    df = len(p) - 1
    if df < 1 or N == 0:
        return 0.0, max(df, 0), 1.0
    e = N * p
    x2 = float(np.sum((counts - e) ** 2 / e))
    return x2, df, float(chi2.sf(x2, df))


def power_at(N: float, eps: float, k: int, level: float) -> float:
    r"""Guaranteed power of the chi-square test on ``k`` bins at ``N`` samples against every binned
    alternative at TV :math:`\ge` ``eps`` (module docstring)."""
    from scipy.stats import chi2, ncx2

    df = max(k - 1, 1)
    crit = chi2.isf(level, df)
    return float(ncx2.sf(crit, df, 4.0 * N * eps * eps))


def sample_size(eps: float, k: int, level: float, power: float, min_bin: float = 1.0) -> int:
    """Smallest ``N`` with :func:`power_at` ``>= power``, and at least ``MIN_EXPECTED / min_bin``
    (every expected bin count >= 5)."""
    if not 0 < eps <= 1:
        raise ValueError(f"argument 'tv': must lie in (0, 1], got {eps!r}")
    lo, hi = 1, 2
    while power_at(hi, eps, k, level) < power:
        lo, hi = hi, hi * 2
        if hi > 1 << 50:  # pragma: no cover - absurd inputs
            raise ValueError("sample size beyond 2^50")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if power_at(mid, eps, k, level) >= power:
            hi = mid
        else:
            lo = mid
    return max(hi, math.ceil(MIN_EXPECTED / min_bin))


def detectable_tv(N: int, k: int, level: float, power: float) -> float:
    """Smallest TV the test detects with probability ``power`` at ``N`` samples (bisection)."""
    lo, hi = 0.0, 1.0
    if power_at(N, hi, k, level) < power:
        return float("inf")
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if power_at(N, mid, k, level) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def tv_radius(N: int, k: int, delta: float) -> float:
    """Half-width of the Bretagnolle-Huber-Carol interval for the binned TV."""
    return math.sqrt((k * math.log(2.0) + math.log(1.0 / delta)) / (2.0 * N))


def msprt_log_bf(counts: np.ndarray, p: np.ndarray, c: float | None = None) -> float:
    """Log Bayes factor of the Dirichlet(c p) mixture against ``p`` (module docstring)."""
    from scipy.special import gammaln

    counts = np.asarray(counts, dtype=np.float64)
    c = float(len(p)) if c is None else float(c)
    N = counts.sum()
    a = c * p
    return float(
        gammaln(c) - gammaln(c + N) + np.sum(gammaln(a + counts) - gammaln(a))
        - np.sum(counts * np.log(p))
    )
