"""KV caches for autoregressive attention, kept apart from the attention maths.

Protocol. A layer's cache has ``update(k, v) -> view``: it appends the new keys and values
(B, H_kv, T, D) at positions ``length … length+T-1`` and returns a *view*, a read-only description of
every key the new queries may attend to. A view has

    scores(q)    q (B, H_kv, G, T, D) -> raw logits ⟨q, k_j⟩, (B, H_kv, G, T, S)
    mask(q_pos)  q_pos (T,) -> bool (T, S): key j visible to query t (causal, and the slot is filled)
    mix(p)       p (B, H_kv, G, T, S) softmax weights -> Σ_j p_j v_j, (B, H_kv, G, T, D)

and ``attend`` (the only attention maths) is ``mix(softmax(where(mask, scores / sqrt(D), -inf)))``. GQA is
the G axis: the ``H = H_kv · G`` query heads are grouped by the kv head they read. A view may hold
several kinds of storage side by side (dense sinks, a dense recent window, quantized codes); its S axis is
then the concatenation and ``mask`` makes each key position appear exactly once.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx


def attend(q, view, q_pos):
    """Softmax attention of queries ``q`` (B, H, T, D) at positions ``q_pos`` (T,) over ``view``."""
    b, h, t, d = q.shape
    hkv = view.num_kv_heads
    if h % hkv:
        raise ValueError(f"{h} query heads cannot share {hkv} kv heads")
    qg = q.reshape(b, hkv, h // hkv, t, d)
    s = view.scores(qg).astype(jnp.float32) * (d ** -0.5)
    s = jnp.where(view.mask(q_pos), s, -jnp.inf)
    p = jax.nn.softmax(s, axis=-1)
    return view.mix(p).reshape(b, h, t, d).astype(q.dtype)


@dataclasses.dataclass(frozen=True)
class DenseView:
    """Keys and values in full precision. ``k``, ``v`` (B, H_kv, S, D); ``pos`` (S,) the position held by
    each slot; ``valid`` (S,) whether the slot is filled."""

    k: jax.Array
    v: jax.Array
    pos: jax.Array
    valid: jax.Array

    @classmethod
    def of_chunk(cls, k, v, positions):
        return cls(k, v, positions, jnp.ones(positions.shape, bool))

    @property
    def num_kv_heads(self):
        return self.k.shape[1]

    def scores(self, q):
        return jnp.einsum("bhgtd,bhsd->bhgts", q, self.k)

    def mask(self, q_pos):
        return self.valid[None, :] & (self.pos[None, :] <= q_pos[:, None])

    def mix(self, p):
        return jnp.einsum("bhgts,bhsd->bhgtd", p.astype(self.v.dtype), self.v)


def _check_append(length, t, capacity):
    # Under jit the length is traced and dynamic_update_slice would clamp silently; check whenever we can.
    if not isinstance(length, jax.core.Tracer) and int(length) + t > capacity:
        raise ValueError(f"cache overflow: {int(length)} cached + {t} new tokens > capacity {capacity}")


class DenseKVCache(nnx.Module):
    """The reference cache: keys and values stored as they are, (B, H_kv, capacity, D)."""

    def __init__(self, batch: int, num_kv_heads: int, head_dim: int, capacity: int, dtype=jnp.float32):
        shape = (batch, num_kv_heads, capacity, head_dim)
        self.k = nnx.Cache(jnp.zeros(shape, dtype))
        self.v = nnx.Cache(jnp.zeros(shape, dtype))
        self.length = nnx.Cache(jnp.zeros((), jnp.int32))
        self.capacity = capacity

    def update(self, k, v):
        t = k.shape[2]
        _check_append(self.length[...], t, self.capacity)
        at = (0, 0, self.length[...], 0)
        self.k[...] = jax.lax.dynamic_update_slice(self.k[...], k.astype(self.k.dtype), at)
        self.v[...] = jax.lax.dynamic_update_slice(self.v[...], v.astype(self.v.dtype), at)
        self.length[...] = self.length[...] + t
        pos = jnp.arange(self.capacity, dtype=jnp.int32)
        return DenseView(self.k[...], self.v[...], pos, pos < self.length[...])

    def bytes_per_token(self) -> float:
        """Bytes of cache storage per token at full capacity."""
        return (self.k.nbytes + self.v.nbytes) / self.capacity


class KVCache(nnx.Module):
    """One cache per layer. ``length`` is the number of tokens cached so far."""

    def __init__(self, layers):
        if not layers:
            raise ValueError("a KVCache needs at least one layer cache")
        self.layers = nnx.List(layers)

    @property
    def length(self):
        return self.layers[0].length[...]

    def bytes_per_token(self) -> float:
        """Real bytes of storage per cached token, summed over layers (at full capacity)."""
        return float(sum(layer.bytes_per_token() for layer in self.layers))

    @classmethod
    def dense(cls, cfg, batch: int, capacity: int, dtype=jnp.float32):
        return cls([DenseKVCache(batch, cfg.n_kv_heads, cfg.head_dim, capacity, dtype) for _ in range(cfg.n_layers)])
