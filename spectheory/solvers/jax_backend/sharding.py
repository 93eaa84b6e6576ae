r"""Multi-device data parallelism for the JAX backend with :mod:`jax.sharding`.

Positions (batch rows) are independent, so the batch axis is split over a one-axis device mesh
``("batch",)`` and the vocabulary axis stays whole on each device: every sort and prefix sum is
local, and the jit-compiled core needs no communication (GSPMD partitions it along the batch).
Multi-host runs use the same code after ``jax.distributed.initialize()`` (``jax.devices()`` then
lists every host's devices).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["batch_sharding", "shard_batch"]


def batch_sharding(devices: Any = None, ndim: int = 2) -> NamedSharding:
    """Sharding that splits axis 0 over ``devices`` (default: all local devices) and replicates the
    other ``ndim - 1`` axes."""
    devs = list(jax.local_devices() if devices is None else devices)
    mesh = Mesh(np.array(devs), ("batch",))
    return NamedSharding(mesh, PartitionSpec("batch", *([None] * (ndim - 1))))


def shard_batch(x: Any, devices: Any = None) -> jax.Array:
    """Place ``x`` (batch on axis 0, divisible by the number of devices) split over ``devices``.

    Raises
    ------
    ValueError
        If the batch size is not a multiple of the number of devices.
    """
    devs = list(jax.local_devices() if devices is None else devices)
    x = np.asarray(x) if not isinstance(x, jax.Array) else x
    if x.shape[0] % len(devs):
        raise ValueError(
            f"argument 'x': batch size {x.shape[0]} is not a multiple of the {len(devs)} devices "
            "(pad the batch)"
        )
    return jax.device_put(x, batch_sharding(devs, x.ndim))
