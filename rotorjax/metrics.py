"""Quality metrics for quantized vectors and estimated inner products (pure jnp)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mse(x: jax.Array, x_hat: jax.Array, normalized: bool = True) -> jax.Array:
    """Mean squared reconstruction error ``E‖x − x̂‖²``, divided by ``‖x‖²`` when ``normalized``
    (the unit-vector MSE TurboQuant reports)."""
    x, x_hat = jnp.asarray(x, jnp.float32), jnp.asarray(x_hat, jnp.float32)
    err = jnp.sum((x - x_hat) ** 2, axis=-1)
    if normalized:
        err = err / jnp.maximum(jnp.sum(x * x, axis=-1), jnp.finfo(jnp.float32).tiny)
    return jnp.mean(err)


def cosine_similarity(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """Mean cosine similarity between matching rows of ``x`` and ``x̂``."""
    x, x_hat = jnp.asarray(x, jnp.float32), jnp.asarray(x_hat, jnp.float32)
    num = jnp.sum(x * x_hat, axis=-1)
    den = jnp.linalg.norm(x, axis=-1) * jnp.linalg.norm(x_hat, axis=-1)
    return jnp.mean(num / jnp.maximum(den, jnp.finfo(jnp.float32).tiny))


def inner_product_error(true: jax.Array, estimate: jax.Array) -> dict[str, jax.Array]:
    """Bias ``E[ŝ − s]``, variance ``Var[ŝ − s]``, RMSE, and the least-squares slope of ``ŝ`` on ``s``
    (1 for an unbiased estimator, ``≈ 1 − D`` for MSE-only TurboQuant)."""
    s, e = jnp.asarray(true, jnp.float32).ravel(), jnp.asarray(estimate, jnp.float32).ravel()
    diff = e - s
    return {
        "bias": jnp.mean(diff),
        "variance": jnp.var(diff),
        "rmse": jnp.sqrt(jnp.mean(diff**2)),
        "slope": jnp.sum(s * e) / jnp.sum(s * s),
    }


def topk_recall(true_scores: jax.Array, est_scores: jax.Array, k: int) -> jax.Array:
    """Fraction of the true top-``k`` keys (last axis) found in the estimated top-``k``, averaged over
    the leading axes."""
    if not 1 <= k <= true_scores.shape[-1]:
        raise ValueError(f"k must be in 1..{true_scores.shape[-1]}, got {k}")
    _, t = jax.lax.top_k(true_scores, k)
    _, e = jax.lax.top_k(est_scores, k)
    hits = jnp.any(t[..., :, None] == e[..., None, :], axis=-1)
    return jnp.mean(jnp.sum(hits, axis=-1) / k)
