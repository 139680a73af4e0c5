"""The XLA FFI kernels equal the pure-JAX reference: rotations, encode, decode and scores over random
kinds, dims (odd ones included), bits 1..8, dtypes, batch shapes and inputs (one-hot, outlier channel,
zero vectors)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ffi_cases import assert_close, assert_codes_match, batch_shapes, dims, dtypes, inputs, kinds, make_input, seeds
from rotorjax import TurboQuant, _ffi, ops, packing, rotations

FFI = settings(max_examples=10, deadline=None)


def test_cpu_kernels_are_built():
    assert "cpu" in _ffi.platforms(), _ffi._load_errors


@FFI
@given(kind=kinds, dim=dims, dtype=dtypes, batch=batch_shapes, data=inputs, seed=seeds)
def test_rotate_and_inverse_match_reference(kind, dim, dtype, batch, data, seed):
    rot = rotations.make(kind, dim, jax.random.key(seed))
    x = make_input(data, batch + (dim,), dtype, seed)
    y_ref = rot.apply(x)
    y = jax.jit(lambda r, x: ops.rotate(r, x, "ffi"))(rot, x)
    assert y.dtype == x.dtype and y.shape == y_ref.shape
    assert_close(y, y_ref, dtype)
    back = jax.jit(lambda r, y: ops.inverse_rotate(r, y, "ffi"))(rot, y_ref)
    assert back.dtype == x.dtype
    assert_close(back, rot.inverse(y_ref), dtype)


def _pair(dim, bits, kind, qjl, seed):
    key = jax.random.key(seed)
    return (TurboQuant(dim, bits, kind, qjl=qjl, key=key, backend="jax"),
            TurboQuant(dim, bits, kind, qjl=qjl, key=key, backend="ffi"))


quantizers = st.tuples(kinds, dims, st.integers(1, 8), st.booleans()).filter(lambda t: not (t[3] and t[2] < 2))


@FFI
@given(q=quantizers, dtype=dtypes, batch=batch_shapes, data=inputs, seed=seeds)
def test_encode_decode_match_reference(q, dtype, batch, data, seed):
    kind, dim, bits, qjl = q
    ref, ffi = _pair(dim, bits, kind, qjl, seed)
    x = make_input(data, batch + (dim,), dtype, seed)
    c_ref = jax.jit(lambda t, x: t.encode(x))(ref, x)
    c = jax.jit(lambda t, x: t.encode(x))(ffi, x)
    assert jax.tree.structure(c) == jax.tree.structure(c_ref)
    for a, b in zip(jax.tree.leaves(c), jax.tree.leaves(c_ref)):
        assert a.shape == b.shape and a.dtype == b.dtype

    # Codes: identical apart from boundary ties of the reference's rotated unit vectors.
    xf = x.astype(jnp.float32)
    norm = jnp.linalg.norm(xf, axis=-1, keepdims=True)
    y = ref.rotation.apply(xf / jnp.where(norm > 0, norm, 1.0))
    n = ref.padded_dim
    i_ref = packing.unpack(c_ref.indices, ref.mse_bits, n)
    assert_codes_match(i_ref, packing.unpack(c.indices, ref.mse_bits, n), y, ref.boundaries)
    np.testing.assert_allclose(np.asarray(c.norms, np.float32), np.asarray(c_ref.norms, np.float32), rtol=2e-6,
                               atol=0)
    if qjl and bool(jnp.all(i_ref == packing.unpack(c.indices, ref.mse_bits, n))):
        # Same indices, so the residual and its sketch are the same up to rounding.
        r = np.asarray(y - ref.centroids[i_ref])
        proj = r @ np.asarray(ref.qjl_matrix).T
        z_ref = packing.unpack(c_ref.qjl_bits, 1, n)
        z = packing.unpack(c.qjl_bits, 1, n)
        ties = np.abs(proj) <= 1e-5 * np.abs(r).sum(-1, keepdims=True) * np.abs(np.asarray(ref.qjl_matrix)).max()
        assert np.all((np.asarray(z) == np.asarray(z_ref)) | ties)
        np.testing.assert_allclose(np.asarray(c.residual_norms, np.float32),
                                   np.asarray(c_ref.residual_norms, np.float32), rtol=1e-5, atol=1e-6)

    # Decode the reference codes with both.
    d_ref = ref.decode(c_ref)
    d = jax.jit(lambda t, c: t.decode(c))(ffi, c_ref)
    assert d.dtype == dtype and d.shape == x.shape
    assert_close(d, d_ref, dtype)
    assert_close(jax.jit(lambda t, c: t.decode_rotated(c))(ffi, c_ref), ref.decode_rotated(c_ref), jnp.float32)


@FFI
@given(q=quantizers, dtype=dtypes, qbatch=batch_shapes, kbatch=batch_shapes, data=inputs, seed=seeds,
       debias=st.booleans())
def test_scores_match_reference(q, dtype, qbatch, kbatch, data, seed, debias):
    kind, dim, bits, qjl = q
    debias = debias and not qjl
    ref, ffi = _pair(dim, bits, kind, qjl, seed)
    codes = ref.encode(make_input(data, kbatch + (dim,), jnp.float32, seed))
    queries = make_input("gaussian", qbatch + (dim,), dtype, seed + 1)
    s = jax.jit(lambda t, q, c: t.scores(q, c, debias))(ffi, queries, codes)
    s_ref = ref.scores(queries, codes, debias)
    assert s.shape == qbatch + kbatch and s.dtype == jnp.float32
    assert_close(s, s_ref, jnp.float32)
    q_rot = ref.rotate(queries)
    assert_close(jax.jit(lambda t, q, c: t.scores_rotated(q, c, debias))(ffi, q_rot, codes),
                 ref.scores_rotated(q_rot, codes, debias), jnp.float32)


@pytest.mark.parametrize("kind", rotations.KINDS)
def test_code_mismatch_fraction_on_many_vectors(kind):
    """Over 4,096 vectors × 96 coordinates per kind (odd dims and 4 bits), at most 1e-4 of the indices
    differ, and only at boundary ties."""
    ref, ffi = _pair(96, 4, kind, False, 7)
    x = make_input("outlier-channel", (4096, 96), jnp.float32, 3)
    i_ref = packing.unpack(ref.encode(x).indices, 4, ref.padded_dim)
    i_ffi = packing.unpack(ffi.encode(x).indices, 4, ref.padded_dim)
    y = ref.rotation.apply(x / jnp.linalg.norm(x, axis=-1, keepdims=True))
    assert_codes_match(i_ref, i_ffi, y, ref.boundaries)
    assert float(jnp.mean(i_ref != i_ffi)) <= 1e-4


def test_packed_bytes_equal_reference_bytes():
    """The packed layout itself (not only the unpacked indices) is the reference's, at every width."""
    x = make_input("gaussian", (33, 127), jnp.float32, 11)
    for bits in range(1, 9):
        ref, ffi = _pair(127, bits, "rotor", False, 5)
        np.testing.assert_array_equal(np.asarray(ffi.encode(x).indices), np.asarray(ref.encode(x).indices))
