"""Learned rotations: fit a rotation's parameters to the vectors it will quantize.

For unit vectors ``u = x / ‖x‖`` and a :class:`~rotorjax.quantizer.TurboQuant` with rotation ``Π``,
codebook ``c`` and boundaries ``t``, the normalised reconstruction error is

    L(Π) = E ‖u − Πᵀ c[idx(Π u)]‖²,    idx(y)_j = #{i : t_i < y_j},

the unit-vector MSE that :func:`quantization_mse` measures through the real encode/decode path. The
block families (``rotor``, ``rotor-mix``, ``planar``, ``iso``) are parametrised without constraints
(rotors and quaternions are normalised when used, Givens blocks are angles), so ``L`` can be minimised by
plain gradient descent on the rotation pytree itself, with an optax optimiser.

The rounding. ``idx`` is integer-valued and piecewise constant, so the backward pass treats the chosen
centroid as a constant (the rounding passes no gradient to its input) and the gradient flows through
``Πᵀ`` alone: ``∇L = −2 E[∂⟨Π u, c[idx]⟩]``. Because Lloyd–Max boundaries are the midpoints between
centroids, ``min_i (y − c_i)²`` is continuous in ``y`` and this is its exact derivative almost
everywhere. (The identity straight-through estimator, ``ŷ = y + sg(c[idx] − y)``, would be useless here:
with ``Π`` orthogonal, ``‖u − Πᵀ ŷ‖² = ‖sg(c[idx] − y)‖²`` in value, and its gradient in ``Π`` is
identically zero.)

Dense Haar matrices are not calibrated: a gradient step leaves the orthogonal group, and their ``d²``
entries per head are what this module avoids. Hadamard signs are discrete.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rotorjax import metrics, rotations
from rotorjax.quantizer import TurboQuant, lookup

CALIBRATABLE = ("rotor", "rotor-mix", "planar", "iso")


def unit_rows(samples: jax.Array) -> jax.Array:
    """``x / ‖x‖`` row-wise (zero rows stay zero), float32 ``(N, dim)`` from any ``(..., dim)``."""
    x = jnp.asarray(samples, jnp.float32).reshape(-1, jnp.shape(samples)[-1])
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x / jnp.where(norm > 0, norm, 1.0)


def distortion(rotation: rotations.Rotation, units: jax.Array, quantizer: TurboQuant) -> jax.Array:
    """``L(Π) = mean ‖u − Πᵀ c[idx(Π u)]‖²`` over unit rows ``units (N, dim)``, with ``quantizer``'s
    codebook (its own rotation is ignored); differentiable in ``rotation`` (see the module docstring)."""
    idx = quantizer.quantize(rotation.apply(units))
    return jnp.mean(jnp.sum((units - rotation.inverse(lookup(quantizer.centroids, idx))) ** 2, axis=-1))


def calibrate(rotation: rotations.Rotation, samples: jax.Array, steps: int = 300, bits: int = 4,
              optimizer: optax.GradientTransformation | None = None, batch_size: int | None = None,
              key: jax.Array | None = None) -> rotations.Rotation:
    """Fit ``rotation``'s parameters to minimise the ``bits``-bit TurboQuant error on ``samples``.

    Args:
      rotation: the starting point, a ``rotor``, ``rotor-mix``, ``planar`` or ``iso`` rotation (e.g.
        ``rotations.make("rotor-mix", dim, key)``).
      samples: ``(..., dim)`` vectors, e.g. one layer's and head's captured keys; only their directions
        matter (the quantizer stores norms exactly).
      steps: optimiser steps.
      bits: the MSE codebook's bits per coordinate (the Lloyd–Max codebook of ``rotation.padded_dim``).
      optimizer: default ``optax.adam(1e-2)`` (rotor components are O(1), angles O(π)).
      batch_size: rows per step, drawn uniformly with replacement from ``key``; ``None`` uses all rows
        every step (deterministic).
      key: PRNG key for the minibatches (default: key 0).

    Returns:
      A rotation of the same type and shape; rotor and quaternion parameters renormalised to unit norm
      (the map is unchanged, and kernels that expect unit rotors get them).
    """
    if rotation.kind not in CALIBRATABLE:
        raise ValueError(f"calibrate fits the {CALIBRATABLE} families; a {rotation.kind!r} rotation has no "
                         "unconstrained parameters to fit")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    units = unit_rows(samples)
    if units.shape[-1] != rotation.dim:
        raise ValueError(f"samples have dim {units.shape[-1]}, the rotation acts on dim {rotation.dim}")
    import optax  # the optional "learn" extra: `import rotorjax` must work without it

    quantizer = TurboQuant(rotation.dim, bits, rotation, backend="jax")
    optimizer = optax.adam(1e-2) if optimizer is None else optimizer
    key = jax.random.key(0) if key is None else key
    return _fit(rotation, units, quantizer, optimizer, steps, batch_size, key)


def _fit(rotation, units, quantizer, optimizer, steps, batch_size, key):
    import optax

    loss_grad = jax.value_and_grad(distortion)

    def step(carry, step_key):
        rot, opt_state = carry
        batch = units if batch_size is None else units[jax.random.randint(step_key, (batch_size,), 0, units.shape[0])]
        _, grads = loss_grad(rot, batch, quantizer)
        updates, opt_state = optimizer.update(grads, opt_state, rot)
        return (optax.apply_updates(rot, updates), opt_state), None

    @jax.jit
    def run(rot, key):
        (rot, _), _ = jax.lax.scan(step, (rot, optimizer.init(rot)), jax.random.split(key, steps))
        return rot

    fitted = run(rotation, key)
    if fitted.kind == "planar":
        return fitted
    return jax.tree.map(lambda p: p / jnp.linalg.norm(p, axis=-1, keepdims=True), fitted)


def quantization_mse(rotation: rotations.Rotation | str, samples: jax.Array, bits: int = 4,
                     key: jax.Array | None = None, backend: str = "auto") -> jax.Array:
    """Held-out error ``E‖x − x̂‖² / ‖x‖²`` of ``bits``-bit TurboQuant with ``rotation`` (a kind is drawn
    from ``key``), through the real encode/decode path (:func:`rotorjax.metrics.mse`) on ``backend``.
    A scalar array, so that ``jax.vmap`` evaluates one rotation per head in one program."""
    x = jnp.asarray(samples, jnp.float32).reshape(-1, jnp.shape(samples)[-1])
    tq = TurboQuant(x.shape[-1], bits, rotation, key=key, backend=backend)
    return metrics.mse(x, tq.decode(tq.encode(x)))
