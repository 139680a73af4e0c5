"""Decode-time attention and grouped scores straight from TurboQuant codes.

* :func:`grouped_scores`: batch ``b``'s queries ``(G, dim)`` against batch ``b``'s codes ``(T)``, e.g.
  the query heads of one KV head against that head's cached keys.
* :func:`attention_decode`: ``softmax(q·Kᵀ/√d)·V`` for ``S`` new query tokens per sequence against a
  cache whose keys and values are both encoded (each with its own quantizer: rotation and bits),
  grouped-query (``Hq / Hkv`` query heads per KV head), a length per sequence. New token ``s`` sits at
  cache position ``length − S + s`` and sees positions ``[0, length − S + s]``; a row that sees nothing
  gets zeros.

On CUDA both run as fused kernels (``rotorjax_grouped_scores`` / ``rotorjax_attention_decode`` in
``ffi/cuda``): queries are rotated once, scores come from the packed key codes, the value sum is
accumulated in the values' rotated domain and un-rotated once. Elsewhere (and with ``backend="jax"``)
they run the pure-JAX reference below: decode, then dense maths. QJL codes always take the reference.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from rotorjax import _ffi, ops
from rotorjax.quantizer import Codes, TurboQuant


def _dispatch(backend: str, kernel, reference, *args):
    """Like :func:`rotorjax.ops.dispatch`, for kernels that exist on CUDA only."""
    ops.check_backend(backend)
    if backend == "jax":
        return reference(*args)
    if backend == "ffi":
        if jax.default_backend() != "gpu":
            raise RuntimeError("backend='ffi': these kernels exist for CUDA only; use backend='auto' or 'jax'")
        _ffi.require("cuda")
        return kernel(*args)
    if "cuda" not in _ffi.platforms():
        return reference(*args)
    return jax.lax.platform_dependent(*args, default=reference, cuda=kernel)


def _rotated_query(quant: TurboQuant, q: jax.Array):
    """The kernels' rotation operands for ``quant`` and the query they take: the dense haar rotation
    runs on XLA's matmul first (kind "none")."""
    kind, dim, params = _ffi.rotation_operands(quant.rotation)
    if quant.rotation.kind == "haar":
        q = q.astype(jnp.float32) @ quant.rotation.matrix.T
    return q, kind, dim, params


# --- grouped scores ------------------------------------------------------------------------------


def grouped_scores(quant: TurboQuant, q: jax.Array, codes: Codes, debias: bool = False,
                   backend: str = "auto") -> jax.Array:
    """``q (*B, G, dim)`` against codes of batch shape ``(*B, T)`` → ``(*B, G, T)`` float32: for every
    ``b``, :meth:`TurboQuant.scores` of ``q[b]`` against ``codes[b]``."""
    q, codes = quant._check(q, "query"), quant._check_scores(codes, debias)
    lead = q.shape[:-2]
    if codes.shape[:-1] != lead:
        raise ValueError(f"queries have batch shape {lead} but codes {codes.shape[:-1]} (expected (*B, T))")
    return _dispatch(backend, lambda q, c: _grouped_kernel(quant, q, c, debias),
                     lambda q, c: _grouped_reference(quant, q, c, debias), q, codes)


def _grouped_reference(quant, q, codes, debias):
    lead, (g, t) = q.shape[:-2], (q.shape[-2], codes.shape[-1])
    flat_q = q.reshape((-1, g, q.shape[-1]))
    flat_c = jax.tree.map(lambda a: a.reshape((-1, t) + a.shape[len(lead) + 1:]), codes)
    out = jax.vmap(lambda qb, cb: quant._scores_rotated_jax(quant.rotation.apply(qb.astype(jnp.float32)), cb, debias))(
        flat_q, flat_c)
    return out.reshape(lead + (g, t))


def _grouped_kernel(quant, q, codes, debias):
    lead, (g, t) = q.shape[:-2], (q.shape[-2], codes.shape[-1])
    b = int(np.prod(lead, dtype=np.int64))
    q, kind, dim, params = _rotated_query(quant, q)
    flat = jax.tree.map(lambda a: a.reshape((b, t) + a.shape[len(lead) + 1:]), codes)
    extra = ()
    if quant.qjl:
        extra = (quant.qjl_matrix, flat.qjl_bits, flat.residual_norms.astype(jnp.float32))
    out = jax.ffi.ffi_call("rotorjax_grouped_scores", jax.ShapeDtypeStruct((b, g, t), jnp.float32))(
        q.reshape((b, g, q.shape[-1])), flat.indices, flat.norms.astype(jnp.float32), params, quant.centroids, *extra,
        kind=np.int64(kind), dim=np.int64(dim), bits=np.int64(quant.mse_bits),
        divisor=np.float32((1.0 - quant.codebook_mse) if debias else 1.0))
    return out.reshape(lead + (g, t))


# --- attention -----------------------------------------------------------------------------------


def attention_decode(q: jax.Array, k_quant: TurboQuant, k_codes: Codes, v_quant: TurboQuant, v_codes: Codes,
                     lengths: jax.Array, backend: str = "auto") -> jax.Array:
    """``q (B, Hq, S, dim)`` against keys and values encoded with batch shape ``(B, Hkv, T)`` (``Hkv``
    dividing ``Hq``; query head ``h`` uses KV head ``h // (Hq / Hkv)``), ``lengths (B,)`` cached tokens
    per sequence including the ``S`` new ones → ``(B, Hq, S, dim)`` in ``q``'s dtype."""
    q = k_quant._check(q, "query")
    if v_quant.dim != k_quant.dim:
        raise ValueError(f"keys have dim {k_quant.dim} but values {v_quant.dim}")
    k_codes, v_codes = k_quant._check_codes(k_codes), v_quant._check_codes(v_codes)
    if q.ndim != 4 or len(k_codes.shape) != 3 or k_codes.shape != v_codes.shape or k_codes.shape[0] != q.shape[0]:
        raise ValueError(f"expected q (B, Hq, S, dim) and K, V codes of batch shape (B, Hkv, T); got q {q.shape}, "
                         f"K {k_codes.shape}, V {v_codes.shape}")
    if q.shape[1] % k_codes.shape[1]:
        raise ValueError(f"{q.shape[1]} query heads are not a multiple of {k_codes.shape[1]} KV heads")
    lengths = jnp.asarray(lengths, jnp.int32)
    if lengths.shape != (q.shape[0],):
        raise ValueError(f"lengths must have shape ({q.shape[0]},), got {lengths.shape}")
    reference = lambda *a: attention_reference(*a, k_quant=k_quant, v_quant=v_quant)  # noqa: E731
    if k_quant.qjl or v_quant.qjl:
        if backend == "ffi":
            raise ValueError("the attention_decode kernel takes MSE codes (qjl=False); use backend='auto' or 'jax'")
        return reference(q, k_codes, v_codes, lengths)
    return _dispatch(backend, lambda *a: _attention_kernel(*a, k_quant=k_quant, v_quant=v_quant), reference,
                     q, k_codes, v_codes, lengths)


def attention_reference(q, k_codes, v_codes, lengths, *, k_quant, v_quant):
    """The plain-JAX definition: decode K and V, then masked softmax attention in float32."""
    k = k_quant._decode_jax(k_codes).astype(jnp.float32)
    v = v_quant._decode_jax(v_codes).astype(jnp.float32)
    b, hq, s, d = q.shape
    hkv, t = k.shape[1], k.shape[2]
    qf = q.astype(jnp.float32).reshape(b, hkv, hq // hkv, s, d)
    logits = jnp.einsum("bhgsd,bhtd->bhgst", qf, k) / math.sqrt(d)
    limit = lengths[:, None] - s + 1 + jnp.arange(s)[None, :]  # (B, S): visible positions [0, limit)
    visible = jnp.arange(t)[None, None, :] < limit[:, :, None]  # (B, S, T)
    logits = jnp.where(visible[:, None, None], logits, -jnp.inf)
    top = jnp.max(logits, axis=-1, keepdims=True)
    e = jnp.where(visible[:, None, None], jnp.exp(logits - jnp.where(jnp.isfinite(top), top, 0.0)), 0.0)
    total = jnp.sum(e, axis=-1, keepdims=True)
    p = e / jnp.where(total > 0, total, 1.0)
    out = jnp.einsum("bhgst,bhtd->bhgsd", p, v).reshape(b, hq, s, d)
    return out.astype(q.dtype)


def _attention_kernel(q, k_codes, v_codes, lengths, *, k_quant, v_quant):
    dtype = q.dtype
    q, k_kind, dim, k_params = _rotated_query(k_quant, q)
    v_kind, _, v_params = _ffi.rotation_operands(v_quant.rotation)
    v_haar = v_quant.rotation.kind == "haar"
    if v_haar:  # the kernel returns the rotated-domain output; XLA un-rotates it
        q = q.astype(jnp.float32)
    out = jax.ffi.ffi_call("rotorjax_attention_decode", jax.ShapeDtypeStruct(q.shape, q.dtype))(
        q, k_codes.indices, k_codes.norms.astype(jnp.float32), k_params, k_quant.centroids,
        v_codes.indices, v_codes.norms.astype(jnp.float32), v_params, v_quant.centroids, lengths,
        k_kind=np.int64(k_kind), v_kind=np.int64(v_kind), dim=np.int64(dim),
        k_bits=np.int64(k_quant.mse_bits), v_bits=np.int64(v_quant.mse_bits))
    if v_haar:
        out = v_quant.rotation.inverse(out)
    return out.astype(dtype)
