r"""llama.cpp: the summary of ``llama-speculative`` / ``llama-speculative-simple``, the server's
per-request line and ``common_speculative_print_stats``.

Sources (ggml-org/llama.cpp): ``examples/speculative-simple/speculative-simple.cpp`` and
``examples/speculative/speculative.cpp`` end with ``n_draft = <max draft length>``,
``n_predict = <generated tokens>``, ``n_drafted = <drafted tokens>``, ``n_accept = <accepted
drafted tokens>``, ``accept = <100 n_accept / n_drafted>%``; each target call of
speculative-simple adds ``accepted + 1`` tokens to ``n_predict``, so target calls =
``n_predict - n_accept``. ``tools/server/server-context.cpp`` prints per request ``draft acceptance
rate = 0.57143 (   12 accepted /    21 generated)``. ``common/speculative.cpp``
(``common_speculative_print_stats``) prints ``statistics <type>: #calls(b,g,a) = ..., #gen drafts =
D, #acc drafts = A1, #gen tokens = G, #acc tokens = A``, where ``#acc drafts`` counts drafts with at
least one accepted token (so :math:`r_1 = A_1 / D`). llama.cpp prints no per-position rates.
"""

from __future__ import annotations

import re

import numpy as np

from .._validate import SpecTheoryInputError
from .stats import EngineStats

__all__ = ["parse_llamacpp"]


def _ints(rx: str, text: str) -> list[int]:
    return [int(x) for x in re.findall(rx, text)]


def parse_llamacpp(text: str) -> EngineStats:
    gd = _ints(r"#gen drafts\s*=\s*([0-9]+)", text)
    if gd:
        ad = _ints(r"#acc drafts\s*=\s*([0-9]+)", text)
        gt = _ints(r"#gen tokens\s*=\s*([0-9]+)", text)
        at = _ints(r"#acc tokens\s*=\s*([0-9]+)", text)
        if not (len(ad) == len(gt) == len(at) == len(gd)):
            raise SpecTheoryInputError("llama.cpp 'statistics' lines are incomplete")
        D, A1, G, A = sum(gd), sum(ad), sum(gt), sum(at)
        if D == 0:
            raise SpecTheoryInputError("llama.cpp statistics: #gen drafts is 0")
        r1 = np.array([A1 / D])
        return EngineStats(
            "llamacpp", "llama.cpp common_speculative statistics", 1.0 + A / D, A / D, r1,
            r1.copy(), D, G, A, None, len(gd),
            ("#acc drafts counts drafts with >= 1 accepted token: r_1 = #acc drafts / #gen drafts; "
             "llama.cpp prints no deeper per-position rates",
             "mean acceptance length computed as 1 + #acc tokens / #gen drafts (llama.cpp prints "
             "none; vLLM's convention)"),
        )
    nd = _ints(r"n_drafted\s*=\s*([0-9]+)", text)
    if nd:
        na = _ints(r"n_accept\s*=\s*([0-9]+)", text)
        npred = _ints(r"n_predict\s*=\s*([0-9]+)", text)
        nmax = _ints(r"n_draft\s*=\s*([0-9]+)", text)
        if len(na) != len(nd):
            raise SpecTheoryInputError("llama.cpp summary: n_drafted without n_accept")
        D, A = sum(nd), sum(na)
        calls = sum(npred) - A if len(npred) == len(nd) else None
        mean_acc = A / calls if calls else None
        notes = ["accept = n_accept / n_drafted is a per-token rate, not a per-position rate"]
        if calls:
            notes.append("target calls = n_predict - n_accept (each call of speculative-simple adds "
                         "accepted + 1 tokens; calls with an empty draft included)")
        return EngineStats(
            "llamacpp", "llama.cpp speculative summary",
            None if mean_acc is None else 1.0 + mean_acc, mean_acc, None, None, None, D, A,
            nmax[0] if len(set(nmax)) == 1 and nmax else None, len(nd), tuple(notes),
            {"target_calls": calls},
        )
    m = re.findall(r"draft acceptance rate\s*=\s*[0-9.]+\s*\(\s*([0-9]+) accepted /\s*([0-9]+) "
                   r"generated\)", text)
    if m:
        A = sum(int(a) for a, _ in m)
        G = sum(int(g) for _, g in m)
        return EngineStats(
            "llamacpp", "llama.cpp server", None, None, None, None, None, G, A, None, len(m),
            ("the server line has no draft or call counts: only the per-token acceptance rate "
             "accepted / generated is determined",),
        )
    raise SpecTheoryInputError("no llama.cpp speculative statistics found")
