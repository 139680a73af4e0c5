"""The CUDA kernels (ffi/cuda) against the pure-JAX reference, on a CUDA GPU.

Codes must equal the reference's except where the reference's rotated coordinate lies within 1e-4 of
a codebook boundary (the kernels and XLA add in different orders); decode / rotate / scores agree to
1e-5 relative in float32. Every test draws fresh inputs from its own key. Skipped where JAX sees no
GPU; on a GPU a missing CUDA module fails the tests instead of letting them compare the reference
with itself.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rotorjax import TurboQuant, _ffi, attention, packing, rotations

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not any(d.platform == "gpu" for d in jax.devices()), reason="needs a CUDA GPU"),
]

DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)
TIE = 1e-4  # codes may differ only where |y − boundary| ≤ TIE


@pytest.fixture(scope="module", autouse=True)
def cuda_kernels():
    assert "cuda" in _ffi.platforms(), f"CUDA kernels not loaded: {_ffi._load_errors.get('cuda')}"
    # XLA's GPU float32 matmul defaults to TF32 (~1e-3): the dense haar rotation and the reference's
    # einsums need full float32 for a 1e-5 comparison.
    with jax.default_matmul_precision("highest"):
        yield


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _quant(dim, bits, kind, key, qjl=False):
    kernel = TurboQuant(dim, bits, kind, qjl=qjl, key=key, backend="auto")
    reference = TurboQuant(dim, bits, kernel.rotation, qjl=qjl, key=key, backend="jax")
    return kernel, reference


def _check_codes(ref_q, x, got, want):
    """Indices equal, except at boundary ties of the reference's rotated coordinates."""
    gi = np.asarray(packing.unpack(got.indices, ref_q.mse_bits, ref_q.padded_dim))
    wi = np.asarray(packing.unpack(want.indices, ref_q.mse_bits, ref_q.padded_dim))
    xf = np.asarray(x, np.float32)
    norm = np.linalg.norm(xf, axis=-1, keepdims=True)
    y = np.asarray(ref_q.rotation.apply(jnp.asarray(xf / np.where(norm > 0, norm, 1))))
    bnd = np.asarray(ref_q.boundaries)
    near = np.min(np.abs(y[..., None] - bnd), axis=-1) <= TIE
    bad = (gi != wi) & ~near
    assert not bad.any(), f"{bad.sum()} indices differ away from boundaries"
    assert (np.abs(gi - wi) <= 1).all()
    np.testing.assert_allclose(np.asarray(got.norms, np.float32), np.asarray(want.norms, np.float32), rtol=2e-6)


CASES = [(kind, dim, bits) for kind in rotations.KINDS for dim, bits in ((128, 4), (37, 3))]
CASES += [("rotor-mix", 128, 3), ("rotor-mix", 128, 2), ("rotor-mix", 96, 1), ("hadamard", 64, 8), ("iso", 200, 5)]


# Every case in one input dtype (cycling through the three), the fast shape in all three.
DTYPE_CASES = [case + (DTYPES[i % 3],) for i, case in enumerate(CASES)]
DTYPE_CASES += [("rotor-mix", 128, 4, d) for d in DTYPES[1:]]


@pytest.mark.parametrize("kind,dim,bits,dtype", DTYPE_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_encode_decode_match_reference(kind, dim, bits, dtype, key):
    kq, rq = _quant(dim, bits, kind, key)
    x = (jax.random.normal(jax.random.fold_in(key, 1), (1037, dim)) * 3.0).astype(dtype)
    x = x.at[5].set(0)  # a zero vector: norm 0, decodes to zeros
    got, want = jax.jit(kq.encode)(x), jax.jit(rq.encode)(x)
    _check_codes(rq, x, got, want)
    dec, ref = jax.jit(kq.decode)(want), jax.jit(rq.decode)(want)
    assert dec.dtype == ref.dtype == dtype
    if dtype == jnp.float32:
        assert _rel(dec, ref) <= 1e-5
    else:  # the same float32 value rounded once: at most one unit in the last place apart
        tol = 2.0 ** -7 if dtype == jnp.bfloat16 else 2.0 ** -10
        np.testing.assert_allclose(np.asarray(dec, np.float32), np.asarray(ref, np.float32),
                                   rtol=tol, atol=tol * float(jnp.max(jnp.abs(ref.astype(jnp.float32)))))
    assert not np.asarray(dec[5], np.float32).any()


@pytest.mark.parametrize("spread", (0.24, 0.004), ids=("table", "search"))
def test_fast_encode_codebook_lookup(spread, key):
    """The fast encode path finds indices by table lookup, and searches when the codebook is finer
    than the table's cells (widened cells 0.0166 wide): a custom 4-bit codebook of either spread, on
    inputs whose rotated coordinates sit on and around its boundaries."""
    kq, rq = _quant(128, 4, "rotor-mix", key)
    bnd = jnp.linspace(-spread / 2, spread / 2, 15, dtype=jnp.float32)
    cen = jnp.concatenate([bnd[:1] - spread / 30, (bnd[1:] + bnd[:-1]) / 2, bnd[-1:] + spread / 30])
    kq, rq = (type(q).tree_unflatten(q.tree_flatten()[1], (q.rotation, cen, bnd, None)) for q in (kq, rq))
    y = jax.random.choice(jax.random.fold_in(key, 6), jnp.concatenate([bnd, bnd * 1.01, bnd * 0.99]), (700, 128))
    y = y.at[:, 0].set(jnp.sqrt(jnp.maximum(1.0 - jnp.sum(y[:, 1:] ** 2, -1), 0.0)))  # unit rows
    x = rq.rotation.inverse(y)
    _check_codes(rq, x, jax.jit(kq.encode)(x), jax.jit(rq.encode)(x))


@pytest.mark.parametrize("kind", rotations.KINDS)
@pytest.mark.parametrize("dim", (128, 50))
def test_rotate_and_inverse_match_reference(kind, dim, key):
    rot = rotations.make(kind, dim, key)
    x = jax.random.normal(jax.random.fold_in(key, 2), (3, 301, dim))
    y = jax.jit(lambda x: rot.apply(x, "auto"))(x)
    assert _rel(y, rot.apply(x)) <= 1e-5
    back = jax.jit(lambda y: rot.inverse(y, "auto"))(y)
    assert _rel(back, rot.inverse(y)) <= 1e-5


def test_kernels_are_in_the_compiled_program(key):
    kq, _ = _quant(128, 4, "rotor-mix", key)
    x = jnp.ones((256, 128))
    assert "rotorjax_encode" in jax.jit(kq.encode).lower(x).as_text()
    codes = kq.encode(x)
    assert "rotorjax_decode" in jax.jit(kq.decode).lower(codes).as_text()


@pytest.mark.parametrize("kind,dim,bits", [("rotor-mix", 128, 4), ("hadamard", 48, 3), ("planar", 30, 2)])
def test_qjl_matches_reference(kind, dim, bits, key):
    kq, rq = _quant(dim, bits, kind, key, qjl=True)
    x = jax.random.normal(jax.random.fold_in(key, 3), (515, dim))
    got, want = jax.jit(kq.encode)(x), jax.jit(rq.encode)(x)
    _check_codes(rq, x, got, want)
    # Sketch bits: sign(S r) may differ only where S r is within rounding of 0.
    xf = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    y = rq.rotation.apply(xf)
    idx = packing.unpack(want.indices, rq.mse_bits, rq.padded_dim)
    proj = np.asarray((y - rq.centroids[idx]) @ rq.qjl_matrix.T)
    gb = np.asarray(packing.unpack(got.qjl_bits, 1, proj.shape[-1]))
    wb = np.asarray(packing.unpack(want.qjl_bits, 1, proj.shape[-1]))
    same_idx = (np.asarray(packing.unpack(got.indices, rq.mse_bits, rq.padded_dim)) == np.asarray(idx)).all(-1)
    assert not ((gb != wb) & (np.abs(proj) > 1e-4))[same_idx].any()
    assert _rel(jax.jit(kq.decode)(want), jax.jit(rq.decode)(want)) <= 1e-5
    q = jax.random.normal(jax.random.fold_in(key, 4), (7, dim))
    assert _rel(jax.jit(kq.scores)(q, want), jax.jit(rq.scores)(q, want)) <= 1e-5


@pytest.mark.parametrize("kind,dim,bits", [("rotor-mix", 128, 4), ("rotor-mix", 128, 3), ("rotor-mix", 128, 2),
                                           ("haar", 64, 4),
                                           ("rotor", 37, 2), ("iso", 96, 5), ("rotor-mix", 50, 4),
                                           ("hadamard", 48, 3)])
@pytest.mark.parametrize("dtype", (jnp.float32, jnp.bfloat16), ids=lambda d: jnp.dtype(d).name)
def test_scores_match_reference(kind, dim, bits, dtype, key):
    kq, rq = _quant(dim, bits, kind, key)
    x = jax.random.normal(jax.random.fold_in(key, 5), (1000, dim))
    codes = rq.encode(x)
    for nq in (1, 3, 11):
        q = jax.random.normal(jax.random.fold_in(key, nq), (nq, dim)).astype(dtype)
        got, want = jax.jit(kq.scores)(q, codes), jax.jit(rq.scores)(q, codes)
        assert got.shape == want.shape == (nq, 1000)
        assert _rel(got, want) <= 1e-5
    debiased = jax.jit(lambda q, c: kq.scores(q, c, debias=True))(q, codes)
    assert _rel(debiased, rq.scores(q, codes, debias=True)) <= 1e-5


@pytest.mark.parametrize("groups", (1, 4, 9))
def test_grouped_scores_match_reference(groups, key):
    kq, _ = _quant(128, 4, "rotor-mix", key)
    x = jax.random.normal(jax.random.fold_in(key, 6), (2, 3, 700, 128))
    codes = kq.encode(x)
    q = jax.random.normal(jax.random.fold_in(key, 7), (2, 3, groups, 128)).astype(jnp.bfloat16)
    got = jax.jit(lambda q, c: attention.grouped_scores(kq, q, c))(q, codes)
    want = attention.grouped_scores(kq, q, codes, backend="jax")
    assert got.shape == (2, 3, groups, 700)
    assert _rel(got, want) <= 1e-5


ATTN = [
    # (k kind, k bits, v kind, v bits, Hq, Hkv, S)
    ("rotor-mix", 4, "rotor-mix", 4, 8, 2, 1),
    ("rotor-mix", 3, "rotor-mix", 3, 4, 1, 1),
    ("rotor-mix", 4, "hadamard", 2, 6, 3, 3),
    ("planar", 5, "rotor", 3, 2, 2, 2),
    ("haar", 4, "haar", 4, 16, 2, 1),
    ("hadamard", 3, "iso", 4, 4, 2, 1),
    # the tensor-core path (n 128, equal bits) at R = 1 (2 bits), R = 2, and rows with their own masks (S 2)
    ("rotor-mix", 2, "rotor-mix", 2, 3, 3, 1),
    ("hadamard", 4, "rotor-mix", 4, 4, 2, 1),
    ("rotor-mix", 3, "iso", 3, 4, 2, 2),
    # R = 8 with pair tables: 24 KB of static shared memory beside the dynamic (a launch limit bug)
    ("rotor-mix", 3, "rotor-mix", 3, 16, 2, 1),
]


@pytest.mark.parametrize("k_kind,k_bits,v_kind,v_bits,hq,hkv,s", ATTN)
@pytest.mark.parametrize("dtype", (jnp.float32, jnp.bfloat16), ids=lambda d: jnp.dtype(d).name)
def test_attention_decode_matches_reference(k_kind, k_bits, v_kind, v_bits, hq, hkv, s, dtype, key):
    dim, b, t = (128 if k_kind != "planar" else 40), 3, 1100
    kk, vk = jax.random.split(key)
    k_quant = TurboQuant(dim, k_bits, k_kind, key=kk)
    v_quant = TurboQuant(dim, v_bits, v_kind, key=vk)
    keys = jax.random.normal(jax.random.fold_in(key, 8), (b, hkv, t, dim))
    values = jax.random.normal(jax.random.fold_in(key, 9), (b, hkv, t, dim))
    kc, vc = k_quant.encode(keys), v_quant.encode(values)
    q = (jax.random.normal(jax.random.fold_in(key, 10), (b, hq, s, dim)) * 2).astype(dtype)
    lengths = jnp.array([t, 517, s], jnp.int32)  # full, partial, only the new tokens
    fn = jax.jit(lambda *a: attention.attention_decode(*a))
    got = fn(q, k_quant, kc, v_quant, vc, lengths)
    want = attention.attention_decode(q, k_quant, kc, v_quant, vc, lengths, backend="jax")
    assert got.shape == q.shape and got.dtype == dtype
    assert _rel(got, want) <= (1e-5 if dtype == jnp.float32 else 1e-2)
    # the reference itself against dense attention on the decoded cache (GQA mapping, masks)
    kd, vd = k_quant.decode(kc), v_quant.decode(vc)
    kd, vd = jnp.repeat(kd, hq // hkv, axis=1), jnp.repeat(vd, hq // hkv, axis=1)
    row = np.asarray(want[1, :, -1], np.float32)
    visible = 517
    logits = jnp.einsum("hd,htd->ht", q[1, :, -1].astype(jnp.float32), kd[1, :, :visible]) / math.sqrt(dim)
    dense = jnp.einsum("ht,htd->hd", jax.nn.softmax(logits, -1), vd[1, :, :visible])
    np.testing.assert_allclose(row, np.asarray(dense), rtol=2e-2 if dtype == jnp.bfloat16 else 1e-4, atol=1e-3)


@pytest.mark.parametrize("bits", (2, 3, 4))
@pytest.mark.parametrize("scale", (1e-6, 3e5))
def test_attention_decode_extreme_scales(bits, scale, key):
    # Norms far outside float16's range: the tensor-core paths' power-of-two scales must absorb them.
    dim, b, hq, hkv, t = 128, 2, 4, 1, 600
    kk, vk = jax.random.split(key)
    k_quant = TurboQuant(dim, bits, "rotor-mix", key=kk)
    v_quant = TurboQuant(dim, bits, "hadamard", key=vk)
    keys = jax.random.normal(jax.random.fold_in(key, 11), (b, hkv, t, dim)) * scale
    values = jax.random.normal(jax.random.fold_in(key, 12), (b, hkv, t, dim)) * scale
    kc, vc = k_quant.encode(keys), v_quant.encode(values)
    q = jax.random.normal(jax.random.fold_in(key, 13), (b, hq, 1, dim)) / scale
    lengths = jnp.array([t, 301], jnp.int32)
    got = jax.jit(lambda *a: attention.attention_decode(*a))(q, k_quant, kc, v_quant, vc, lengths)
    want = attention.attention_decode(q, k_quant, kc, v_quant, vc, lengths, backend="jax")
    assert bool(jnp.all(jnp.isfinite(got)))
    assert _rel(got, want) <= 1e-5
    qg = q.reshape(b, hkv, hq // hkv, dim)
    got = jax.jit(lambda q, c: attention.grouped_scores(k_quant, q, c))(qg, kc)
    assert _rel(got, attention.grouped_scores(k_quant, qg, kc, backend="jax")) <= 1e-5


def test_cuda_validation_errors(key):
    kq, _ = _quant(600, 4, "rotor-mix", key)
    kind, dim, params = _ffi.rotation_operands(kq.rotation)
    with pytest.raises(Exception, match="CUDA kernels take dim"):
        jax.block_until_ready(_ffi.encode(jnp.ones((4, 600)), params, kq.boundaries, kq.centroids, kind=kind,
                                          dim=dim, n=600, bits=4))
