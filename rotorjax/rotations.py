"""Random rotations of ``R^dim``, every family behind one interface.

``make(kind, dim, key)`` returns a registered pytree with

* ``apply(x)``: ``(..., dim) → (..., padded_dim)``, ``y = Π [x; 0]``;
* ``inverse(y)``: ``(..., padded_dim) → (..., dim)``, ``x = (Πᵀ y)[:dim]``;
* ``as_matrix()``: ``(padded_dim, dim)``, the map ``x ↦ apply(x)``;
* ``num_params``, ``flops`` (multiply-adds per vector), ``dim``, ``padded_dim``, ``kind``.

Families:

* ``"haar"``: a dense Haar-random orthogonal ``d×d`` matrix (TurboQuant). ``d²`` flops.
* ``"hadamard"``: random signs, then the normalised Walsh–Hadamard transform, zero-padded to the next
  power of two (QuaRot). ``n (log₂ n + 1)`` flops.
* ``"rotor"``: one Cl(3,0) rotor per 3-dim block, ``⌈d/3⌉`` blocks, zero padding (RotorQuant).
* ``"planar"``: one Givens rotation per 2-dim block (PlanarQuant).
* ``"iso"``: left multiplication by a unit quaternion per 4-dim block (IsoQuant-Fast).
* ``"rotor-mix"``: rotor blocks interleaved with Walsh–Hadamard mixing, ``R_S H_S ⋯ R_1 H_1 R_0``:
  block rotations alone never move energy between blocks, so a one-hot or outlier-channel input stays
  concentrated and quantizes 15–60× worse than with a dense rotation. The Hadamard stage spreads every
  block over all coordinates; the rotor stage after it turns the resulting ±1/√P patterns into smooth,
  near-Beta coordinates. No padding (``padded_dim = max(dim, 3)``): with ``P`` the largest power of two
  ``≤ n``, ``S = 1`` window ``[0, P)`` if ``n = P``, else ``S = 2`` windows ``[0, P)`` and ``[n-P, n)``.
  Each rotor stage covers ``⌈n/3⌉`` blocks starting at ``min(3g, n-3)``: when ``3 ∤ n`` the last block
  overlaps the one before it and is applied after it. The default.

All maths is elementwise multiply-adds over block components (no small-matrix einsums), which XLA fuses
into one pass; this is also the path that runs where no kernel exists, and the differentiable reference
the kernels are tested against. Block parameters are unconstrained (rotors and quaternions are
normalised when used, Givens blocks are angles), so gradients can train them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rotorjax import clifford

KINDS = ("haar", "hadamard", "rotor", "planar", "iso", "rotor-mix")
DEFAULT = "rotor-mix"


def _validate_dim(dim) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2, got {dim!r}")
    return int(dim)


def _check_input(x, n: int, what: str) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{what} must have a floating dtype (float32, bfloat16, float16), got {x.dtype}")
    if x.ndim == 0 or x.shape[-1] != n:
        raise ValueError(f"{what} must have shape (..., {n}), got {x.shape}")
    return x


def next_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def largest_power_of_two(n: int) -> int:
    return 1 << (n.bit_length() - 1)


# --- Elementwise building blocks (shared by several families) ---------------------------------------


def block_matvec(x: jax.Array, mats: jax.Array) -> jax.Array:
    """``y[..., g, :] = mats[g] @ x[..., g, :]`` for ``x (..., G·k)``, ``mats (G, k, k)``, as broadcast
    multiply-adds over the ``k`` components (an einsum here runs 12× slower on GPU)."""
    g, k = mats.shape[0], mats.shape[-1]
    xs = x.reshape(x.shape[:-1] + (g, k))
    y = xs[..., :, None, 0] * mats[:, :, 0]
    for i in range(1, k):
        y = y + xs[..., :, None, i] * mats[:, :, i]
    return y.reshape(x.shape)


def fwht(x: jax.Array) -> jax.Array:
    """Normalised Walsh–Hadamard transform over the last axis (a power of two), Sylvester order:
    ``y_i = P^{-1/2} Σ_j (-1)^{popcount(i & j)} x_j``. Orthogonal and its own inverse."""
    p = x.shape[-1]
    batch = x.shape[:-1]
    h = 1
    while h < p:
        y = x.reshape(batch + (p // (2 * h), 2, h))
        a, b = y[..., 0, :], y[..., 1, :]
        x = jnp.stack([a + b, a - b], axis=-2).reshape(batch + (p,))
        h *= 2
    return x * (1.0 / math.sqrt(p))


def _pad(x: jax.Array, n: int) -> jax.Array:
    d = x.shape[-1]
    return x if d == n else jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - d)])


def rotor_stage(x: jax.Array, mats: jax.Array, transpose: bool = False) -> jax.Array:
    """One rotor-mix stage over ``x (..., n)``: ``⌈n/3⌉`` 3×3 blocks starting at ``min(3g, n-3)``,
    applied in order (only the last block can overlap). ``transpose`` applies the inverse."""
    n = x.shape[-1]
    full = n // 3
    main, last = mats[:full], mats[full:]
    if transpose:
        main, last = jnp.swapaxes(main, -1, -2), jnp.swapaxes(last, -1, -2)

    def main_part(x):
        head = block_matvec(x[..., : 3 * full], main)
        return head if 3 * full == n else jnp.concatenate([head, x[..., 3 * full :]], axis=-1)

    def last_part(x):
        if last.shape[0] == 0:
            return x
        return jnp.concatenate([x[..., : n - 3], block_matvec(x[..., n - 3 :], last)], axis=-1)

    return main_part(last_part(x)) if transpose else last_part(main_part(x))


def hadamard_windows(n: int) -> tuple[int, ...]:
    """Start offsets of rotor-mix's Walsh–Hadamard windows (each ``largest_power_of_two(n)`` wide)."""
    p = largest_power_of_two(n)
    return (0,) if p == n else (0, n - p)


def _window_fwht(x: jax.Array, start: int, p: int) -> jax.Array:
    n = x.shape[-1]
    if p == n:
        return fwht(x)
    return jnp.concatenate([x[..., :start], fwht(x[..., start : start + p]), x[..., start + p :]], axis=-1)


# --- The rotation families --------------------------------------------------------------------------


class Rotation:
    """Base class: subclasses define ``padded_dim``, ``_forward``, ``_backward``, ``num_params``, ``flops``."""

    kind: ClassVar[str]
    dim: int

    def apply(self, x: jax.Array, backend: str = "jax") -> jax.Array:
        """``(..., dim) → (..., padded_dim)``; computed in float32 and returned in ``x``'s dtype.

        ``backend="jax"`` is this pure-JAX maths (the reference, differentiable in every mode);
        ``"auto"`` / ``"ffi"`` route to the compiled kernels (:func:`rotorjax.ops.rotate`)."""
        if backend != "jax":
            from rotorjax import ops  # ops builds on this module

            return ops.rotate(self, x, backend)
        x = _check_input(x, self.dim, f"input to the {self.kind!r} rotation")
        y = self._forward(_pad(x.astype(jnp.float32), self.padded_dim))
        return y.astype(x.dtype)

    def inverse(self, y: jax.Array, backend: str = "jax") -> jax.Array:
        """``(..., padded_dim) → (..., dim)``, the transpose of :meth:`apply`; ``backend`` as there."""
        if backend != "jax":
            from rotorjax import ops

            return ops.inverse_rotate(self, y, backend)
        y = _check_input(y, self.padded_dim, f"input to the inverse {self.kind!r} rotation")
        x = self._backward(y.astype(jnp.float32))[..., : self.dim]
        return x.astype(y.dtype)

    def as_matrix(self) -> jax.Array:
        """The ``(padded_dim, dim)`` matrix of :meth:`apply`."""
        return self.apply(jnp.eye(self.dim, dtype=jnp.float32)).T


def _pytree(data_field: str):
    """Make a frozen dataclass pytree with one array field ``data_field`` and static ``dim``."""

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        return jax.tree_util.register_dataclass(cls, data_fields=[data_field], meta_fields=["dim"])

    return wrap


@_pytree("matrix")
class HaarRotation(Rotation):
    """Dense Haar-random orthogonal matrix ``Q (d, d)``: ``y = Q x``."""

    kind = "haar"
    matrix: jax.Array
    dim: int

    @property
    def padded_dim(self) -> int:
        return self.dim

    @property
    def num_params(self) -> int:
        return self.dim * self.dim

    @property
    def flops(self) -> int:
        return self.dim * self.dim

    def _forward(self, x):
        return x @ self.matrix.T

    def _backward(self, y):
        return y @ self.matrix

    @classmethod
    def random(cls, dim: int, key: jax.Array) -> "HaarRotation":
        g = jax.random.normal(key, (dim, dim), jnp.float32)
        q, r = jnp.linalg.qr(g)
        return cls(q * jnp.sign(jnp.diag(r)), dim)  # sign fix makes QR's Q Haar-distributed


@_pytree("signs")
class HadamardRotation(Rotation):
    """``y = H_n (s ⊙ [x; 0])`` with random signs ``s`` and ``n`` the next power of two."""

    kind = "hadamard"
    signs: jax.Array
    dim: int

    @property
    def padded_dim(self) -> int:
        return next_power_of_two(self.dim)

    @property
    def num_params(self) -> int:
        return self.padded_dim

    @property
    def flops(self) -> int:
        n = self.padded_dim
        return n * (int(math.log2(n)) + 1)

    def _forward(self, x):
        return fwht(x * self.signs)

    def _backward(self, y):
        return fwht(y) * self.signs

    @classmethod
    def random(cls, dim: int, key: jax.Array) -> "HadamardRotation":
        n = next_power_of_two(dim)
        return cls(jnp.where(jax.random.bernoulli(key, 0.5, (n,)), 1.0, -1.0), dim)


@dataclasses.dataclass(frozen=True)
class BlockRotation(Rotation):
    """Independent ``k×k`` rotations on consecutive blocks of a zero-padded vector."""

    block: ClassVar[int]
    params: jax.Array
    dim: int

    @property
    def num_blocks(self) -> int:
        return -(-self.dim // self.block)

    @property
    def padded_dim(self) -> int:
        return self.num_blocks * self.block

    @property
    def num_params(self) -> int:
        return int(np.prod(self.params.shape))

    @property
    def flops(self) -> int:
        return self.num_blocks * self.block * self.block

    def block_matrices(self) -> jax.Array:
        raise NotImplementedError

    def _forward(self, x):
        return block_matvec(x, self.block_matrices())

    def _backward(self, y):
        return block_matvec(y, jnp.swapaxes(self.block_matrices(), -1, -2))


@_pytree("params")
class RotorRotation(BlockRotation):
    """One Cl(3,0) rotor per 3-dim block (RotorQuant): ``v ↦ R v R̃``; ``params (G, 4)``."""

    kind = "rotor"
    block = 3

    def block_matrices(self):
        return clifford.rotor_to_matrix(self.params)

    @classmethod
    def random(cls, dim: int, key: jax.Array) -> "RotorRotation":
        return cls(clifford.random_rotor(key, (-(-dim // 3),)), dim)


@_pytree("params")
class PlanarRotation(BlockRotation):
    """One Givens rotation per 2-dim block (PlanarQuant); ``params (G,)`` are angles."""

    kind = "planar"
    block = 2

    @property
    def num_params(self) -> int:
        return self.num_blocks

    def block_matrices(self):
        c, s = jnp.cos(self.params), jnp.sin(self.params)
        return jnp.stack([jnp.stack([c, -s], -1), jnp.stack([s, c], -1)], -2)

    @classmethod
    def random(cls, dim: int, key: jax.Array) -> "PlanarRotation":
        return cls(jax.random.uniform(key, (-(-dim // 2),), jnp.float32, -math.pi, math.pi), dim)


def quaternion_left_matrix(q: jax.Array) -> jax.Array:
    """The 4×4 matrix of ``p ↦ q p / ‖q‖`` for quaternions ``(w, x, y, z)``; orthogonal, det +1."""
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = jnp.moveaxis(q, -1, 0)
    rows = [[w, -x, -y, -z], [x, w, -z, y], [y, z, w, -x], [z, -y, x, w]]
    return jnp.stack([jnp.stack(r, -1) for r in rows], -2)


@_pytree("params")
class IsoRotation(BlockRotation):
    """Left multiplication by a unit quaternion per 4-dim block (IsoQuant-Fast); ``params (G, 4)``."""

    kind = "iso"
    block = 4

    def block_matrices(self):
        return quaternion_left_matrix(self.params)

    @classmethod
    def random(cls, dim: int, key: jax.Array) -> "IsoRotation":
        g = jax.random.normal(key, (-(-dim // 4), 4), jnp.float32)
        return cls(g / jnp.linalg.norm(g, axis=-1, keepdims=True), dim)


@_pytree("params")
class RotorMixRotation(Rotation):
    """``R_S H_S ⋯ R_1 H_1 R_0``: rotor stages (``params (S+1, ⌈n/3⌉, 4)``) around Walsh–Hadamard
    windows; see the module docstring for the layout."""

    kind = "rotor-mix"
    params: jax.Array
    dim: int

    @property
    def padded_dim(self) -> int:
        return max(self.dim, 3)

    @property
    def windows(self) -> tuple[int, ...]:
        return hadamard_windows(self.padded_dim)

    @property
    def hadamard_size(self) -> int:
        return largest_power_of_two(self.padded_dim)

    @property
    def num_params(self) -> int:
        return int(np.prod(self.params.shape))

    @property
    def flops(self) -> int:
        p = self.hadamard_size
        return 9 * self.params.shape[0] * self.params.shape[1] + len(self.windows) * p * (int(math.log2(p)) + 1)

    def stage_matrices(self) -> jax.Array:
        return clifford.rotor_to_matrix(self.params)

    def _forward(self, x):
        mats = self.stage_matrices()
        x = rotor_stage(x, mats[0])
        for s, start in enumerate(self.windows):
            x = rotor_stage(_window_fwht(x, start, self.hadamard_size), mats[s + 1])
        return x

    def _backward(self, y):
        mats = self.stage_matrices()
        for s in reversed(range(len(self.windows))):
            y = _window_fwht(rotor_stage(y, mats[s + 1], transpose=True), self.windows[s], self.hadamard_size)
        return rotor_stage(y, mats[0], transpose=True)

    @classmethod
    def random(cls, dim: int, key: jax.Array) -> "RotorMixRotation":
        n = max(dim, 3)
        stages = len(hadamard_windows(n)) + 1
        return cls(clifford.random_rotor(key, (stages, -(-n // 3))), dim)



_FAMILIES = {
    cls.kind: cls
    for cls in (HaarRotation, HadamardRotation, RotorRotation, PlanarRotation, IsoRotation, RotorMixRotation)
}


def make(kind: str = DEFAULT, dim: int = 128, key: jax.Array | None = None) -> Rotation:
    """A random rotation of family ``kind`` acting on ``R^dim``, drawn from ``key`` (default: key 0)."""
    if kind not in _FAMILIES:
        raise ValueError(f"unknown rotation kind {kind!r}; expected one of {KINDS}")
    dim = _validate_dim(dim)
    if key is None:
        key = jax.random.key(0)
    return _FAMILIES[kind].random(dim, key)
