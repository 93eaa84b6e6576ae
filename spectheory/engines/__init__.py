r"""From engine logs to bounds: parse what vLLM, SGLang and llama.cpp print or export into one
:class:`EngineStats` record, fit a per-position acceptance profile, predict other draft lengths and
emit engine configurations for a chosen draft tree.

Conventions (docs page "From engine logs to bounds"): :math:`\tau_{\mathrm{acc}}` counts accepted
draft tokens per target call; ``mean_acceptance_length`` is reported as the engine defines it (vLLM
and SGLang: :math:`1 + \mathbb{E}[\tau_{\mathrm{acc}}]`, the bonus or correction token included);
``position_rates[i-1]`` is the unconditional :math:`r_i = \Pr(\tau_{\mathrm{acc}} \ge i)` and
``conditional_rates[i-1]`` is :math:`c_i = r_i / r_{i-1}`.
"""

from __future__ import annotations

from .configs import sglang_flags, vllm_speculative_config
from .stats import ChainFit, EngineStats, fit_chain, parse

__all__ = ["ChainFit", "EngineStats", "fit_chain", "parse", "sglang_flags", "vllm_speculative_config"]
