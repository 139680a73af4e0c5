"""Synthetic input families that tell rotations apart.

Isotropic Gaussians look the same after any rotation, so they cannot separate a dense rotation from a
block one; one-hot vectors and outlier channels (a few coordinates far larger than the rest, as in real
attention keys) can.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

FAMILIES = ("isotropic", "one-hot", "outlier")


def isotropic(key: jax.Array, n: int, dim: int) -> jax.Array:
    """``n`` standard-normal vectors."""
    return jax.random.normal(key, (n, dim), jnp.float32)


def one_hot(key: jax.Array, n: int, dim: int) -> jax.Array:
    """``n`` random standard basis vectors."""
    return jax.nn.one_hot(jax.random.randint(key, (n,), 0, dim), dim, dtype=jnp.float32)


def outlier_channels(key: jax.Array, n: int, dim: int, channels: int = 4, scale: float = 20.0) -> jax.Array:
    """Standard-normal vectors whose ``channels`` fixed, spread-out coordinates are ``scale``× larger."""
    idx = jnp.unique(jnp.linspace(1, dim - 2, channels).astype(jnp.int32), size=min(channels, dim))
    return jax.random.normal(key, (n, dim), jnp.float32).at[:, idx].multiply(scale)


def make(family: str, key: jax.Array, n: int, dim: int) -> jax.Array:
    """Dispatch by name: one of :data:`FAMILIES`."""
    makers = {"isotropic": isotropic, "one-hot": one_hot, "outlier": outlier_channels}
    if family not in makers:
        raise ValueError(f"unknown input family {family!r}; expected one of {FAMILIES}")
    return makers[family](key, n, dim)
