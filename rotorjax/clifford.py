"""Cl(3,0) in pure ``jax.numpy``: batched, differentiable.

Layouts (leading dimensions broadcast):

* multivector ``(..., 8)`` in basis order ``[1, e1, e2, e3, e12, e13, e23, e123]``;
* rotor (even subalgebra) ``(..., 4)`` in order ``[1, e12, e13, e23]``;
* vector ``(..., 3)``, bivector ``(..., 3)`` in order ``[e12, e13, e23]``.

The metric is Euclidean (``e_i² = +1``), so ``e12² = e13² = e23² = e123² = -1``. A rotor ``R`` acts on a
vector by the sandwich ``v ↦ R v R̃``; with ``R = exp(-B/2)`` the bivector ``B = θ e12`` rotates ``e1``
toward ``e2`` by ``θ``.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

# Each basis blade as a bit mask over (e1, e2, e3), in the layout order above.
_BLADES = (0b000, 0b001, 0b010, 0b100, 0b011, 0b101, 0b110, 0b111)
_INDEX = {mask: i for i, mask in enumerate(_BLADES)}
GRADES = np.array([bin(m).count("1") for m in _BLADES])
_EVEN = np.array([0, 4, 5, 6])  # positions of [1, e12, e13, e23] in a multivector
_VECTOR = np.array([1, 2, 3])


def _blade_product(a: int, b: int) -> tuple[int, int]:
    """(sign, mask) of the product of two basis blades: count the swaps that sort the factors."""
    swaps = sum(bin(b & ((1 << i) - 1)).count("1") for i in range(3) if a & (1 << i))
    return (-1 if swaps % 2 else 1), a ^ b


def _product_tensor() -> np.ndarray:
    """``T[i, j, k]`` such that ``(a b)_k = Σ_ij T[i, j, k] a_i b_j``."""
    t = np.zeros((8, 8, 8), np.float32)
    for i, j in itertools.product(range(8), repeat=2):
        sign, mask = _blade_product(_BLADES[i], _BLADES[j])
        t[i, j, _INDEX[mask]] = sign
    return t


PRODUCT_TENSOR = _product_tensor()


def geometric_product(a: jax.Array, b: jax.Array) -> jax.Array:
    """The geometric product ``a b`` of multivectors ``(..., 8)``."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    t = jnp.asarray(PRODUCT_TENSOR, dtype=jnp.result_type(a, b))
    return jnp.einsum("...i,...j,ijk->...k", a, b, t)


def reverse(a: jax.Array) -> jax.Array:
    """The reversion ``ã``: grades 2 and 3 change sign."""
    sign = np.where(GRADES >= 2, -1.0, 1.0).astype(np.float32)
    return jnp.asarray(a) * sign


def grade(a: jax.Array, k: int) -> jax.Array:
    """The grade-``k`` part of ``a``, as a multivector ``(..., 8)``."""
    if k not in (0, 1, 2, 3):
        raise ValueError(f"grade must be 0, 1, 2 or 3 in Cl(3,0), got {k!r}")
    return jnp.asarray(a) * (GRADES == k).astype(np.float32)


def _check_last(x, n, what):
    if x.shape[-1:] != (n,):
        raise ValueError(f"{what} must have shape (..., {n}), got {x.shape}")


def even_to_multivector(r: jax.Array) -> jax.Array:
    """Embed a rotor ``(..., 4)`` as a multivector ``(..., 8)``."""
    r = jnp.asarray(r)
    _check_last(r, 4, "rotor")
    return jnp.zeros(r.shape[:-1] + (8,), r.dtype).at[..., _EVEN].set(r)


def vector_to_multivector(v: jax.Array) -> jax.Array:
    v = jnp.asarray(v)
    _check_last(v, 3, "vector")
    return jnp.zeros(v.shape[:-1] + (8,), v.dtype).at[..., _VECTOR].set(v)


def sandwich(r: jax.Array, v: jax.Array) -> jax.Array:
    """The grade-1 part of ``R v R̃`` for rotors ``(..., 4)`` and vectors ``(..., 3)``.

    Computed with two full geometric products: the reference that ``rotor_to_matrix`` is tested against.
    """
    rm = even_to_multivector(r)
    vm = vector_to_multivector(v)
    return geometric_product(geometric_product(rm, vm), reverse(rm))[..., _VECTOR]


def compose(r1: jax.Array, r2: jax.Array) -> jax.Array:
    """The rotor ``R1 R2``: applying it equals applying ``R2`` first, then ``R1``."""
    s1, a1, b1, c1 = jnp.moveaxis(jnp.asarray(r1), -1, 0)
    s2, a2, b2, c2 = jnp.moveaxis(jnp.asarray(r2), -1, 0)
    # The even subalgebra's product, read off PRODUCT_TENSOR (e12 e13 = -e23, e12 e23 = e13, e13 e23 = -e12).
    return jnp.stack(
        [
            s1 * s2 - a1 * a2 - b1 * b2 - c1 * c2,
            s1 * a2 + a1 * s2 - b1 * c2 + c1 * b2,
            s1 * b2 + b1 * s2 + a1 * c2 - c1 * a2,
            s1 * c2 + c1 * s2 - a1 * b2 + b1 * a2,
        ],
        axis=-1,
    )


def rotor_exp(b: jax.Array) -> jax.Array:
    """``R = exp(-B/2) = cos(θ/2) - sin(θ/2) B/θ`` with ``θ = ‖B‖``; bivectors ``(..., 3)`` → rotors.

    Smooth at ``B = 0`` (Taylor branch), so ``jax.grad`` is finite everywhere.
    """
    b = jnp.asarray(b)
    _check_last(b, 3, "bivector")
    theta2 = jnp.sum(b * b, axis=-1, keepdims=True)
    small = theta2 < 1e-8
    theta = jnp.sqrt(jnp.where(small, 1.0, theta2))
    cos_half = jnp.where(small, 1.0 - theta2 / 8.0, jnp.cos(theta / 2.0))
    sin_half_over_theta = jnp.where(small, 0.5 - theta2 / 48.0, jnp.sin(theta / 2.0) / theta)
    return jnp.concatenate([cos_half, -sin_half_over_theta * b], axis=-1)


def rotor_log(r: jax.Array) -> jax.Array:
    """Inverse of :func:`rotor_exp` for unit rotors: the bivector ``B`` with ``exp(-B/2) = R``, ``‖B‖ ∈ [0, 2π]``."""
    r = jnp.asarray(r)
    _check_last(r, 4, "rotor")
    s, bv = r[..., :1], r[..., 1:]
    n2 = jnp.sum(bv * bv, axis=-1, keepdims=True)
    small = n2 < 1e-16
    n = jnp.sqrt(jnp.where(small, 1.0, n2))
    half = jnp.arctan2(n, s)
    # θ/‖b‖ → 2/s as ‖b‖ → 0 (s ≈ ±1 there).
    factor = jnp.where(small, 2.0 / jnp.where(jnp.abs(s) > 0, s, 1.0), 2.0 * half / n)
    return -factor * bv


def rotor_to_matrix(r: jax.Array) -> jax.Array:
    """The ``(..., 3, 3)`` matrix ``M`` with ``M v = R v R̃ / ‖R‖²``.

    Any nonzero 4-vector gives an orthogonal matrix with det +1 (the homogeneous form), which keeps
    gradients of unnormalised, learned rotors well defined. In quaternion terms ``R`` is
    ``(w, x, y, z) = (s, -b23, b13, -b12)``.
    """
    r = jnp.asarray(r)
    _check_last(r, 4, "rotor")
    s, b12, b13, b23 = jnp.moveaxis(r, -1, 0)
    w, x, y, z = s, -b23, b13, -b12
    n2 = w * w + x * x + y * y + z * z
    rows = [
        [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z],
    ]
    m = jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)
    return m / n2[..., None, None]


def matrix_to_rotor(m: jax.Array) -> jax.Array:
    """A unit rotor (scalar part ≥ 0) for a rotation matrix ``(..., 3, 3)`` (Shepperd's method)."""
    m = jnp.asarray(m)
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrix must have shape (..., 3, 3), got {m.shape}")
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    tr = m00 + m11 + m22
    # Four candidate quaternions (w, x, y, z); each is accurate when its leading term is the largest.
    cands = jnp.stack(
        [
            jnp.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            jnp.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22, m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
            jnp.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m00 + m11 - m22, m[..., 1, 2] + m[..., 2, 1]], -1),
            jnp.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 - m00 - m11 + m22], -1),
        ],
        axis=-2,
    )
    pick = jnp.argmax(jnp.stack([tr, m00, m11, m22], -1), axis=-1)
    q = jnp.take_along_axis(cands, pick[..., None, None], axis=-2)[..., 0, :]
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    q = q * jnp.where(q[..., :1] < 0, -1.0, 1.0)
    w, x, y, z = jnp.moveaxis(q, -1, 0)
    return jnp.stack([w, -z, y, -x], axis=-1)


def random_rotor(key: jax.Array, shape: tuple[int, ...] = (), dtype=jnp.float32) -> jax.Array:
    """Haar-uniform rotors on SO(3): a normalised standard-normal 4-vector.

    (The exp of a uniform angle about a uniform axis, as RotorQuant samples, over-weights small
    rotations: Haar rotation angles have density ``(1 - cos θ)/π`` on ``[0, π]``.)
    """
    g = jax.random.normal(key, tuple(shape) + (4,), dtype)
    return g / jnp.linalg.norm(g, axis=-1, keepdims=True)


def rotation_angle(r: jax.Array) -> jax.Array:
    """The rotation angle ``θ ∈ [0, π]`` of the rotation a rotor performs."""
    r = jnp.asarray(r)
    s = jnp.abs(r[..., 0]) / jnp.linalg.norm(r, axis=-1)
    return 2.0 * jnp.arccos(jnp.clip(s, 0.0, 1.0))
