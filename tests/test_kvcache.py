"""Dense and TurboQuant KV caches: protocol, exactness where keys stay dense, key centring, GQA, per-layer
specs, byte accounting, jitted prefill + decode."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rotorjax import kvcache, rotations
from rotorjax.calibrate import calibrate
from rotorjax.models import Llama, LlamaConfig, generate

# Jitted once per cache structure and token count: far faster than running the model op by op.
fwd = nnx.jit(lambda model, tokens, cache: model(tokens, cache))

# One layer keeps compile times down; test_per_layer_specs uses two.
CFG = LlamaConfig(vocab_size=300, dim=64, n_layers=1, n_heads=4, n_kv_heads=2, head_dim=16, ffn_dim=48, max_len=64)


@pytest.fixture(scope="module")
def model():
    return Llama(CFG, nnx.Rngs(0))


@pytest.fixture(scope="module")
def tokens():
    return jax.random.randint(jax.random.key(1), (2, 20), 0, CFG.vocab_size)


def test_all_dense_window_equals_dense_cache(model, tokens):
    """With every position a sink, or every position inside the recent window, nothing is read from codes."""
    full = model(tokens)
    for spec in (kvcache.QuantSpec(k_bits=2, v_bits=2, sinks=20, recent=0),
                 kvcache.QuantSpec(k_bits=2, v_bits=2, sinks=3, recent=17)):
        cache = kvcache.KVCache.turboquant(CFG, 2, 24, spec)
        np.testing.assert_allclose(fwd(model, tokens, cache), full, atol=2e-5, err_msg=spec.label)


def test_compressed_cache_error_shrinks_with_bits(model, tokens):
    full = model(tokens)
    errs = []
    for bits in (2, 4, 8):
        cache = kvcache.KVCache.turboquant(CFG, 2, 24, kvcache.QuantSpec(k_bits=bits, v_bits=bits, sinks=0, recent=0))
        errs.append(float(jnp.abs(fwd(model, tokens, cache) - full).mean()))
    assert errs[0] > errs[1] > errs[2] > 0, errs


@pytest.mark.parametrize("center", [True, False])
def test_prefill_then_decode_equals_chunked_prefill(model, tokens, center):
    """Each token's codes do not depend on how the sequence was split, and every query sees its own recent
    window dense in a long prefill as in decoding (μ is taken from the first chunk in both)."""
    spec = kvcache.QuantSpec(k_bits=3, v_bits=3, sinks=1, recent=3, center_keys=center)
    a = kvcache.KVCache.turboquant(CFG, 2, 24, spec)
    chunked = jnp.concatenate([fwd(model, tokens[:, :10], a), fwd(model, tokens[:, 10:], a)], axis=1)
    b = kvcache.KVCache.turboquant(CFG, 2, 24, spec)
    stepped = jnp.concatenate([fwd(model, tokens[:, :10], b)] + [fwd(model, tokens[:, i:i + 1], b) for i in range(10, 20)], axis=1)
    np.testing.assert_allclose(stepped, chunked, atol=2e-5)


def _layer_attend(cache, q, k, v):
    view = cache.update(k, v)
    return kvcache.attend(q, view, jnp.arange(k.shape[2], dtype=jnp.int32) + k.shape[2] - q.shape[2])


def test_key_centring_removes_offset_error():
    """Keys with a large shared offset (the outlier channels of real keys): centring makes the coded
    attention far closer to the dense one; the scores from codes are ⟨q, k̂ - μ⟩ + ⟨q, μ⟩."""
    kk = jax.random.split(jax.random.key(2), 4)
    b, h, t, d = 1, 2, 40, 16
    offset = 6.0 * jax.random.normal(kk[0], (1, h, 1, d))
    k = jax.random.normal(kk[1], (b, h, t, d)) + offset
    v = jax.random.normal(kk[2], (b, h, t, d))
    q = 2.0 * jax.random.normal(kk[3], (b, 2 * h, t, d))
    want = _layer_attend(kvcache.DenseKVCache(b, h, d, t), q, k, v)
    errs = {}
    for center in (True, False):
        spec = kvcache.QuantSpec(k_bits=3, v_bits=8, sinks=0, recent=0, center_keys=center)
        cache = kvcache.TurboQuantKVCache(b, h, d, t, spec)
        errs[center] = float(jnp.abs(_layer_attend(cache, q, k, v) - want).mean())
    assert errs[True] < 0.5 * errs[False], errs

    cache = kvcache.TurboQuantKVCache(b, h, d, t, kvcache.QuantSpec(sinks=0, recent=0))
    view = cache.update(k, v)
    mu = cache.k_mean[...]
    np.testing.assert_allclose(mu, k.mean(axis=2), rtol=1e-5, atol=1e-5)
    k_hat = cache.kq.decode(view.k_codes) + mu[:, :, None, :]
    qg = q.reshape(b, h, 2, t, d)
    np.testing.assert_allclose(view.scores(qg)[..., :t], jnp.einsum("bhgtd,bhsd->bhgts", qg, k_hat), rtol=1e-4, atol=1e-3)


def test_bytes_per_token_counts_every_array():
    spec = kvcache.QuantSpec(k_bits=4, v_bits=3, sinks=4, recent=8, center_keys=True)
    b, h, d, cap = 2, 3, 64, 100
    cache = kvcache.TurboQuantKVCache(b, h, d, cap, spec)
    per_vector = {4: 64 * 4 // 8 + 4, 3: 64 * 3 // 8 + 4}  # packed indices + float32 norm
    total = b * h * (cap * (per_vector[4] + per_vector[3]) + 2 * (4 + 8) * d * 4 + d * 4)
    assert cache.bytes_per_token() == pytest.approx(total / cap)
    assert kvcache.DenseKVCache(b, h, d, cap).bytes_per_token() == 2 * b * h * d * 4


def test_per_layer_specs(tokens):
    cfg = dataclasses.replace(CFG, n_layers=2)
    model = Llama(cfg, nnx.Rngs(0))
    base = kvcache.QuantSpec(k_bits=2, v_bits=2)
    assert [s.k_bits for s in kvcache.boundary_layers(base, 2, n_boundary=1, bits=4)] == [4, 4]
    specs = kvcache.boundary_layers(base, 4, n_boundary=1, bits=4)
    assert [(s.k_bits, s.v_bits) for s in specs] == [(4, 4), (2, 2), (2, 2), (4, 4)]
    mixed = [kvcache.QuantSpec(k_bits=4, v_bits=4), dataclasses.replace(base, k_rotation="haar", v_rotation="hadamard")]
    cache = kvcache.KVCache.turboquant(cfg, 2, 24, mixed)
    assert cache.layers[0].bytes_per_token() > cache.layers[1].bytes_per_token()
    assert cache.layers[1].kq.rotation.kind == "haar" and cache.layers[1].vq.rotation.kind == "hadamard"
    assert fwd(model, tokens, cache).shape == (2, 20, cfg.vocab_size)
    with pytest.raises(ValueError, match="cache has 2 layers"):
        Llama(CFG, nnx.Rngs(0))(tokens, cache)


def test_given_rotation(model, tokens):
    """A Rotation in the spec (e.g. one fitted by rotorjax.calibrate) is the one the cache quantizes
    with, for keys and values alike; a wrong dim fails when the cache is built."""
    keys = jax.random.normal(jax.random.key(3), (256, CFG.head_dim)) * jnp.linspace(0.2, 3.0, CFG.head_dim)
    fitted = calibrate(rotations.make("rotor-mix", CFG.head_dim, jax.random.key(4)), keys, steps=5, bits=3)
    spec = kvcache.QuantSpec(k_bits=3, v_bits=3, k_rotation=fitted, v_rotation="hadamard", sinks=0, recent=0)
    assert spec.label.startswith("K3V3 rotor-mix(given)/hadamard")
    cache = kvcache.KVCache.turboquant(CFG, 2, 24, spec)
    assert cache.layers[0].kq.rotation is fitted and cache.layers[0].vq.rotation.kind == "hadamard"
    out = fwd(model, tokens, cache)
    assert out.shape == (2, 20, CFG.vocab_size) and bool(jnp.all(jnp.isfinite(out)))
    wrong = kvcache.QuantSpec(k_rotation=rotations.make("rotor-mix", 2 * CFG.head_dim, jax.random.key(5)))
    with pytest.raises(ValueError, match="dim"):
        kvcache.KVCache.turboquant(CFG, 2, 24, wrong)


def test_jitted_prefill_and_decode_loop(model, tokens):
    spec = kvcache.QuantSpec(k_bits=4, v_bits=3, sinks=2, recent=4)
    prompt = tokens[:, :12]
    out = generate(model, kvcache.KVCache.turboquant(CFG, 2, 24, spec), prompt, 6)
    cache = kvcache.KVCache.turboquant(CFG, 2, 24, spec)
    tok = jnp.argmax(fwd(model, prompt, cache)[:, -1], -1)
    want = [tok]
    for _ in range(5):
        tok = jnp.argmax(fwd(model, tok[:, None], cache)[:, -1], -1)
        want.append(tok)
    np.testing.assert_array_equal(out, jnp.stack(want, axis=1))
    assert int(cache.length) == 17


def test_bad_input():
    with pytest.raises(ValueError, match="k_rotation"):
        kvcache.QuantSpec(k_rotation="nope")
    with pytest.raises(ValueError, match="recent"):
        kvcache.QuantSpec(recent=-1)
    with pytest.raises(ValueError, match="bits"):
        kvcache.TurboQuantKVCache(1, 1, 16, 8, kvcache.QuantSpec(k_bits=0))
    with pytest.raises(ValueError, match="sinks"):
        kvcache.TurboQuantKVCache(1, 1, 16, 8, kvcache.QuantSpec(sinks=9))
    with pytest.raises(ValueError, match="list of 1 QuantSpecs"):
        kvcache.KVCache.turboquant(CFG, 1, 8, [kvcache.QuantSpec()] * 2)
    with pytest.raises(ValueError, match="n_boundary"):
        kvcache.boundary_layers(kvcache.QuantSpec(), 2, n_boundary=2)
    cache = kvcache.TurboQuantKVCache(1, 1, 16, 8, kvcache.QuantSpec(sinks=0, recent=2))
    cache.update(jnp.ones((1, 1, 6, 16)), jnp.ones((1, 1, 6, 16)))
    with pytest.raises(ValueError, match="cache overflow"):
        cache.update(jnp.ones((1, 1, 3, 16)), jnp.ones((1, 1, 3, 16)))
    with pytest.raises(ValueError, match="query heads"):
        kvcache.attend(jnp.ones((1, 3, 2, 16)), kvcache.DenseView.of_chunk(jnp.ones((1, 2, 2, 16)), jnp.ones((1, 2, 2, 16)), jnp.arange(2)), jnp.arange(2))
