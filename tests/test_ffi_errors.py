"""Every handler validates its operands and attributes: bad input is a Python exception that names the
problem, never a crash. The calls go straight to rotorjax._ffi so the Python-side checks of
TurboQuant cannot catch the problem first."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from rotorjax import TurboQuant, _ffi, ops, packing, rotations


@pytest.fixture(scope="module")
def tq():
    return TurboQuant(16, 3, "rotor", backend="ffi")


def _operands(tq):
    return _ffi.rotation_operands(tq.rotation)


def test_rotate_rejects_wrong_parameter_count():
    x = jnp.ones((4, 16))
    with pytest.raises(Exception, match="takes 24 parameters, got 20"):
        jax.block_until_ready(_ffi.rotate(x, jnp.ones((20,)), kind=2, dim=16, n=18, inverse=False))


def test_rotate_rejects_unknown_kind_and_small_dim():
    x = jnp.ones((4, 16))
    with pytest.raises(Exception, match="unknown rotation kind 9"):
        jax.block_until_ready(_ffi.rotate(x, jnp.ones((24,)), kind=9, dim=16, n=16, inverse=False))
    with pytest.raises(Exception, match="dim must be in"):
        jax.block_until_ready(_ffi.rotate(jnp.ones((4, 1)), jnp.ones((4,)), kind=2, dim=1, n=3, inverse=False))


def test_rotate_rejects_integer_input():
    with pytest.raises(Exception, match="dtype must be float32, bfloat16 or float16"):
        jax.block_until_ready(_ffi.rotate(jnp.ones((4, 16), jnp.int32), jnp.ones((24,)), kind=2, dim=16, n=18,
                                          inverse=False))


def test_encode_rejects_bad_bits_and_codebook(tq):
    kind, dim, params = _operands(tq)
    x = jnp.ones((4, 16))
    with pytest.raises(Exception, match="bits must be in 1..8, got 9"):
        jax.block_until_ready(_ffi.encode(x, params, tq.boundaries, tq.centroids, kind=kind, dim=dim, n=18, bits=9))
    with pytest.raises(Exception, match="3-bit codebook has 8 centroids and 7 boundaries, got 8 and 6"):
        jax.block_until_ready(_ffi.encode(x, params, tq.boundaries[:6], tq.centroids, kind=kind, dim=dim, n=18,
                                          bits=3))
    with pytest.raises(Exception, match="boundaries must be ascending"):
        jax.block_until_ready(_ffi.encode(x, params, tq.boundaries[::-1], tq.centroids, kind=kind, dim=dim, n=18,
                                          bits=3))


def test_encode_rejects_bad_qjl_matrix(tq):
    kind, dim, params = _operands(tq)
    with pytest.raises(Exception, match=r"QJL matrix must be float32 of shape \(m, 18\)"):
        jax.block_until_ready(_ffi.encode(jnp.ones((4, 16)), params, tq.boundaries, tq.centroids,
                                          jnp.ones((18, 17)), kind=kind, dim=dim, n=18, bits=3))


def test_decode_rejects_mis_sized_codes_and_codebook(tq):
    kind, dim, params = _operands(tq)
    codes = tq.encode(jnp.ones((4, 16)))
    with pytest.raises(Exception, match=r"codes must have shape \(\.\.\., 7\)"):
        jax.block_until_ready(_ffi.decode(codes.indices[:, :6], codes.norms, params, tq.centroids, kind=kind,
                                          dim=dim, bits=3, dtype=jnp.float32))
    with pytest.raises(Exception, match="3-bit codebook has 8 centroids, got 4"):
        jax.block_until_ready(_ffi.decode(codes.indices, codes.norms, params, tq.centroids[:4], kind=kind, dim=dim,
                                          bits=3, dtype=jnp.float32))


def test_decode_rejects_mis_sized_qjl_bits():
    tq = TurboQuant(16, 3, "rotor", qjl=True, backend="ffi")
    kind, dim, params = _operands(tq)
    c = tq.encode(jnp.ones((4, 16)))
    with pytest.raises(Exception, match="QJL bits must be u8"):
        jax.block_until_ready(_ffi.decode(c.indices, c.norms, params, tq.centroids,
                                          (tq.qjl_matrix, c.qjl_bits[:, :1], c.residual_norms), kind=kind, dim=dim,
                                          bits=2, dtype=jnp.float32))


def test_scores_rejects_bad_divisor_and_query_width(tq):
    kind, dim, params = _operands(tq)
    codes = tq.encode(jnp.ones((4, 16)))
    with pytest.raises(Exception, match="divisor must be positive"):
        jax.block_until_ready(_ffi.scores(jnp.ones((2, 16)), codes.indices, codes.norms, params, tq.centroids,
                                          kind=kind, dim=dim, bits=3, divisor=0.0))
    with pytest.raises(Exception, match=r"queries must have shape \(\.\.\., 16\)"):
        jax.block_until_ready(_ffi.scores(jnp.ones((2, 15)), codes.indices, codes.norms, params, tq.centroids,
                                          kind=kind, dim=dim, bits=3, divisor=1.0))


def test_python_side_checks_name_the_problem(tq):
    with pytest.raises(ValueError, match="backend must be one of"):
        TurboQuant(16, 3, backend="cuda")
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 16\)"):
        tq.encode(jnp.ones((4, 15)))
    with pytest.raises(ValueError, match="backend must be one of"):
        rotations.make("rotor", 16).apply(jnp.ones(16), backend="fast")
    assert packing.packed_size(18, 3) == 7


def test_ffi_backend_without_kernels_raises(monkeypatch):
    monkeypatch.setattr(_ffi, "platforms", lambda: ())
    with pytest.raises(RuntimeError, match="backend='ffi' needs rotorjax's compiled XLA FFI kernels"):
        ops.rotate(rotations.make("rotor", 16), jnp.ones((2, 16)), backend="ffi")
    # "auto" falls back to the reference.
    r = rotations.make("rotor", 16)
    assert jnp.allclose(ops.rotate(r, jnp.ones((2, 16)), backend="auto"), r.apply(jnp.ones((2, 16))))
