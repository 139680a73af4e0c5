"""A Llama-family decoder in Flax NNX: RMSNorm, SwiGLU, rotary position embedding (RoPE), grouped-query
attention (GQA), and optionally Qwen2's biases on the q/k/v projections.

For one layer with input ``x`` (tokens × dim):

    h   = x + W_o · Attn(RoPE(W_q n(x) + b_q), RoPE(W_k n(x) + b_k), W_v n(x) + b_v)
    out = h + W_down (silu(W_gate n'(h)) ⊙ W_up n'(h))

with ``n(x) = x / sqrt(mean(x²) + ε) ⊙ g`` (RMSNorm). RoPE rotates the pair of channels ``(i, i + D/2)`` of
each head at position ``p`` by the angle ``p · θ^(-2i/D)`` (the "rotate-half" layout of Hugging Face; a
llama-arch GGUF stores Q/K rows permuted for llama.cpp's interleaved layout, which the loader undoes).
With GQA, ``H`` query heads share ``H_kv`` key/value heads, query head ``h`` reading kv head
``h // (H / H_kv)``.

Attention itself is not in this file: each layer hands its new keys and values to a cache object and gets
back a view to attend over (``rotorjax.kvcache``), so dense and compressed caches share the model.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from rotorjax import kvcache


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    qkv_bias: bool = False
    tie_embeddings: bool = True
    max_len: int = 8192

    def __post_init__(self):
        for f in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "max_len"):
            v = getattr(self, f)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"LlamaConfig.{f} must be a positive int, got {v!r}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float):
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
        self.eps = eps

    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * self.scale[...]).astype(x.dtype)


def rope(x, positions, theta: float):
    """Rotate-half RoPE. ``x`` (B, heads, T, D), ``positions`` (T,) int."""
    d = x.shape[-1]
    inv_freq = theta ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)
    ang = positions.astype(jnp.float32)[:, None] * inv_freq[None, :]  # (T, D/2)
    cos, sin = jnp.cos(ang), jnp.sin(ang)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


class Attention(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        d, hd = cfg.dim, cfg.head_dim
        self.q = nnx.Linear(d, cfg.n_heads * hd, use_bias=cfg.qkv_bias, rngs=rngs)
        self.k = nnx.Linear(d, cfg.n_kv_heads * hd, use_bias=cfg.qkv_bias, rngs=rngs)
        self.v = nnx.Linear(d, cfg.n_kv_heads * hd, use_bias=cfg.qkv_bias, rngs=rngs)
        self.o = nnx.Linear(cfg.n_heads * hd, d, use_bias=False, rngs=rngs)
        self.n_heads, self.n_kv_heads, self.head_dim, self.theta = cfg.n_heads, cfg.n_kv_heads, hd, cfg.rope_theta

    def __call__(self, x, positions, cache=None):
        b, t, _ = x.shape
        split = lambda y, h: y.reshape(b, t, h, self.head_dim).transpose(0, 2, 1, 3)
        q = rope(split(self.q(x), self.n_heads), positions, self.theta)
        k = rope(split(self.k(x), self.n_kv_heads), positions, self.theta)
        v = split(self.v(x), self.n_kv_heads)
        view = kvcache.DenseView.of_chunk(k, v, positions) if cache is None else cache.update(k, v)
        o = kvcache.attend(q, view, positions)
        return self.o(o.transpose(0, 2, 1, 3).reshape(b, t, self.n_heads * self.head_dim))


class MLP(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        self.gate = nnx.Linear(cfg.dim, cfg.ffn_dim, use_bias=False, rngs=rngs)
        self.up = nnx.Linear(cfg.dim, cfg.ffn_dim, use_bias=False, rngs=rngs)
        self.down = nnx.Linear(cfg.ffn_dim, cfg.dim, use_bias=False, rngs=rngs)

    def __call__(self, x):
        return self.down(jax.nn.silu(self.gate(x)) * self.up(x))


class Block(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg, rngs)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x, positions, cache=None):
        x = x + self.attn(self.attn_norm(x), positions, cache)
        return x + self.mlp(self.mlp_norm(x))


class Llama(nnx.Module):
    """``model(tokens, cache=None) -> logits``. ``tokens`` (B, T) int. Without a cache, plain causal
    self-attention over the T tokens; with a ``kvcache.KVCache``, the tokens are appended at positions
    ``cache.length …`` and attend to everything cached before them."""

    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Embed(cfg.vocab_size, cfg.dim, rngs=rngs)
        self.layers = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = None if cfg.tie_embeddings else nnx.Linear(cfg.dim, cfg.vocab_size, use_bias=False, rngs=rngs)

    def __call__(self, tokens, cache: kvcache.KVCache | None = None):
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be (batch, time), got shape {tokens.shape}")
        if cache is not None and len(cache.layers) != self.cfg.n_layers:
            raise ValueError(f"cache has {len(cache.layers)} layers, model has {self.cfg.n_layers}")
        start = 0 if cache is None else cache.length
        positions = start + jnp.arange(tokens.shape[1], dtype=jnp.int32)
        x = self.embed(tokens)
        for i, layer in enumerate(self.layers):
            x = layer(x, positions, None if cache is None else cache.layers[i])
        return self.head(x)

    def head(self, x):
        """Final norm and the output projection (the embedding matrix when tied) -> logits."""
        x = self.norm(x)
        return self.embed.attend(x) if self.lm_head is None else self.lm_head(x)


@nnx.jit(static_argnames="steps")
def generate(model: Llama, cache: kvcache.KVCache, prompt, steps: int):
    """Greedy decoding as one jitted program: prefill ``prompt`` (B, T) into ``cache``, then a
    ``fori_loop`` of ``steps - 1`` single-token decode steps. Returns the ``steps`` new tokens (B, steps)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    first = jnp.argmax(model(prompt, cache)[:, -1], axis=-1).astype(prompt.dtype)
    out = jnp.zeros((prompt.shape[0], steps), prompt.dtype).at[:, 0].set(first)

    def step(i, carry):
        model, cache, out = carry
        logits = model(out[:, i - 1, None], cache)
        return model, cache, out.at[:, i].set(jnp.argmax(logits[:, -1], axis=-1).astype(out.dtype))

    return nnx.fori_loop(1, steps, step, (model, cache, out))[2]
