r"""Engine configurations for a chosen draft chain or tree.

* vLLM: ``speculative_config`` (``--speculative-config`` JSON or ``LLM(speculative_config=...)``)
  with ``num_speculative_tokens`` and, for trees, ``speculative_token_tree``: a string holding a
  list of tuples, one per draft node, each the path of child indices from the root (``(0,)`` the
  top-1 child of the root, ``(0, 1)`` its second child), listed by depth; ``num_speculative_tokens``
  must equal the number of nodes (``vllm/config/speculative.py``, ``SpeculativeConfig``;
  ``vllm/v1/spec_decode/eagle.py`` drafts child :math:`i` as the :math:`i`-th most likely draft
  token, i.e. the tree scheme ``"greedy"``; tree drafting needs the EAGLE methods and the tree
  attention backend, vLLM >= 0.10).
* SGLang: ``--speculative-algorithm EAGLE --speculative-num-steps <depth>
  --speculative-eagle-topk <branching> --speculative-num-draft-tokens <nodes + 1>``
  (docs.sglang.io, "Speculative Decoding"; the root token counts among the draft tokens: a chain of
  :math:`k` is ``steps k, topk 1, num-draft-tokens k + 1``). SGLang reranks a dynamic tree of that
  envelope per step (EAGLE-2), so the flags fix the budget and depth, not the exact shape.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["sglang_flags", "vllm_speculative_config"]


def vllm_speculative_config(drafts: Any, *, method: str = "eagle", model: str | None = None
                            ) -> dict[str, Any]:
    """``speculative_config`` for a chain length (int) or a :class:`~spectheory.blocks.Tree`."""
    from ..blocks.drafts import as_tree
    from ..trees import tree_paths

    cfg: dict[str, Any] = {"method": method}
    if model:
        cfg["model"] = model
    if isinstance(drafts, int):
        cfg["num_speculative_tokens"] = int(drafts)
        return cfg
    t = as_tree(drafts)
    cfg["num_speculative_tokens"] = t.num_nodes
    if not t.is_chain():
        cfg["speculative_token_tree"] = str(tree_paths(t)).replace(" ", "")
    return cfg


def sglang_flags(drafts: Any, *, algorithm: str = "EAGLE") -> list[str]:
    """SGLang server flags for a chain length (int) or a tree."""
    from ..blocks.drafts import as_tree

    if isinstance(drafts, int):
        steps, topk, nodes = int(drafts), 1, int(drafts)
    else:
        t = as_tree(drafts)
        steps = t.max_depth
        topk = max(len(c) for c in t.children)
        nodes = t.num_nodes
    return ["--speculative-algorithm", algorithm, "--speculative-num-steps", str(steps),
            "--speculative-eagle-topk", str(topk), "--speculative-num-draft-tokens", str(nodes + 1)]


def vllm_flag(drafts: Any, **kw: Any) -> str:
    """The ``--speculative-config '<json>'`` command-line form."""
    return "--speculative-config '" + json.dumps(vllm_speculative_config(drafts, **kw)) + "'"
