r"""vLLM (V1 engine): the ``SpecDecoding metrics`` log line and the Prometheus counters.

Source: ``vllm/v1/spec_decode/metrics.py`` (``SpecDecodingLogging.log`` and ``SpecDecodingProm``;
read at commit 016a858 of vllm-project/vllm, the 0.9-0.11 era; later versions print the same
fields). Per interval of ``--log-stats`` (10 s by default) the engine logs::

    SpecDecoding metrics: Mean acceptance length: 2.73, Accepted throughput: 12.40 tokens/s,
    Drafted throughput: 15.10 tokens/s, Accepted: 124 tokens, Drafted: 151 tokens,
    Per-position acceptance rate: 0.890, 0.760, 0.610, Avg Draft acceptance rate: 82.1%

(one line), with ``Mean acceptance length = 1 + accepted / num_drafts`` ("conventionally
includes the bonus token", two decimals), ``Per-position acceptance rate[i] =
accepted_at_position_i / num_drafts`` (three decimals; a draft with ``n`` accepted tokens counts
at positions ``0..n-1``: the unconditional :math:`r_i`) and ``Avg Draft acceptance rate =
accepted / drafted``. ``num_drafts`` is not printed. Prometheus exports the counters
``vllm:spec_decode_num_drafts``, ``vllm:spec_decode_num_draft_tokens``,
``vllm:spec_decode_num_accepted_tokens`` and ``vllm:spec_decode_num_accepted_tokens_per_pos``
(label ``position`` = 0..k-1), with the ``_total`` suffix of ``prometheus_client`` counters.
"""

from __future__ import annotations

import re

import numpy as np

from .._validate import SpecTheoryInputError
from .stats import EngineStats, conditional

__all__ = ["parse_vllm"]

_NUM = r"([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|nan)"
_LINE = re.compile(r"SpecDecoding metrics:(.*)$", re.MULTILINE)
_FIELDS = {
    "mean": re.compile(r"Mean acceptance length:\s*" + _NUM),
    "accepted": re.compile(r"Accepted:\s*([0-9]+) tokens"),
    "drafted": re.compile(r"Drafted:\s*([0-9]+) tokens"),
    "rates": re.compile(r"Per-position acceptance rate:\s*\[?([0-9., ]+?)\]?(?:,\s*Avg|\s*$)"),
    "avg": re.compile(r"(?:Avg )?Draft acceptance rate:\s*" + _NUM),
}
_PROM = re.compile(
    r"^(vllm:spec_decode_num_(?:drafts|draft_tokens|accepted_tokens_per_pos|accepted_tokens))"
    r"(?:_total)?(\{[^}]*\})?\s+" + _NUM, re.MULTILINE)


def parse_vllm(text: str) -> EngineStats:
    if _PROM.search(text):
        return _parse_prom(text)
    lines = _LINE.findall(text)
    if not lines:
        raise SpecTheoryInputError("no vLLM 'SpecDecoding metrics' line or spec_decode counter found")
    notes: list[str] = []
    recs = []
    for body in lines:
        f = {k: rx.search(body) for k, rx in _FIELDS.items()}
        if f["accepted"] is None or f["drafted"] is None or f["mean"] is None:
            continue
        rates = None
        if f["rates"] is not None:
            rates = np.array([float(x) for x in f["rates"].group(1).replace(",", " ").split()])
        recs.append((float(f["mean"].group(1)), int(f["accepted"].group(1)),
                     int(f["drafted"].group(1)), rates))
    if not recs:
        raise SpecTheoryInputError("vLLM 'SpecDecoding metrics' lines lack Accepted/Drafted counts")
    ks = {len(r[3]) for r in recs if r[3] is not None}
    k = ks.pop() if len(ks) == 1 else None
    drafts = []
    exact = True
    for mean, acc, dr, _ in recs:
        n = None
        if k and dr % k == 0 and dr > 0 and abs(1 + acc / (dr // k) - mean) <= 0.005 + 1e-9:
            n = dr // k  # every draft had k tokens
        elif mean > 1:
            n = acc / (mean - 1)
            exact = False
        drafts.append(n)
    if any(n is None for n in drafts):
        raise SpecTheoryInputError("a vLLM interval with no accepted tokens: cannot recover drafts")
    N = float(sum(drafts))
    A = sum(r[1] for r in recs)
    D = sum(r[2] for r in recs)
    rates = None
    if k:
        rates = sum(n * r[3] for n, r in zip(drafts, recs, strict=True)) / N
    notes.append(
        "vLLM prints no draft count: drafts = drafted / k per interval"
        + ("" if exact else " where consistent with the mean length, else accepted / (mean - 1)")
    )
    if not exact:
        notes.append("some intervals had drafts shorter than k (or rounding): the draft count is an "
                     "estimate and the per-position rates of those intervals are diluted")
    if len(recs) > 1:
        notes.append(f"{len(recs)} logging intervals aggregated, weighted by their draft counts")
    mean_acc = A / N
    return EngineStats(
        "vllm", "vllm log line", 1.0 + mean_acc, mean_acc, rates,
        None if rates is None else conditional(rates),
        round(N) if exact else None, D, A, k, len(recs), tuple(notes),
        {"num_drafts_estimate": N},
    )


def _parse_prom(text: str) -> EngineStats:
    tot: dict[str, float] = {}
    pos: dict[int, float] = {}
    for name, labels, val in _PROM.findall(text):
        v = float(val)
        short = name.removeprefix("vllm:spec_decode_num_")
        if short == "accepted_tokens_per_pos":
            m = re.search(r'position="([0-9]+)"', labels or "")
            if m is None:
                continue
            i = int(m.group(1))
            pos[i] = pos.get(i, 0.0) + v  # summed over engines / label sets
        else:
            tot[short] = tot.get(short, 0.0) + v
    if "drafts" not in tot or "accepted_tokens" not in tot:
        raise SpecTheoryInputError(
            "vLLM metrics: need vllm:spec_decode_num_drafts and _num_accepted_tokens counters"
        )
    N, A = tot["drafts"], tot["accepted_tokens"]
    if N <= 0:
        raise SpecTheoryInputError("vLLM metrics: spec_decode_num_drafts is 0")
    rates = None
    k = None
    if pos:
        k = max(pos) + 1
        rates = np.array([pos.get(i, 0.0) for i in range(k)]) / N
    mean_acc = A / N
    notes = ["Prometheus counters are cumulative since the server started: subtract two scrapes "
             "for one interval"]
    return EngineStats(
        "vllm", "vllm prometheus", 1.0 + mean_acc, mean_acc, rates,
        None if rates is None else conditional(rates), int(N),
        int(tot["draft_tokens"]) if "draft_tokens" in tot else None, int(A), k, 1, tuple(notes),
    )
