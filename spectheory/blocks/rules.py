r"""Block-level rules that coordinate across depths: ``"block"`` (Sun et al., ICLR 2025),
``"multipath"`` (Thomas & Pal, arXiv 2602.16961) and ``"traversal"`` (Weng et al., NeurIPS 2025).

Each registers itself in :data:`spectheory.blocks.verify.BLOCK_RULES`.
"""

from __future__ import annotations

__all__: list[str] = []
