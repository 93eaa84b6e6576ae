r"""SGLang: per-request ``meta_info`` fields, the scheduler's ``Decode batch`` line, Prometheus.

Sources (sgl-project/sglang): ``python/sglang/srt/managers/tokenizer_manager.py``
(``_calculate_spec_decoding_metrics``: ``spec_verify_ct`` = verify steps (target calls) of the
request, ``spec_accept_length = completion_tokens / spec_verify_ct``, so the bonus/correction token
is included and so is the one token of the prefill; newer versions add ``spec_accept_rate``,
``spec_num_correct_drafts`` / ``spec_accepted_drafts``, ``spec_num_proposed_drafts`` and
``spec_correct_drafts_histogram`` / ``spec_accept_histogram``, the number of verify steps that
accepted ``j = 0, 1, ...`` drafts); ``python/sglang/srt/managers/scheduler.py``
(``Decode batch. ... accept len: 2.85, ...``: accepted tokens including the bonus over forward
steps since the last line); the gauge ``sglang:spec_accept_length``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from .._validate import SpecTheoryInputError
from .stats import EngineStats, conditional

__all__ = ["parse_sglang"]

_HIST_KEYS = ("spec_correct_drafts_histogram", "spec_accept_histogram")
_ACC_KEYS = ("spec_num_correct_drafts", "spec_accepted_drafts", "spec_accept_token_num")
_PROP_KEYS = ("spec_num_proposed_drafts", "spec_proposed_drafts", "spec_draft_token_num")


def _objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object in the text that carries ``spec_verify_ct`` (nested ``meta_info`` too)."""
    out: list[dict[str, Any]] = []
    dec = json.JSONDecoder()
    i = 0
    while True:
        j = text.find("{", i)
        if j < 0:
            break
        try:
            obj, end = dec.raw_decode(text, j)
        except ValueError:
            i = j + 1
            continue
        i = end
        stack = [obj]
        while stack:
            o = stack.pop()
            if isinstance(o, dict):
                if "spec_verify_ct" in o:
                    out.append(o)
                else:
                    stack.extend(o.values())
            elif isinstance(o, list):
                stack.extend(o)
    return out


def _first(o: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if k in o:
            return o[k]
    return None


def parse_sglang(text: str) -> EngineStats:
    objs = _objects(text)
    if objs:
        return _parse_meta(objs)
    lens = [float(x) for x in re.findall(r"accept len:\s*([0-9.]+)", text)]
    if not lens:
        m = re.findall(r"^sglang:spec_accept_length(?:\{[^}]*\})?\s+([0-9.eE+-]+)", text, re.MULTILINE)
        lens = [float(x) for x in m]
        src = "sglang prometheus gauge"
    else:
        src = "sglang scheduler log"
    lens = [x for x in lens if x > 0]
    if not lens:
        raise SpecTheoryInputError(
            "no SGLang spec_verify_ct / meta_info, 'accept len:' line or spec_accept_length gauge"
        )
    mean = float(np.mean(lens))
    notes = ["SGLang 'accept len' counts accepted drafts plus the bonus token per verify step"]
    if len(lens) > 1:
        notes.append(f"{len(lens)} lines averaged without weights (the line has no step counts)")
    return EngineStats("sglang", src, mean, mean - 1.0, None, None, None, None, None, None,
                       len(lens), tuple(notes))


def _parse_meta(objs: list[dict[str, Any]]) -> EngineStats:
    notes = []
    verify = sum(int(o["spec_verify_ct"]) for o in objs)
    if verify <= 0:
        raise SpecTheoryInputError("SGLang meta_info: spec_verify_ct is 0 (no speculative steps)")
    comp = [o.get("completion_tokens") for o in objs]
    hist = None
    hs = [_first(o, _HIST_KEYS) for o in objs]
    if all(h is not None for h in hs):
        L = max(len(h) for h in hs)
        hist = np.zeros(L)
        for h in hs:
            hist[: len(h)] += np.asarray(h, dtype=np.float64)
    acc = [_first(o, _ACC_KEYS) for o in objs]
    prop = [_first(o, _PROP_KEYS) for o in objs]
    accepted = sum(int(a) for a in acc) if all(a is not None for a in acc) else None
    drafted = sum(int(p) for p in prop) if all(p is not None for p in prop) else None
    sg_mean = None
    if all(c is not None for c in comp):
        sg_mean = sum(int(c) for c in comp) / verify  # SGLang's own definition, summed
    rates = None
    if hist is not None and hist.sum() > 0:
        tail = np.cumsum(hist[::-1])[::-1] / hist.sum()  # tail[j] = Pr(tau >= j)
        rates = tail[1:]
        mean_acc = float(rates.sum())
        if accepted is None:
            accepted = round(float((np.arange(len(hist)) * hist).sum()))
        notes.append("per-position rates from the acceptance histogram (verify steps by number of "
                     "accepted drafts)")
    elif accepted is not None:
        mean_acc = accepted / verify
    elif sg_mean is not None:
        n_req = len(objs)
        mean_acc = (sum(int(c) for c in comp) - n_req) / verify - 1.0
        notes.append("accepted drafts per step = (completion_tokens - 1 prefill token per request) "
                     "/ spec_verify_ct - 1 bonus token")
    else:
        raise SpecTheoryInputError("SGLang meta_info: need completion_tokens or accepted counts")
    notes.append("spec_accept_length = completion_tokens / spec_verify_ct (bonus token and the "
                 "prefill token included)")
    if len(objs) > 1:
        notes.append(f"{len(objs)} requests aggregated by their verify steps")
    mal = sg_mean if sg_mean is not None else 1.0 + mean_acc
    return EngineStats(
        "sglang", "sglang meta_info", mal, mean_acc, rates,
        None if rates is None else conditional(rates), verify, drafted, accepted,
        None if rates is None else len(rates), len(objs), tuple(notes),
    )
