r"""Block level: one target call verifies a chain or a tree of drafts.

Rooms:

* :mod:`~spectheory.blocks.efficiency`: per-position acceptances to tokens per call (the
  functions this module had before it became a package; they keep working);
* :mod:`~spectheory.blocks.drafts`: draft structures :class:`Chain`, :class:`Chains`,
  :class:`Tree` (pure data);
* :mod:`~spectheory.blocks.models`: tabular/Markov conditional models and wrappers;
* :mod:`~spectheory.blocks.problem`: a target, a draft, a structure and a context; realisations;
* :mod:`~spectheory.blocks.verify`: block-level verifiers (token-level rules down the tree);
* :mod:`~spectheory.blocks.rules`: ``"block"``, ``"multipath"``, ``"traversal"``;
* :mod:`~spectheory.blocks.acceptance`: :func:`block_acceptance`, exact output laws;
* :mod:`~spectheory.blocks.batched`: :func:`block_acceptance_batched` (Monte Carlo over many
  contexts in lockstep, batched model calls);
* :mod:`~spectheory.blocks.bounds`: :func:`block_bound` (lossless-verifier LP, coupling bound);
* :mod:`~spectheory.blocks.decode`: :func:`decode`, speculative decoding block by block.
"""

from __future__ import annotations

from .acceptance import (
    BlockAcceptance,
    BlockMethod,
    block_acceptance,
    block_output_law,
    lossless_gap,
)
from .batched import BatchedBlockAcceptance, block_acceptance_batched
from .bounds import BlockBound, BoundCertificate, BoundCheck, BoundKind, BoundStatus, block_bound, check_bound
from .decode import DecodeResult, decode
from .drafts import Chain, Chains, Tree
from .efficiency import (
    MAX_TREE_NODES,
    Model,
    Simulation,
    block_efficiency,
    constant_alpha_efficiency,
    expected_accepted,
    simulate,
    speedup,
    tree_efficiency,
)
from .models import Cached, Markov, Tabular, lumped, random_pair
from .problem import BlockProblem
from .verify import BlockVerifier, TokenLevel, block_verifier, block_verifier_names

__all__ = [
    "MAX_TREE_NODES",
    "BatchedBlockAcceptance",
    "BlockAcceptance",
    "BlockBound",
    "BlockMethod",
    "BlockProblem",
    "BlockVerifier",
    "BoundCertificate",
    "BoundCheck",
    "BoundKind",
    "BoundStatus",
    "Cached",
    "Chain",
    "Chains",
    "DecodeResult",
    "Markov",
    "Model",
    "Simulation",
    "Tabular",
    "TokenLevel",
    "Tree",
    "block_acceptance",
    "block_acceptance_batched",
    "block_bound",
    "block_efficiency",
    "block_output_law",
    "block_verifier",
    "block_verifier_names",
    "check_bound",
    "constant_alpha_efficiency",
    "decode",
    "expected_accepted",
    "lossless_gap",
    "lumped",
    "random_pair",
    "simulate",
    "speedup",
    "tree_efficiency",
]
