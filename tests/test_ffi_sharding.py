"""The kernels under jax.jit with the batch sharded over 4 (forced host) devices: each device works on
its own rows, nothing is gathered, results equal the reference. Runs in a subprocess so the rest of
the suite keeps one device."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import rotorjax

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from rotorjax import TurboQuant, ops, rotations

    assert jax.device_count() == 4
    mesh = jax.make_mesh((4,), ("tokens",))
    rows = NamedSharding(mesh, P("tokens"))
    x_local = jax.random.normal(jax.random.key(0), (64, 3, 96))  # the references run unsharded
    x = jax.device_put(x_local, rows)
    q = jax.random.normal(jax.random.key(1), (2, 96))

    def check(fn, *args, spec):
        compiled = jax.jit(fn).lower(*args).compile()
        text = compiled.as_text()
        assert "all-gather" not in text and "all-to-all" not in text, "gathered"
        out = jax.jit(fn)(*args)
        for leaf in jax.tree.leaves(out):
            assert tuple(leaf.sharding.spec)[: len(spec)] == tuple(spec), leaf.sharding
        return out

    for qjl in (False, True):
        ffi = TurboQuant(96, 4, "rotor-mix", qjl=qjl, backend="ffi")
        ref = TurboQuant(96, 4, "rotor-mix", qjl=qjl, backend="jax")
        codes = check(lambda t, x: t.encode(x), ffi, x, spec=P("tokens"))
        np.testing.assert_array_equal(np.asarray(codes.indices), np.asarray(ref.encode(x_local).indices))
        out = check(lambda t, c: t.decode(c), ffi, codes, spec=P("tokens"))
        np.testing.assert_allclose(np.asarray(out), np.asarray(ref.decode(jax.device_get(codes))), rtol=0, atol=1e-5)
        s = check(lambda t, q, c: t.scores(q, c), ffi, q, codes, spec=P(None, "tokens"))
        np.testing.assert_allclose(np.asarray(s), np.asarray(ref.scores(q, jax.device_get(codes))), rtol=0, atol=1e-4)
    # backend="auto" traces the pure-JAX branch too (lax.platform_dependent), and "jax" is that branch:
    # their centroid gathers must trace under make_mesh's explicit axes.
    for backend in ("auto", "jax"):
        t = TurboQuant(96, 4, "rotor-mix", qjl=True, backend=backend)
        codes = check(lambda t, x: t.encode(x), t, x, spec=P("tokens"))
        check(lambda t, c: t.decode(c), t, codes, spec=P("tokens"))
        check(lambda t, q, c: t.scores(q, c), t, q, codes, spec=P(None, "tokens"))
    rot = rotations.make("rotor", 96, jax.random.key(2))
    y = check(lambda r, x: ops.rotate(r, x, "ffi"), rot, x, spec=P("tokens"))
    np.testing.assert_allclose(np.asarray(y), np.asarray(rot.apply(x_local)), rtol=0, atol=1e-5)
    g = check(jax.grad(lambda x: jnp.sum(ops.rotate(rot, x, "ffi") ** 2)), x, spec=P("tokens"))
    np.testing.assert_allclose(np.asarray(g), np.asarray(2 * x_local), rtol=0, atol=1e-4)
    print("sharded ok")
    """
)


def test_kernels_run_sharded_over_the_batch_without_gathering():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    # The subprocess imports the same rotorjax as this process (installed or source tree).
    root = Path(rotorjax.__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "sharded ok" in result.stdout
