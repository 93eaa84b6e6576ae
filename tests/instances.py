"""Random target/draft pairs shared by several test modules."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np


def random_pair(
    rng: np.random.Generator, V: int, concentration: float
) -> tuple[np.ndarray, np.ndarray]:
    """Dirichlet ``p`` and ``q`` of size ``V``; with probability 0.3 each, one token of ``p`` and one
    of ``q`` (if ``q`` keeps some mass) is set to zero and the row renormalised."""
    p = rng.dirichlet(np.full(V, concentration))
    q = rng.dirichlet(np.full(V, concentration))
    if rng.random() < 0.3:
        p[rng.integers(V)] = 0.0
        p /= p.sum()
    if rng.random() < 0.3:
        k = int(rng.integers(V))
        if q.sum() - q[k] > 0:
            q[k] = 0.0
            q /= q.sum()
    return p, q


def chi2_top_and_rest(p: np.ndarray, out: np.ndarray, top: int, rest_bins: int) -> tuple[float, int]:
    """Chi-square statistic of the samples ``out`` (token ids) against the law ``p``, over the
    ``top`` most likely tokens plus ``rest_bins`` equal-mass bins of the rest; returns
    ``(chi2, degrees of freedom)``."""
    V = len(p)
    best = np.argsort(-p)[:top]
    rest = np.setdiff1d(np.arange(V), best)
    rest = rest[np.argsort(p[rest])]
    edges = np.searchsorted(
        np.cumsum(p[rest]) / p[rest].sum(), np.linspace(0, 1, rest_bins + 1)[1:-1]
    )
    bins = np.zeros(V, dtype=np.int64)
    bins[best] = np.arange(top)
    for b, chunk in enumerate(np.split(rest, edges)):
        bins[chunk] = top + b
    nb = top + rest_bins
    expected = np.bincount(bins, weights=p, minlength=nb) * len(out)
    observed = np.bincount(bins[out], minlength=nb)
    return float(np.sum((observed - expected) ** 2 / expected)), nb - 1


def enumerate_iid_law(rule: Any, q: np.ndarray, n: int) -> tuple[np.ndarray, float]:
    """Exact output law and acceptance of an i.i.d. verifier rule (anything with
    ``output_law_given(drafts)``) by enumerating the draft multisets of ``q``'s support."""
    V = len(q)
    law = np.zeros(V)
    acc = 0.0
    for ms in itertools.combinations_with_replacement(np.flatnonzero(q > 0), n):
        counts = np.bincount(ms, minlength=V)
        mult = math.factorial(n) / np.prod([math.factorial(int(c)) for c in counts])
        w = mult * float(np.prod(q[list(ms)]))
        out, a = rule.output_law_given(np.array(ms))
        law += w * out
        acc += w * a
    return law, acc
