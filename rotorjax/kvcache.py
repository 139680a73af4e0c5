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

from rotorjax import ops, rotations
from rotorjax.quantizer import Codes, TurboQuant


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

    @classmethod
    def turboquant(cls, cfg, batch: int, capacity: int, spec, seed: int = 0, dtype=jnp.float32):
        """Compressed caches for every layer. ``spec``: one ``QuantSpec`` for all layers or a list with
        one per layer (see ``boundary_layers``). Each layer and each of K/V gets its own rotation."""
        specs = [spec] * cfg.n_layers if isinstance(spec, QuantSpec) else list(spec)
        if len(specs) != cfg.n_layers or not all(isinstance(s, QuantSpec) for s in specs):
            raise ValueError(f"spec must be a QuantSpec or a list of {cfg.n_layers} QuantSpecs")
        base = jax.random.key(seed)
        return cls([TurboQuantKVCache(batch, cfg.n_kv_heads, cfg.head_dim, capacity, s, jax.random.fold_in(base, i), dtype)
                    for i, s in enumerate(specs)])


# --- compressed cache -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class QuantSpec:
    """How one layer's cache is compressed.

    ``k_bits``/``v_bits`` and ``k_rotation``/``v_rotation`` configure two independent ``TurboQuant``s; a
    rotation is a kind (a fresh random one per layer) or a ``rotations.Rotation`` of the head dim, e.g.
    one fitted to the layer's keys by ``rotorjax.calibrate.calibrate``.
    The first ``sinks`` positions and, for each query, the ``recent`` positions up to and including its
    own stay in full precision. ``center_keys`` subtracts the per-head, per-channel mean ``μ`` of the first
    chunk's keys (positions ≥ ``sinks``) before encoding; see ``TurboQuantKVCache``. ``backend`` is
    passed to ``TurboQuant`` (see ``rotorjax.ops``).
    """

    k_bits: int = 4
    v_bits: int = 4
    k_rotation: str | rotations.Rotation = "rotor-mix"
    v_rotation: str | rotations.Rotation = "rotor-mix"
    sinks: int = 4
    recent: int = 64
    center_keys: bool = True
    backend: str = "auto"  # TurboQuant's: compiled kernels where built ("auto"), or pure JAX ("jax")

    def __post_init__(self):
        for f in ("k_rotation", "v_rotation"):
            r = getattr(self, f)
            if not isinstance(r, rotations.Rotation) and r not in rotations.KINDS:
                raise ValueError(f"QuantSpec.{f} must be one of {rotations.KINDS} or a Rotation, got {r!r}")
        ops.check_backend(self.backend)
        for f in ("sinks", "recent"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"QuantSpec.{f} must be an int >= 0, got {v!r}")

    @property
    def label(self) -> str:
        k, v = (r if isinstance(r, str) else f"{r.kind}(given)" for r in (self.k_rotation, self.v_rotation))
        rot = k if k == v else f"{k}/{v}"
        return (f"K{self.k_bits}V{self.v_bits} {rot} s{self.sinks} r{self.recent}"
                f"{'' if self.center_keys else ' nocenter'}")


def boundary_layers(spec: QuantSpec, n_layers: int, n_boundary: int = 1, bits: int = 4) -> list[QuantSpec]:
    """Per-layer specs with the first and last ``n_boundary`` layers at ``bits`` for K and V (boundary
    layers are the most sensitive to KV quantization)."""
    if not 0 <= 2 * n_boundary <= n_layers:
        raise ValueError(f"n_boundary={n_boundary} does not fit {n_layers} layers twice")
    edge = dataclasses.replace(spec, k_bits=bits, v_bits=bits)
    return [edge if i < n_boundary or i >= n_layers - n_boundary else spec for i in range(n_layers)]


def _take_positions(chunk, start, positions):
    """``chunk`` (B, H, T, D) holds positions ``start …``; gather ``positions`` (N,) (clipped into range;
    callers mask the out-of-range ones)."""
    idx = jnp.clip(positions - start, 0, chunk.shape[2] - 1)
    return jnp.take(chunk, idx, axis=2)


def _ring_positions(length, size):
    """Position held by each slot ``r`` of a ring buffer of ``size`` slots after ``length`` appends: the
    latest ``p < length`` with ``p ≡ r (mod size)``; negative when the slot is still empty."""
    r = jnp.arange(size, dtype=jnp.int32)
    return length - 1 - jnp.mod(length - 1 - r, size)


@dataclasses.dataclass(frozen=True)
class CompressedView:
    """Keys of a ``TurboQuantKVCache`` as three blocks along S: codes for every position, the dense
    sinks, and a dense band: for the query at position ``t`` (the queries are the tokens of the chunk
    just appended), slot ``r`` of the band holds position ``t - r``, ``r < recent``.

    Scores of coded keys come from the codes (``TurboQuant.scores_rotated``: ``‖k‖ · ⟨Π q, c[idx]⟩``,
    the query rotated once), plus ``⟨q, μ⟩`` when keys were centred, so that they are on the same scale
    as the dense blocks. The coded value sum is accumulated in the rotated domain,
    ``Σ_j p_j ‖v_j‖ c[idx_j]``, and un-rotated once per query.
    """

    kq: object
    vq: object
    k_codes: object
    v_codes: object
    k_mean: jax.Array | None
    sink_k: jax.Array
    sink_v: jax.Array
    band_k: jax.Array  # (B, Hkv, T, recent, D)
    band_v: jax.Array
    band_pos: jax.Array  # (T, recent)
    length: jax.Array
    sinks: int
    recent: int

    @property
    def num_kv_heads(self):
        return self.sink_k.shape[1]

    def scores(self, q):
        q_rot = self.kq.rotate(q)  # (B, Hkv, G, T, P)
        # One call per (batch row, kv head): scores_rotated takes the outer product of its query and code
        # batches, and its kernels have no vmap rule; B·H_kv is small.
        b, h = self.sink_k.shape[:2]
        s_codes = jnp.stack([jnp.stack([self.kq.scores_rotated(q_rot[i, j], self.k_codes[i, j]) for j in range(h)])
                             for i in range(b)])
        if self.k_mean is not None:
            s_codes = s_codes + jnp.einsum("bhgtd,bhd->bhgt", q.astype(jnp.float32), self.k_mean)[..., None]
        s_sink = jnp.einsum("bhgtd,bhsd->bhgts", q, self.sink_k).astype(jnp.float32)
        s_band = jnp.einsum("bhgtd,bhtrd->bhgtr", q, self.band_k).astype(jnp.float32)
        return jnp.concatenate([s_codes, s_sink, s_band], axis=-1)

    def mask(self, q_pos):
        t = q_pos[:, None]
        j = jnp.arange(self.k_codes.shape[-1], dtype=jnp.int32)[None, :]
        coded = (j < self.length) & (j <= t) & (j >= self.sinks) & (t - j >= self.recent)
        s = jnp.arange(self.sinks, dtype=jnp.int32)[None, :]
        sink = (s < self.length) & (s <= t)
        band = self.band_pos >= self.sinks  # band positions are t - r: causal and recent by construction
        return jnp.concatenate([coded, sink, band], axis=-1)

    def mix(self, p):
        n_codes = self.k_codes.shape[-1]
        p_codes, p_sink, p_band = jnp.split(p, [n_codes, n_codes + self.sinks], axis=-1)
        v_rot = self.vq.decode_rotated(self.v_codes)  # (B, Hkv, S, P): ‖v‖ c[idx], never un-rotated per key
        o = self.vq.unrotate(jnp.einsum("bhgts,bhsn->bhgtn", p_codes, v_rot))
        o = o + jnp.einsum("bhgts,bhsd->bhgtd", p_sink.astype(self.sink_v.dtype), self.sink_v)
        return o + jnp.einsum("bhgtr,bhtrd->bhgtd", p_band.astype(self.band_v.dtype), self.band_v)


class TurboQuantKVCache(nnx.Module):
    """A layer cache storing TurboQuant codes of keys and values (``nnx.Cache`` variables), with dense
    attention sinks, a dense ring buffer of recent tokens and, optionally, centred keys.

    Every appended token is encoded (it will leave the recent window eventually); the sinks and the ring
    are kept beside the codes, and a view masks each key position so that exactly one copy is used.

    Key centring: keys are encoded as ``k - μ`` with ``μ`` the mean over the first chunk's non-sink keys
    (per batch row, head and channel). For a query ``q``, ``⟨q, k⟩ = ⟨q, k - μ⟩ + ⟨q, μ⟩``, and
    ``⟨q, μ⟩`` is the same for every key of that query, so softmax over coded keys alone would not
    change at all; adding it back keeps coded and dense scores comparable. Real keys carry large
    near-constant channels, which centring removes before the quantizer sees them.

    ``bytes_per_token`` counts every stored array (codes, norms, sinks, ring, μ) over the capacity.
    """

    def __init__(self, batch: int, num_kv_heads: int, head_dim: int, capacity: int, spec: QuantSpec = QuantSpec(),
                 key=None, dtype=jnp.float32):
        if spec.sinks > capacity:
            raise ValueError(f"sinks ({spec.sinks}) exceed the capacity ({capacity})")
        key = jax.random.key(0) if key is None else key
        kkey, vkey = jax.random.split(key)
        self.kq = nnx.data(TurboQuant(head_dim, spec.k_bits, spec.k_rotation, key=kkey, backend=spec.backend))
        self.vq = nnx.data(TurboQuant(head_dim, spec.v_bits, spec.v_rotation, key=vkey, backend=spec.backend))
        self.spec, self.capacity = spec, capacity
        empty = lambda q: q.encode(jnp.zeros((batch, num_kv_heads, capacity, head_dim), dtype))
        kc, vc = empty(self.kq), empty(self.vq)
        self.k_idx, self.k_norm = nnx.Cache(kc.indices), nnx.Cache(kc.norms)
        self.v_idx, self.v_norm = nnx.Cache(vc.indices), nnx.Cache(vc.norms)
        dense = lambda n: nnx.Cache(jnp.zeros((batch, num_kv_heads, n, head_dim), dtype))
        self.sink_k, self.sink_v = dense(spec.sinks), dense(spec.sinks)
        self.ring_k, self.ring_v = dense(spec.recent), dense(spec.recent)
        self.k_mean = nnx.Cache(jnp.zeros((batch, num_kv_heads, head_dim), jnp.float32)) if spec.center_keys else None
        self.length = nnx.Cache(jnp.zeros((), jnp.int32))

    def update(self, k, v):
        spec, t = self.spec, k.shape[2]
        start = self.length[...]
        _check_append(start, t, self.capacity)
        end = start + t
        pos = start + jnp.arange(t, dtype=jnp.int32)
        if self.k_mean is not None:
            # μ from the first chunk only: later chunks must be encoded against the same μ.
            w = (pos >= spec.sinks).astype(jnp.float32)
            mu = jnp.einsum("bhtd,t->bhd", k.astype(jnp.float32), w) / jnp.maximum(w.sum(), 1.0)
            self.k_mean[...] = jnp.where(start == 0, mu, self.k_mean[...])
            k_enc = k - self.k_mean[...][:, :, None, :].astype(k.dtype)
        else:
            k_enc = k
        kc, vc = self.kq.encode(k_enc), self.vq.encode(v)
        put = lambda buf, new: jax.lax.dynamic_update_slice(buf, new.astype(buf.dtype), (0, 0, start) + (0,) * (buf.ndim - 3))
        self.k_idx[...], self.k_norm[...] = put(self.k_idx[...], kc.indices), put(self.k_norm[...], kc.norms)
        self.v_idx[...], self.v_norm[...] = put(self.v_idx[...], vc.indices), put(self.v_norm[...], vc.norms)

        sink_pos = jnp.arange(spec.sinks, dtype=jnp.int32)
        take = ((sink_pos >= start) & (sink_pos < end))[:, None]
        self.sink_k[...] = jnp.where(take, _take_positions(k, start, sink_pos), self.sink_k[...])
        self.sink_v[...] = jnp.where(take, _take_positions(v, start, sink_pos), self.sink_v[...])

        # The dense band: for each new query t, positions t - r (r < recent), read from the chunk or, for
        # positions before it, from the ring (position p lives in slot p mod recent).
        band_pos = pos[:, None] - jnp.arange(spec.recent, dtype=jnp.int32)[None, :]  # (T, recent)
        band_k, band_v = (self._band(chunk, ring[...], band_pos, start)
                          for chunk, ring in ((k, self.ring_k), (v, self.ring_v)))
        ring_pos = _ring_positions(end, spec.recent)
        fresh = (ring_pos >= start)[:, None]
        self.ring_k[...] = jnp.where(fresh, _take_positions(k, start, ring_pos), self.ring_k[...])
        self.ring_v[...] = jnp.where(fresh, _take_positions(v, start, ring_pos), self.ring_v[...])
        self.length[...] = end
        return CompressedView(
            self.kq, self.vq, Codes(self.k_idx[...], self.k_norm[...], dtype=kc.dtype),
            Codes(self.v_idx[...], self.v_norm[...], dtype=vc.dtype),
            None if self.k_mean is None else self.k_mean[...],
            self.sink_k[...], self.sink_v[...], band_k, band_v, band_pos, end, spec.sinks, spec.recent)

    @staticmethod
    def _band(chunk, ring, band_pos, start):
        t, r = band_pos.shape
        b, h, _, d = chunk.shape
        flat = band_pos.reshape(-1)
        from_chunk = _take_positions(chunk, start, flat).astype(ring.dtype)
        from_ring = jnp.take(ring, jnp.mod(flat, max(r, 1)), axis=2) if r else from_chunk
        out = jnp.where((flat >= start)[:, None], from_chunk, from_ring)
        return out.reshape(b, h, t, r, d)

    def bytes_per_token(self) -> float:
        arrays = [self.k_idx, self.k_norm, self.v_idx, self.v_norm, self.sink_k, self.sink_v, self.ring_k, self.ring_v]
        if self.k_mean is not None:
            arrays.append(self.k_mean)
        return sum(a.nbytes for a in arrays) / self.capacity
