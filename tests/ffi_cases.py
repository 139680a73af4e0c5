"""Shared pieces of the FFI tests: hypothesis strategies for shapes, dims, bits, dtypes and inputs, and
the comparisons against the pure-JAX reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from rotorjax import rotations

DIMS = (2, 3, 4, 5, 7, 16, 80, 96, 127, 128)
DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)
INPUTS = ("gaussian", "one-hot", "outlier-channel", "with-zeros")
# Relative spacing of representable numbers: an output rounded to a half type may differ by one unit.
EPS = {jnp.dtype(jnp.float32): 0.0, jnp.dtype(jnp.bfloat16): 2.0**-7, jnp.dtype(jnp.float16): 2.0**-10}

kinds = st.sampled_from(rotations.KINDS)
dims = st.sampled_from(DIMS)
dtypes = st.sampled_from(DTYPES)
batch_shapes = st.lists(st.integers(1, 6), min_size=0, max_size=2).map(tuple)
inputs = st.sampled_from(INPUTS)
seeds = st.integers(0, 2**31 - 1)


def make_input(kind: str, shape: tuple[int, ...], dtype, seed: int) -> jax.Array:
    """Fresh vectors of ``shape`` (last axis = dim): Gaussian, one-hot, Gaussian with one channel 100×
    larger (an outlier channel), or Gaussian with every third vector zero."""
    rng = np.random.default_rng(seed)
    dim = shape[-1]
    x = rng.standard_normal(shape).astype(np.float32)
    if kind == "one-hot":
        x = np.zeros(shape, np.float32)
        hot = rng.integers(0, dim, shape[:-1])
        np.put_along_axis(x, hot[..., None], rng.choice([-3.0, 1.0, 2.5], shape[:-1])[..., None], axis=-1)
    elif kind == "outlier-channel":
        x[..., rng.integers(0, dim)] *= 100.0
    elif kind == "with-zeros":
        x.reshape(-1, dim)[::3] = 0.0
    return jnp.asarray(x, dtype)


def assert_close(actual, expected, dtype, rel: float = 1e-5):
    """``|actual − expected| ≤ rel · max|expected|``, plus one unit of ``dtype``'s rounding per element."""
    a = np.asarray(jnp.asarray(actual, jnp.float32))
    e = np.asarray(jnp.asarray(expected, jnp.float32))
    assert a.shape == e.shape, (a.shape, e.shape)
    scale = float(np.max(np.abs(e))) if e.size else 0.0
    tol = rel * scale + EPS[jnp.dtype(dtype)] * np.abs(e) + 1e-30
    err = np.abs(a - e)
    assert np.all(err <= tol), f"max error {err.max():.3g} (scale {scale:.3g}, worst at {np.unravel_index(err.argmax(), err.shape)})"


def assert_codes_match(ref_idx, got_idx, rotated, boundaries):
    """Indices equal except where the reference's rotated value sits on a boundary (a tie, |y − t| ≤
    1e-6 · max|y|, where float rounding order decides); at most a 1e-4 fraction may differ at all."""
    ref_idx, got_idx = np.asarray(ref_idx), np.asarray(got_idx)
    diff = ref_idx != got_idx
    if not diff.any():
        return
    y = np.asarray(rotated, np.float32)[diff]
    t = np.asarray(boundaries, np.float32)
    near = np.min(np.abs(y[:, None] - t[None, :]), axis=1) <= 1e-6 * max(float(np.max(np.abs(rotated))), 1e-30)
    assert near.all(), f"{int((~near).sum())} indices differ away from any boundary"
    assert diff.mean() <= 1e-4 or diff.sum() <= 2, f"{int(diff.sum())} of {diff.size} indices differ"
