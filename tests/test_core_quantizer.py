import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rotorjax as rj
from rotorjax import packing


def test_round_trip_mse_matches_codebook(key):
    x = jax.random.normal(key, (4000, 128))
    for bits in (1, 2, 3, 4):
        tq = rj.TurboQuant(128, bits, "haar", key=key)
        got = float(rj.metrics.mse(x, tq.decode(tq.encode(x))))
        assert abs(got / tq.codebook_mse - 1) < 0.05, (bits, got, tq.codebook_mse)


@pytest.mark.parametrize("kind", rj.rotations.KINDS)
@pytest.mark.parametrize("dim", [5, 96])
def test_every_kind_encodes_and_decodes(kind, dim, key):
    tq = rj.TurboQuant(dim, 3, kind, key=key)
    x = jax.random.normal(key, (2, 50, dim))
    codes = tq.encode(x)
    assert codes.shape == (2, 50)
    assert codes.indices.shape == (2, 50, packing.packed_size(tq.padded_dim, 3))
    x_hat = tq.decode(codes)
    assert x_hat.shape == x.shape and x_hat.dtype == x.dtype
    assert float(rj.metrics.mse(x, x_hat)) < 2 * tq.codebook_mse + 0.01


def test_storage_is_really_packed():
    x = jnp.ones((10, 128))
    codes = rj.TurboQuant(128, 4).encode(x)
    assert codes.indices.shape == (10, 64) and codes.indices.dtype == jnp.uint8
    assert codes.nbytes == 10 * (64 + 4)
    assert rj.TurboQuant(128, 3).encode(x).nbytes == 10 * (48 + 4)
    assert rj.TurboQuant(128, 4, norm_dtype=jnp.bfloat16).encode(x).nbytes == 10 * (64 + 2)
    qjl = rj.TurboQuant(128, 4, qjl=True).encode(x)
    assert qjl.nbytes == 10 * (48 + 4 + 16 + 4)  # 3-bit indices, norm, 128 sign bits, residual norm


def test_indices_are_the_codebook_cells(key):
    tq = rj.TurboQuant(64, 3, "hadamard", key=key)
    x = jax.random.normal(key, (100, 64))
    y = tq.rotate(x / jnp.linalg.norm(x, axis=-1, keepdims=True))
    idx = packing.unpack(tq.encode(x).indices, 3, 64)
    want = np.sum(np.asarray(y)[..., None] > np.asarray(tq.boundaries), axis=-1)
    np.testing.assert_array_equal(idx, want)


@pytest.mark.parametrize("qjl", [False, True])
def test_scores_equal_inner_products_with_decode(qjl, key):
    tq = rj.TurboQuant(80, 4, qjl=qjl, key=key)
    x = jax.random.normal(key, (3, 40, 80))
    q = jax.random.normal(jax.random.fold_in(key, 1), (2, 5, 80))
    codes = tq.encode(x)
    s = tq.scores(q, codes)
    assert s.shape == (2, 5, 3, 40)
    want = jnp.einsum("abd,xyd->abxy", q, tq.decode(codes))
    np.testing.assert_allclose(s, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tq.scores_rotated(tq.rotate(q), codes), s, rtol=1e-6)


def test_qjl_is_unbiased_and_mse_only_is_not(key):
    """Average over independent quantizers (rotation and QJL matrix): slope of ŝ on s."""
    d, bits = 64, 2
    x = jax.random.normal(key, (256, d))
    q = jax.random.normal(jax.random.fold_in(key, 1), (8, d))
    true = q @ x.T

    def slope(qjl, debias, seed):
        tq = rj.TurboQuant(d, bits, "haar", qjl=qjl, key=jax.random.key(seed))
        return rj.metrics.inner_product_error(true, tq.scores(q, tq.encode(x), debias=debias))["slope"]

    seeds = range(12)
    prod = np.mean([slope(True, False, s) for s in seeds])
    mse_only = np.mean([slope(False, False, s) for s in seeds])
    debiased = np.mean([slope(False, True, s) for s in seeds])
    assert abs(prod - 1) < 0.03
    assert abs(mse_only - (1 - rj.TurboQuant(d, bits).codebook_mse)) < 0.03 and mse_only < 0.93
    assert abs(debiased - 1) < 0.03
    with pytest.raises(ValueError, match="unbiased"):
        rj.TurboQuant(d, bits, qjl=True).scores(q, rj.TurboQuant(d, bits, qjl=True).encode(x), debias=True)


def test_jit_vmap_and_pytree(key):
    tq = rj.TurboQuant(96, 4, key=key)
    x = jax.random.normal(key, (6, 96))
    eager = tq.encode(x)
    jitted = jax.jit(lambda t, x: t.encode(x))(tq, x)
    np.testing.assert_array_equal(jitted.indices, eager.indices)
    vmapped = jax.vmap(tq.encode)(x[:, None, :])
    np.testing.assert_array_equal(vmapped.indices[:, 0], eager.indices)
    np.testing.assert_allclose(jax.jit(tq.decode)(eager), tq.decode(eager), atol=1e-6)
    leaves, treedef = jax.tree.flatten(tq)
    again = jax.tree.unflatten(treedef, leaves)
    np.testing.assert_array_equal(again.encode(x).indices, eager.indices)
    assert eager[2:4].shape == (2,)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_dtypes(dtype, key):
    tq = rj.TurboQuant(64, 4, key=key)
    x = jax.random.normal(key, (100, 64)).astype(dtype)
    x_hat = tq.decode(tq.encode(x))
    assert x_hat.dtype == dtype
    assert float(rj.metrics.mse(x, x_hat)) < 1.3 * tq.codebook_mse


def test_zero_and_non_finite_vectors():
    tq = rj.TurboQuant(32, 3, qjl=True)
    x = jnp.zeros((4, 32)).at[1].set(1.0).at[2, 5].set(jnp.nan).at[3, 0].set(jnp.inf)
    codes = tq.encode(x)
    x_hat = tq.decode(codes)
    np.testing.assert_array_equal(x_hat[0], 0.0)  # zero vector: zeros, no NaN
    assert np.all(np.isfinite(x_hat[1])) and float(rj.metrics.cosine_similarity(x[1:2], x_hat[1:2])) > 0.9
    assert np.all(np.isnan(x_hat[2])) and np.all(np.isnan(x_hat[3]))  # non-finite in, NaN out: never silent
    s = tq.scores(jnp.ones((1, 32)), codes)
    assert s[0, 0] == 0 and np.isfinite(s[0, 1]) and np.isnan(s[0, 2])


def test_bad_input_raises_when_tracing():
    for bits in (0, 9, 1.5):
        with pytest.raises(ValueError, match="bits"):
            rj.TurboQuant(64, bits)
    with pytest.raises(ValueError, match="qjl"):
        rj.TurboQuant(64, 1, qjl=True)
    with pytest.raises(ValueError, match="dim"):
        rj.TurboQuant(1, 4)
    with pytest.raises(ValueError, match="unknown rotation"):
        rj.TurboQuant(64, 4, "givens")
    with pytest.raises(ValueError, match="rotation acts on dim 32"):
        rj.TurboQuant(64, 4, rj.rotations.make("rotor", 32))
    with pytest.raises(TypeError, match="norm_dtype"):
        rj.TurboQuant(64, 4, norm_dtype=jnp.int8)
    tq = rj.TurboQuant(64, 4)
    with pytest.raises(ValueError, match=r"\(\.\.\., 64\)"):
        jax.jit(tq.encode)(jnp.zeros((3, 63)))
    with pytest.raises(TypeError, match="floating"):
        jax.jit(tq.encode)(jnp.zeros((3, 64), jnp.int32))
    codes = rj.TurboQuant(64, 3).encode(jnp.ones((2, 64)))
    with pytest.raises(ValueError, match="bytes per vector"):
        tq.decode(codes)
    with pytest.raises(ValueError, match="QJL"):
        rj.TurboQuant(64, 4, qjl=True).decode(rj.TurboQuant(64, 3).encode(jnp.ones((2, 64))))
