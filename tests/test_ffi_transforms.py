"""The kernels under JAX's transformations: jit, vmap (over data and over parameters), grad (custom_vjp
equal to the reference's gradients for inputs and rotation parameters), and the "auto" dispatch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ffi_cases import assert_close, make_input
from rotorjax import TurboQuant, ops, packing, rotations


@pytest.mark.parametrize("kind", rotations.KINDS)
@pytest.mark.parametrize("inverse", [False, True])
def test_grad_matches_reference(kind, inverse):
    rot = rotations.make(kind, 7, jax.random.key(1))
    width = rot.padded_dim if inverse else rot.dim
    x = make_input("gaussian", (3, width), jnp.float32, 2)
    w = make_input("gaussian", (3, rot.dim if inverse else rot.padded_dim), jnp.float32, 3)
    op = ops.inverse_rotate if inverse else ops.rotate

    def loss(backend):
        return jax.jit(jax.grad(lambda r, x: jnp.sum(w * jnp.sin(op(r, x, backend))), argnums=(0, 1)))

    (g_rot, g_x), (r_rot, r_x) = loss("ffi")(rot, x), loss("jax")(rot, x)
    assert_close(g_x, r_x, jnp.float32)
    for a, b in zip(jax.tree.leaves(g_rot), jax.tree.leaves(r_rot)):
        assert_close(a, b, jnp.float32)


def test_grad_through_rotation_apply_backend_argument():
    rot = rotations.make("rotor-mix", 13, jax.random.key(4))
    x = make_input("outlier-channel", (5, 13), jnp.float32, 5)
    f = lambda backend: jax.grad(lambda r: jnp.sum(r.apply(x, backend) ** 3))(rot).params
    assert_close(f("ffi"), f("jax"), jnp.float32)


def test_vmap_over_data_and_over_rotations():
    rot = rotations.make("rotor", 10, jax.random.key(0))
    x = make_input("gaussian", (4, 3, 10), jnp.float32, 1)
    batched = jax.jit(jax.vmap(lambda x: ops.rotate(rot, x, "ffi"), in_axes=1))(x)
    assert_close(batched, jnp.swapaxes(rot.apply(x), 0, 1), jnp.float32)
    params = jnp.stack([rotations.make("rotor", 10, jax.random.key(k)).params for k in range(4)])
    per_rotation = jax.vmap(lambda p, x: ops.rotate(rotations.RotorRotation(p, 10), x, "ffi"))(params, x)
    expected = jnp.stack([rotations.RotorRotation(params[k], 10).apply(x[k]) for k in range(4)])
    assert_close(per_rotation, expected, jnp.float32)


@pytest.mark.parametrize("qjl", [False, True])
def test_vmap_encode_decode_scores(qjl):
    ref = TurboQuant(12, 3, "rotor-mix", qjl=qjl, backend="jax")
    ffi = TurboQuant(12, 3, "rotor-mix", qjl=qjl, backend="ffi")
    x = make_input("gaussian", (5, 4, 12), jnp.float32, 6)
    q = make_input("gaussian", (5, 2, 12), jnp.float32, 7)
    codes = jax.jit(jax.vmap(ffi.encode))(x)
    np.testing.assert_array_equal(codes.indices, ref.encode(x).indices)
    assert_close(jax.vmap(ffi.decode)(codes), ref.decode(codes), jnp.float32)
    # Both batched (one query set per code set), only the queries, only the codes.
    assert_close(jax.vmap(ffi.scores)(q, codes), jax.vmap(ref.scores)(q, codes), jnp.float32)
    assert_close(jax.vmap(ffi.scores, (0, None))(q, codes[0]), jax.vmap(ref.scores, (0, None))(q, codes[0]),
                 jnp.float32)
    assert_close(jax.vmap(ffi.scores, (None, 0))(q[0], codes), jax.vmap(ref.scores, (None, 0))(q[0], codes),
                 jnp.float32)


def _hlo(fn, *args):
    return jax.jit(fn).lower(*args).as_text()


def test_auto_uses_the_kernel_on_cpu_and_jax_does_not():
    x = jnp.ones((4, 16))
    for backend, present in (("auto", True), ("ffi", True), ("jax", False)):
        tq = TurboQuant(16, 4, "rotor", backend=backend)
        codes = tq.encode(x)
        assert ("rotorjax_encode" in _hlo(lambda t, x: t.encode(x), tq, x)) == present
        assert ("rotorjax_decode" in _hlo(lambda t, c: t.decode(c), tq, codes)) == present
        assert ("rotorjax_scores" in _hlo(lambda t, q, c: t.scores(q, c), tq, x, codes)) == present


def test_haar_rotation_stays_on_xla_dot_and_kernels_fuse_the_rest():
    tq = TurboQuant(16, 4, "haar", backend="ffi")
    x = make_input("gaussian", (8, 16), jnp.float32, 9)
    text = _hlo(lambda t, x: t.encode(x), tq, x)
    assert "rotorjax_encode" in text and "dot" in text
    ref = TurboQuant(16, 4, "haar", backend="jax")
    np.testing.assert_array_equal(packing.unpack(tq.encode(x).indices, 4, 16), packing.unpack(ref.encode(x).indices, 4, 16))
