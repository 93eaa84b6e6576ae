r"""Things to audit: spectheory's rules as black boxes, two broken rules, transformers' sampler.

* :func:`verifier_sampler` -- a spectheory verifier as ``sampler(drafts, rng)`` for
  :func:`~spectheory.audit.audit`;
* :func:`ignores_q_sampler` and :func:`unnormalised_residual_sampler` -- two broken single-draft
  rules shaped like real bugs (SafeAILab/EAGLE#329: the acceptance test ignores the draft law;
  an inverse-CDF draw from the residual :math:`(p - q)_+` that is never divided by its mass);
  with :func:`ignores_q_law` / :func:`unnormalised_residual_law`, their exact output laws;
* :func:`transformers_decoder` -- a ``decode_fn`` for :func:`~spectheory.audit.audit_decoder`
  that runs Hugging Face transformers' own ``_speculative_sampling`` (the function
  ``generate(assistant_model=..., do_sample=True)`` calls in ``transformers.generation.utils``)
  on tensors built from conditional models: the draft chain is drawn from the draft model, its
  log-probabilities are the candidate logits, the target's log-probabilities the new logits;
* :func:`spectheory_decoder` -- :func:`spectheory.blocks.decode` as a ``decode_fn``;
* :func:`builtin_models` -- the small Markov pair the command line and the docs audit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BlockOutput",
    "builtin_models",
    "ignores_q_law",
    "ignores_q_sampler",
    "spectheory_decoder",
    "transformers_decoder",
    "transformers_version",
    "unnormalised_residual_law",
    "unnormalised_residual_sampler",
    "verifier_sampler",
]


def verifier_sampler(rule: Any, p: Any, q: Any) -> Callable[[np.ndarray, np.random.Generator], int]:
    """``sampler(drafts, rng) -> token`` running ``rule.sample(p, q, drafts, rng)``."""
    from .. import verifiers

    v = verifiers.get(rule)() if isinstance(rule, str) else rule
    pv = np.asarray(p, dtype=np.float64)
    qv = np.asarray(q, dtype=np.float64)

    def sampler(drafts: np.ndarray, rng: np.random.Generator) -> int:
        return int(v.sample(pv, qv, drafts, rng)[0])

    return sampler


def _inverse_cdf(weights: np.ndarray, u: float) -> int:
    """First index whose cumulative weight exceeds ``u`` (the last index if none does)."""
    idx = int(np.searchsorted(np.cumsum(weights), u, side="right"))
    return min(idx, len(weights) - 1)


def ignores_q_sampler(p: Any, q: Any) -> Callable[[np.ndarray, np.random.Generator], int]:
    r"""Broken single-draft rule: accept the draft :math:`x` with probability :math:`p(x)` (as if
    :math:`q(x) = 1`), else sample the correct residual :math:`(p - q)_+` normalised."""
    pv, qv = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    res = np.maximum(pv - qv, 0.0)
    res = res / res.sum() if res.sum() > 0 else pv

    def sampler(drafts: np.ndarray, rng: np.random.Generator) -> int:
        x = int(drafts[0])
        if rng.random() < pv[x]:
            return x
        return _inverse_cdf(res, rng.random())

    return sampler


def ignores_q_law(p: Any, q: Any) -> np.ndarray:
    r"""Exact output law of :func:`ignores_q_sampler`: :math:`q p + (1 - \sum_x q(x)p(x))\,r`."""
    pv, qv = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    res = np.maximum(pv - qv, 0.0)
    res = res / res.sum() if res.sum() > 0 else pv
    return qv * pv + (1.0 - float(qv @ pv)) * res


def unnormalised_residual_sampler(
    p: Any, q: Any
) -> Callable[[np.ndarray, np.random.Generator], int]:
    r"""Broken single-draft rule: correct acceptance :math:`\min(1, p/q)`, but on rejection an
    inverse-CDF draw from :math:`(p - q)_+` *not divided by its mass*: the uniform overshoots the
    total with probability :math:`1 - \mathrm{TV}(p, q)` and the clamp returns the last token."""
    pv, qv = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    res = np.maximum(pv - qv, 0.0)

    def sampler(drafts: np.ndarray, rng: np.random.Generator) -> int:
        x = int(drafts[0])
        if rng.random() < min(1.0, pv[x] / qv[x]):
            return x
        return _inverse_cdf(res, rng.random())

    return sampler


def unnormalised_residual_law(p: Any, q: Any) -> np.ndarray:
    r"""Exact output law of :func:`unnormalised_residual_sampler`."""
    pv, qv = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    res = np.maximum(pv - qv, 0.0)
    tv = res.sum()
    out = np.minimum(pv, qv) + tv * res  # rejection (mass tv), then res(y) of the uniform
    out[-1] += tv * (1.0 - tv)  # the overshoot lands on the last token
    return out


# ---------------------------------------------------------------------- block level
@dataclass(frozen=True)
class BlockOutput:
    """What a ``decode_fn`` here returns: the tokens and accepted drafts per target call."""

    tokens: np.ndarray
    accepted: np.ndarray


def transformers_version() -> str:
    import transformers

    return str(transformers.__version__)


def transformers_decoder(
    gamma: int = 2, assistant_ensemble_weight: float | None = None, *, context: Any = ()
) -> Callable[..., BlockOutput]:
    r"""A ``decode_fn(target, draft, num_tokens, rng)`` that verifies every block with
    ``transformers.generation.utils._speculative_sampling`` itself.

    Per target call: draw ``gamma`` draft tokens from ``draft`` (numpy ``rng``); candidate
    logits = log of the draft conditionals ``(1, gamma, V)``; new logits = log of the target
    conditionals at the ``gamma + 1`` prefixes ``(1, gamma + 1, V)`` (float64; ``log 0 = -inf``
    is what softmax maps back to 0); call the function and append its ``valid_tokens``. Torch's
    generator (which the function uses through ``rand_like`` and ``multinomial``) is seeded from
    ``rng`` the first time the decoder sees that generator (so a fixed audit seed reproduces the
    run; it replaces the global torch seed). Torch runs single-threaded during the call.
    """
    import torch
    from transformers.generation.utils import _speculative_sampling

    g = int(gamma)
    if g < 1:
        raise ValueError(f"argument 'gamma': must be >= 1, got {gamma!r}")
    ctx0 = tuple(int(t) for t in context)

    last: list[Any] = [None]

    def decode_fn(target: Any, draft: Any, num_tokens: int, rng: np.random.Generator) -> Any:
        seq: list[int] = list(ctx0)
        accepted: list[int] = []
        if last[0] is not rng:  # a new generator: seed torch's from it (once per generator)
            torch.manual_seed(int(rng.integers(0, 2**62)))
            last[0] = rng
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny tensors: thread start-up dominates otherwise
        try:
            with np.errstate(divide="ignore"):
                while len(seq) - len(ctx0) < num_tokens:
                    cand: list[int] = []
                    qrows = []
                    for _ in range(g):
                        qd = np.asarray(draft(tuple(seq + cand)), dtype=np.float64)
                        cdf = np.cumsum(qd)
                        x = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")),
                                len(qd) - 1)
                        cand.append(x)
                        qrows.append(np.log(qd))
                    prows = [np.log(np.asarray(target(tuple(seq + cand[:j])), dtype=np.float64))
                             for j in range(g + 1)]
                    ids = torch.tensor([seq + cand], dtype=torch.long)
                    cl = torch.from_numpy(np.stack(qrows)[None])
                    nl = torch.from_numpy(np.stack(prows)[None])
                    valid, n_matches = _speculative_sampling(
                        ids, cl, g, nl, assistant_ensemble_weight=assistant_ensemble_weight
                    )
                    seq.extend(int(t) for t in valid[0].tolist())
                    accepted.append(int(n_matches))
        finally:
            torch.set_num_threads(threads)
        out = np.asarray(seq[len(ctx0):][:num_tokens], dtype=np.int64)
        return BlockOutput(out, np.asarray(accepted, dtype=np.int64))

    return decode_fn


def spectheory_decoder(drafts: Any, verifier: Any) -> Callable[..., Any]:
    """:func:`spectheory.blocks.decode` with a fixed draft structure and rule, as a
    ``decode_fn`` (returns its :class:`~spectheory.blocks.decode.DecodeResult`)."""
    from ..blocks.decode import decode

    def decode_fn(target: Any, draft: Any, num_tokens: int, rng: np.random.Generator) -> Any:
        return decode(target, draft, drafts, verifier, num_tokens, rng)

    return decode_fn


def builtin_models() -> tuple[Any, Any]:
    """A fixed Markov target and draft over 3 tokens (every 2-token sequence has probability at
    least 1/25, so the audit's bins are single sequences)."""
    from ..blocks import Markov

    target = Markov([0.5, 0.3, 0.2], [[0.6, 0.25, 0.15], [0.3, 0.4, 0.3], [0.2, 0.3, 0.5]])
    draft = Markov([0.2, 0.3, 0.5], [[0.3, 0.3, 0.4], [0.5, 0.2, 0.3], [0.4, 0.4, 0.2]])
    return target, draft
