r"""Black-box audits: :func:`audit` (token level) and :func:`audit_decoder` (block level).

Both run the implementation under audit, collect its outputs, and test the hypothesis
:math:`H_0`: *the output law is the target's* with the statistics of :mod:`spectheory.audit.stats`
(top tokens plus binned tail, Pearson :math:`X^2`, a power analysis, a Bretagnolle-Huber-Carol
interval for the total variation, and in sequential mode a mixture SPRT).

Verdicts (:class:`Status`):

* ``FAIL``: :math:`H_0` is rejected at ``level`` (or an output of target probability 0 was seen).
  A lossless implementation gets FAIL with probability at most ``level``.
* ``PASS``: not rejected, and the run was large enough to reject with probability at least
  ``power`` if the (binned) output law were at total variation ``tv`` or more from the target.
* ``INCONCLUSIVE``: not rejected, but too few samples for that guarantee (``detectable_tv`` says
  what the run could see).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import stats

__all__ = ["DEFAULT_TV", "AuditResult", "Status", "audit", "audit_decoder"]

#: Total variation the audit must detect when ``tv`` is not given.
DEFAULT_TV: float = 0.02
#: Default largest number of bins.
DEFAULT_BINS: int = 64
#: Sequential mode: the mixture SPRT is evaluated every this many samples.
CHECK_EVERY: int = 64


class Status(enum.Enum):
    """Verdict of an audit."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, eq=False)
class AuditResult:
    r"""Outcome of :func:`audit` or :func:`audit_decoder`.

    Attributes
    ----------
    status
        :class:`Status` (module docstring).
    tv, tv_interval
        Plug-in total variation of the binned output law from the target's, and the
        Bretagnolle-Huber-Carol interval at confidence ``1 - level``.
    pvalue
        p-value of :math:`H_0` (sequential mode: Bonferroni of the SPRT and the final test).
    samples
        Outputs drawn.
    acceptance, acceptance_interval
        Token level: the fraction of outputs that are one of the drafts, with a normal interval
        at ``1 - level``. Block level: mean accepted draft tokens per target call when the decoder
        reports it (an ``accepted`` attribute), else None.
    claimed_acceptance
        The rule's own claim, when given; ``claim_consistent`` whether it lies in the interval.
    alpha_star
        :math:`\alpha^*` of the draft scheme (token level), None when not computed;
        ``exceeds_alpha_star``: the acceptance interval lies above it, a one-sided test at
        ``level / 2`` that the rule is lossy (no lossless rule accepts more than
        :math:`\alpha^*`; a rule that attains it exactly trips the check with probability about
        ``level / 2``). Acceptance here is "the output is one of the drafts", which can exceed
        the rule's own accept flag (a rejected draw may land on a drafted token).
    test
        The test used, in words.
    bins, statistic, df
        Number of bins, Pearson's statistic and its degrees of freedom.
    tv_target, planned_samples, detectable_tv
        The TV the audit was asked to detect, the power analysis' sample size for it, and the
        smallest TV this run detects with probability ``power``.
    impossible
        Outputs of target probability 0.
    sequential, stopped_early
        Sequential mode and whether it stopped before ``planned_samples``.
    counts, expected
        Observed and expected counts per bin.
    """

    status: Status
    tv: float
    tv_interval: tuple[float, float]
    pvalue: float
    samples: int
    acceptance: float | None
    acceptance_interval: tuple[float, float] | None
    claimed_acceptance: float | None
    claim_consistent: bool | None
    alpha_star: float | None
    exceeds_alpha_star: bool | None
    test: str
    bins: int
    statistic: float
    df: int
    tv_target: float
    planned_samples: int
    detectable_tv: float
    impossible: int
    level: float
    power: float
    sequential: bool
    stopped_early: bool
    counts: np.ndarray
    expected: np.ndarray

    def summary(self) -> str:
        lo, hi = self.tv_interval
        s = (
            f"{self.status.name}: TV {self.tv:.4f} [{lo:.4f}, {hi:.4f}], p-value {self.pvalue:.3g}, "
            f"{self.samples} samples (planned {self.planned_samples} to detect TV {self.tv_target:g}"
            f" at level {self.level:g} with power {self.power:g}), {self.test}"
        )
        if self.acceptance is not None:
            s += f"; acceptance {self.acceptance:.4f}"
            if self.claimed_acceptance is not None:
                s += f" (claimed {self.claimed_acceptance:.4f})"
            if self.alpha_star is not None:
                s += f", alpha* {self.alpha_star:.4f}"
        return s

    def __str__(self) -> str:
        return self.summary()


# ---------------------------------------------------------------------- shared engine
def _check_level(level: Any, name: str) -> float:
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise ValueError(f"argument {name!r}: must lie in (0, 1), got {level!r}")
    return float(level)


def _check_samples(samples: Any) -> int | None:
    if samples is None:
        return None
    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 2:
        raise ValueError(f"argument 'samples': must be an integer >= 2, got {samples!r}")
    return int(samples)


@dataclass
class _Plan:
    bins: stats.Bins
    N: int
    planned: int
    tv: float
    level: float
    power: float
    sequential: bool


def _plan(
    law: np.ndarray, samples: int | None, level: float, power: float, tv: float | None,
    max_bins: int, sequential: bool,
) -> _Plan:
    bins = stats.make_bins(law, max_bins)
    eps = DEFAULT_TV if tv is None else float(tv)
    if not 0 < eps <= 1:
        raise ValueError(f"argument 'tv': must lie in (0, 1], got {tv!r}")
    # Sequential mode spends level/2 on the SPRT and level/2 on the final chi-square test.
    final_level = level / 2 if sequential else level
    planned = stats.sample_size(eps, bins.k, final_level, power, float(bins.p.min()))
    N = planned if samples is None else samples
    return _Plan(bins, N, planned, eps, level, power, sequential)


def _run(
    plan: _Plan, draw: Callable[[int], tuple[np.ndarray, np.ndarray | None]]
) -> tuple[np.ndarray, np.ndarray | None, float, bool]:
    """Draw ``plan.N`` outcomes in batches (``draw(m) -> (outcomes, accepted flags)``); in
    sequential mode stop when the SPRT crosses ``2 / level``. Returns outcomes, flags, the SPRT's
    anytime p-value and whether it stopped early."""
    outs: list[np.ndarray] = []
    accs: list[np.ndarray] = []
    has_acc = True
    done = 0
    sprt_p = 1.0
    counts = np.zeros(plan.bins.k, dtype=np.int64)
    bad = 0
    log_bound = math.log(2.0 / plan.level)
    while done < plan.N:
        m = min(CHECK_EVERY if plan.sequential else plan.N, plan.N - done)
        o, a = draw(m)
        outs.append(o)
        if a is None:
            has_acc = False
        else:
            accs.append(a)
        done += m
        if plan.sequential:
            c, b = plan.bins.counts(o)
            counts += c
            bad += b
            if bad:
                return (np.concatenate(outs), np.concatenate(accs) if has_acc else None, 0.0,
                        done < plan.N)
            lbf = stats.msprt_log_bf(counts, plan.bins.p)
            sprt_p = min(sprt_p, math.exp(-lbf) if lbf > -700 else 1.0)
            if lbf >= log_bound:
                return (np.concatenate(outs), np.concatenate(accs) if has_acc else None, sprt_p,
                        done < plan.N)
    return np.concatenate(outs), (np.concatenate(accs) if has_acc else None), sprt_p, False


def _verdict(
    plan: _Plan, outcomes: np.ndarray, sprt_p: float, stopped: bool,
) -> dict[str, Any]:
    bins = plan.bins
    counts, bad = bins.counts(outcomes)
    N = len(outcomes)
    x2, df, pchi = stats.chi_square(counts, bins.p)
    level = plan.level
    if plan.sequential:
        pvalue = min(1.0, 2.0 * min(sprt_p, pchi if not stopped else 1.0))
        test = (f"mixture SPRT (Dirichlet, Ville; level {level / 2:g}) + Pearson chi-square on "
                f"{bins.k} bins (level {level / 2:g})")
    else:
        pvalue = pchi
        test = f"Pearson chi-square on {bins.k} bins (top tokens + binned tail)"
    if bad:
        pvalue = 0.0
    o_hat = counts / N
    # TV of the empirical law (impossible outcomes count fully) from p, binned.
    tv = 0.5 * (float(np.abs(o_hat - bins.p).sum()) + bad / N)
    r = stats.tv_radius(N, bins.k + (1 if bad else 0), level)
    final_level = level / 2 if plan.sequential else level
    det = stats.detectable_tv(N, bins.k, final_level, plan.power)
    if pvalue < level:
        status = Status.FAIL
    elif N >= plan.planned:
        status = Status.PASS
    else:
        status = Status.INCONCLUSIVE
    return dict(
        status=status, tv=tv, tv_interval=(max(0.0, tv - r), min(1.0, tv + r)), pvalue=pvalue,
        samples=N, test=test, bins=bins.k, statistic=x2, df=df, tv_target=plan.tv,
        planned_samples=plan.planned, detectable_tv=det, impossible=bad, level=level,
        power=plan.power, sequential=plan.sequential, stopped_early=stopped, counts=counts,
        expected=N * bins.p,
    )


def _acceptance_fields(
    acc: np.ndarray | None, level: float, claim: float | None, alpha_star: float | None
) -> dict[str, Any]:
    if acc is None:
        return dict(acceptance=None, acceptance_interval=None, claimed_acceptance=claim,
                    claim_consistent=None, alpha_star=alpha_star, exceeds_alpha_star=None)
    from ..verifiers.base import z_value

    a = np.asarray(acc, dtype=np.float64)
    mean = float(a.mean())
    se = float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else float("nan")
    z = z_value(1.0 - level)
    lo, hi = mean - z * se, mean + z * se
    return dict(
        acceptance=mean, acceptance_interval=(lo, hi), claimed_acceptance=claim,
        claim_consistent=None if claim is None else bool(lo <= claim <= hi),
        alpha_star=alpha_star,
        exceeds_alpha_star=None if alpha_star is None else bool(lo > alpha_star + 1e-12),
    )


# ---------------------------------------------------------------------- token level
def audit(
    sampler: Callable[[np.ndarray, np.random.Generator], Any],
    p: Any,
    scheme: Any,
    *,
    samples: int | None = None,
    level: float = 0.01,
    power: float = 0.99,
    tv: float | None = None,
    seed: int | None = None,
    sequential: bool = False,
    bins: int = DEFAULT_BINS,
    claimed_acceptance: float | None = None,
    alpha_star: float | bool | None = True,
) -> AuditResult:
    r"""Audit a token-level verifier given as a black box: is its output law the target's?

    Parameters
    ----------
    sampler
        ``sampler(drafts, rng) -> token id``: the rule under audit (it closes over its own
        ``p`` and ``q``); ``drafts`` is one tuple drawn from ``scheme``, ``rng`` the audit's
        :class:`numpy.random.Generator` (the sampler's only randomness).
    p
        The target distribution ``(V,)``.
    scheme
        A :class:`~spectheory.schemes.Scheme` that draws the drafts.
    samples
        Sampler calls; default the power analysis' sample size for ``tv``.
    level
        Significance level: a lossless sampler gets FAIL with probability at most ``level``.
    power
        Probability of FAIL the power analysis guarantees against a (binned) output law at total
        variation ``tv`` from ``p``.
    tv
        The smallest total variation to detect (default ``DEFAULT_TV`` = 0.02).
    seed
        Seed of the generator (drafts and sampler).
    sequential
        Check a mixture SPRT every ``CHECK_EVERY`` samples and stop at once when it rejects
        (type-I error ``level / 2`` at any stopping time, Ville's inequality), with a final
        chi-square test at ``level / 2`` after ``samples`` (total error at most ``level``).
    bins
        Largest number of bins (top tokens plus binned tail, :mod:`spectheory.audit.stats`).
    claimed_acceptance
        The acceptance the rule claims (compared with the measured one).
    alpha_star
        ``True``: compute :math:`\alpha^*(p, \text{scheme})`; a float: use it; None: skip.

    Returns
    -------
    AuditResult

    Notes
    -----
    Sample size. To detect every output law whose binned law is at TV :math:`\ge\varepsilon` from
    the target's with probability ``power`` at ``level``, the power analysis uses
    :math:`\lambda = N\chi^2(o\|p) \ge 4N\varepsilon^2` (Cauchy-Schwarz) in the noncentral
    :math:`\chi^2_{k-1}(\lambda)` law of Pearson's statistic and returns the smallest :math:`N`
    (at least 5 expected counts per bin); derivation in :mod:`spectheory.audit.stats`.
    """
    from .._validate import as_distribution

    pv = as_distribution(p, "p", allow_batch=False)
    if not callable(sampler):
        raise ValueError("argument 'sampler': expected a callable (drafts, rng) -> token id")
    if getattr(scheme, "V", None) != pv.shape[0]:
        raise ValueError(
            f"argument 'scheme': expected a Scheme over V = {pv.shape[0]} tokens, got {scheme!r}"
        )
    level = _check_level(level, "level")
    power = _check_level(power, "power")
    plan = _plan(pv, _check_samples(samples), level, power, tv, bins, sequential)
    rng = np.random.default_rng(seed)
    V = pv.shape[0]

    def draw(m: int) -> tuple[np.ndarray, np.ndarray]:
        drafts = scheme.sample(rng, m)
        out = np.empty(m, dtype=np.int64)
        acc = np.empty(m, dtype=bool)
        for i in range(m):
            y = int(sampler(drafts[i], rng))
            if not 0 <= y < V:
                raise ValueError(f"argument 'sampler': returned token {y}, outside 0..{V - 1}")
            out[i] = y
            acc[i] = y in drafts[i]
        return out, acc

    outcomes, acc, sprt_p, stopped = _run(plan, draw)
    a_star: float | None
    if alpha_star is True:
        try:
            from ..api import optimal_acceptance

            a_star = float(optimal_acceptance(pv, scheme).value)
        except Exception:  # pragma: no cover - alpha* out of reach for this scheme
            a_star = None
    elif alpha_star is None or alpha_star is False:
        a_star = None
    else:
        a_star = float(alpha_star)
    return AuditResult(
        **_verdict(plan, outcomes, sprt_p, stopped),
        **_acceptance_fields(acc, level, claimed_acceptance, a_star),
    )


# ---------------------------------------------------------------------- block level
def audit_decoder(
    decode_fn: Callable[..., Any],
    target: Any,
    draft: Any,
    *,
    num_tokens: int,
    samples: int | None = None,
    level: float = 0.01,
    power: float = 0.99,
    tv: float | None = None,
    seed: int | None = None,
    sequential: bool = False,
    bins: int = DEFAULT_BINS,
    context: Any = (),
) -> AuditResult:
    r"""Audit a speculative decoder: is the law of its first ``num_tokens`` tokens the target's?

    Parameters
    ----------
    decode_fn
        ``decode_fn(target, draft, num_tokens, rng) -> tokens``: generates (at least)
        ``num_tokens`` tokens after ``context`` (the models are passed through unchanged; a
        decoder for a fixed context closes over it). It may return an object with ``tokens`` and
        ``accepted`` (accepted draft tokens per target call, e.g.
        :class:`~spectheory.blocks.decode.DecodeResult`); the acceptance is then their mean.
    target, draft
        Conditional models ``context tuple -> (V,)`` whose sequence law can be enumerated
        (:class:`~spectheory.blocks.Markov`, :class:`~spectheory.blocks.Tabular`).
    num_tokens
        Length ``L`` of the audited prefix; the reference is the target's exact law of ``L``
        tokens (:func:`spectheory.audit.sequence_law`), with ``V**L`` outcomes at most.
    samples, level, power, tv, seed, sequential, bins
        As in :func:`audit`.
    context
        Token ids before the generated ones (for the reference law).
    """
    from .exact import sequence_law

    if not callable(decode_fn):
        raise ValueError("argument 'decode_fn': expected a callable")
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1:
        raise ValueError(f"argument 'num_tokens': must be an integer >= 1, got {num_tokens!r}")
    level = _check_level(level, "level")
    power = _check_level(power, "power")
    ctx = tuple(int(t) for t in context)
    law = sequence_law(target, num_tokens, context=ctx)
    V = int(np.asarray(target(ctx)).shape[0])
    flat = np.zeros(V**num_tokens)
    for s, w in law.items():
        flat[_encode(s, V)] = float(w)
    plan = _plan(flat, _check_samples(samples), level, power, tv, bins, sequential)
    rng = np.random.default_rng(seed)

    def draw(m: int) -> tuple[np.ndarray, np.ndarray | None]:
        out = np.empty(m, dtype=np.int64)
        accs: list[float] = []
        for i in range(m):
            res = decode_fn(target, draft, num_tokens, rng)
            toks = getattr(res, "tokens", res)
            acc = getattr(res, "accepted", None)
            t = [int(x) for x in np.asarray(toks).ravel()[:num_tokens]]
            if len(t) < num_tokens or min(t) < 0 or max(t) >= V:
                raise ValueError(
                    f"argument 'decode_fn': expected {num_tokens} token ids in 0..{V - 1}, got "
                    f"{np.asarray(toks).tolist()}"
                )
            out[i] = _encode(t, V)
            if acc is not None:
                accs.extend(np.asarray(acc, dtype=np.float64).ravel().tolist())
        return out, (np.asarray(accs) if accs else None)

    outcomes, acc, sprt_p, stopped = _run(plan, draw)
    return AuditResult(
        **_verdict(plan, outcomes, sprt_p, stopped),
        **_acceptance_fields(acc, level, None, None),
    )


def _encode(seq: Any, V: int) -> int:
    k = 0
    for t in seq:
        k = k * V + int(t)
    return k
