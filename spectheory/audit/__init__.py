r"""Is my verifier lossless? Audits of implementations, exact audits, and the frontier.

* :func:`audit` / :func:`audit_decoder` -- statistical audits of black-box token-level verifiers
  and of speculative decoders (:mod:`spectheory.audit.core`, statistics in
  :mod:`spectheory.audit.stats`);
* :func:`exact_audit`, :func:`decoder_law`, :func:`sequence_law` -- exact laws of rules that expose
  them (:mod:`spectheory.audit.exact`);
* :func:`frontier` / :func:`frontier_n1` -- the largest acceptance of any rule within total
  variation :math:`\varepsilon` of the target (:mod:`spectheory.audit.frontier`);
* :mod:`spectheory.audit.subjects` -- transformers' speculative sampling, two broken rules,
  spectheory rules as samplers.

Nothing here is imported by ``import spectheory``; torch and transformers load only in
:func:`~spectheory.audit.subjects.transformers_decoder`, scipy inside the statistics.
"""

from __future__ import annotations

from .core import DEFAULT_TV, AuditResult, Status, audit, audit_decoder
from .exact import ExactAudit, decoder_law, exact_audit, law_tv, sequence_law
from .frontier import Frontier, frontier, frontier_closed, frontier_n1
from .stats import detectable_tv, power_at, sample_size

__all__ = [
    "DEFAULT_TV",
    "AuditResult",
    "ExactAudit",
    "Frontier",
    "Status",
    "audit",
    "audit_decoder",
    "decoder_law",
    "detectable_tv",
    "exact_audit",
    "frontier",
    "frontier_closed",
    "frontier_n1",
    "law_tv",
    "power_at",
    "sample_size",
    "sequence_law",
]
