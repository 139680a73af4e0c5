"""Bit packing of quantization indices.

``n`` indices of ``b`` bits become a little-endian bit stream of ``⌈n·b/8⌉`` bytes: index ``i``'s bit
``j`` is stream bit ``i·b + j``, and stream bit ``t`` is bit ``t mod 8`` of byte ``⌊t/8⌋``. Every kernel
(C++, CUDA, Metal) writes this same layout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def packed_size(n: int, bits: int) -> int:
    """Bytes that ``n`` indices of ``bits`` bits occupy."""
    return -(-n * bits // 8)


def pack(indices: jax.Array, bits: int) -> jax.Array:
    """``(..., n)`` integer indices in ``[0, 2^bits)`` → ``(..., ⌈n·bits/8⌉)`` uint8."""
    indices = jnp.asarray(indices)
    n = indices.shape[-1]
    nbytes = packed_size(n, bits)
    shifts = np.arange(bits, dtype=np.uint8)
    stream = ((indices.astype(jnp.uint8)[..., None] >> shifts) & 1).reshape(indices.shape[:-1] + (n * bits,))
    stream = jnp.pad(stream, [(0, 0)] * (stream.ndim - 1) + [(0, nbytes * 8 - n * bits)])
    groups = stream.reshape(indices.shape[:-1] + (nbytes, 8))
    return jnp.sum(groups << np.arange(8, dtype=np.uint8), axis=-1, dtype=jnp.uint8)


def unpack(packed: jax.Array, bits: int, n: int) -> jax.Array:
    """Inverse of :func:`pack`: ``(..., ⌈n·bits/8⌉)`` uint8 → ``(..., n)`` int32 indices."""
    packed = jnp.asarray(packed)
    if packed.shape[-1] != packed_size(n, bits):
        raise ValueError(
            f"packed codes have {packed.shape[-1]} bytes per vector; {n} indices of {bits} bits need "
            f"{packed_size(n, bits)}"
        )
    stream = ((packed[..., None] >> np.arange(8, dtype=np.uint8)) & 1).reshape(packed.shape[:-1] + (-1,))
    groups = stream[..., : n * bits].reshape(packed.shape[:-1] + (n, bits)).astype(jnp.int32)
    return jnp.sum(groups << np.arange(bits, dtype=np.int32), axis=-1)
