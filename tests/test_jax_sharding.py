"""Multi-device sharding of the JAX backend, tested on CPU with 4 forced host devices.

XLA reads ``--xla_force_host_platform_device_count`` once, when JAX initialises, so the checks run
in a fresh subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax")

#: Sharded and unsharded runs execute the same per-row computation: results agree to float64
#: rounding of identical operations (bitwise in practice).
SHARD_ATOL = 1e-15

SCRIPT = textwrap.dedent(
    f"""
    import numpy as np
    import jax
    import spectheory as st
    from spectheory.solvers.jax_backend import shard_batch, alpha_iid

    assert jax.local_device_count() == 4, jax.local_devices()
    rng = np.random.default_rng(0)
    B, V = 10, 64  # B is not a multiple of 4: the chunk is padded
    logits = rng.standard_normal((2, B, V)) * 2
    e = np.exp(logits - logits.max(-1, keepdims=True))
    p, q = e / e.sum(-1, keepdims=True)
    for scheme in (st.IID(q, 3), st.WithoutReplacement(q, 2), st.Greedy(q, 3)):
        r = st.optimal_acceptance(p, scheme, backend="jax")
        assert r.info["num_devices"] == 4, r.info
        one = st.optimal_acceptance(p, scheme, backend="jax", shard=False)
        assert one.info["num_devices"] == 1
        ref = st.optimal_acceptance(p, scheme, method="prefix")
        assert np.max(np.abs(r.value - one.value)) <= {SHARD_ATOL}
        assert np.max(np.abs(r.value - ref.value)) <= 1e-12
        assert (r.witness == one.witness).all()
    # chunks of 4 rows over 4 devices: 3 chunks
    r = st.optimal_acceptance(p, st.IID(q, 2), backend="jax", chunk_rows=4)
    assert r.info["num_chunks"] == 3 and r.info["chunk_rows"] == 4, r.info
    # the functional core on a sharded array keeps the batch sharding
    with jax.enable_x64(True):
        ps = shard_batch(p[:8]); qs = shard_batch(q[:8])
        assert len(ps.sharding.device_set) == 4
        v, k = jax.jit(lambda a, b: alpha_iid(a, b, 2))(ps, qs)
        assert len(v.sharding.device_set) == 4, v.sharding
        ref = st.optimal_acceptance(p[:8], st.IID(q[:8], 2), method="prefix")
        assert np.max(np.abs(np.asarray(v) - ref.value)) <= 1e-12
    try:
        shard_batch(p[:7])
    except ValueError as exc:
        assert "multiple of the 4 devices" in str(exc)
    else:
        raise AssertionError("expected a ValueError")
    # independent drafts, sharded
    qs2 = [rng.dirichlet(np.ones(5), size=6) for _ in range(2)]
    p2 = rng.dirichlet(np.ones(5), size=6)
    ind = st.Independent(qs2)
    r = st.optimal_acceptance(p2, ind, backend="jax", max_iter=200)
    ex = st.optimal_acceptance(p2, ind, method="subsets")
    assert r.info["num_devices"] == 4
    assert np.max(np.abs(r.value - ex.value)) <= 1e-12
    print("SHARDING-OK")
    """
)


def test_sharded_batch_on_four_cpu_devices() -> None:
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env["XLA_FLAGS"] = flags.strip()
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SHARDING-OK" in out.stdout
