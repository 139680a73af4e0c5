"""TurboQuant: rotate, then quantize each coordinate with a Lloyd–Max codebook.

For ``x ∈ R^d`` with ``‖x‖ > 0`` (Zandieh et al., Algorithm 1):

    u = x / ‖x‖,   y = Π u ∈ R^n,   idx_j = #{i : t_i < y_j},   stored: pack(idx), ‖x‖,
    x̂ = ‖x‖ · Πᵀ c[idx].

With ``qjl=True`` (Algorithm 2, TurboQuant_prod) the codebook has ``b − 1`` bits and a 1-bit QJL sketch
of the residual ``r = y − c[idx]`` is added: ``z = sign(S r)`` with ``S ∈ R^{m×n}`` i.i.d. N(0, 1),
``m = n``, stored with ``γ = ‖r‖``; then ``ŷ = c[idx] + γ √(π/2)/m · Sᵀ z`` and
``E⟨q, x̂⟩ = ⟨q, x⟩`` for every ``q``.

Scores come straight from the codes: ``⟨q, x̂⟩ = ‖x‖ · ⟨Π q, ŷ⟩``, so a query is rotated once and no
``x̂`` is rebuilt. Without QJL the estimate shrinks by about ``1 − D`` (``D`` the codebook's unit-vector
MSE; exactly ``2/π`` at 1 bit); ``debias=True`` divides that out.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from rotorjax import _ffi, codebooks, ops, packing, rotations

NORM_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)


def lookup(table: jax.Array, idx: jax.Array) -> jax.Array:
    """``table[idx]`` for a small replicated table, sharded as ``idx`` is: under a mesh with explicit
    axes (``jax.make_mesh``'s default) a gather must be told its output sharding, or it fails to trace."""
    return table.at[idx].get(out_sharding=jax.typeof(idx).sharding)


@jax.tree_util.register_pytree_node_class
class Codes:
    """Encoded vectors. Every leaf has the vectors' batch shape as its leading dimensions.

    * ``indices``: uint8 ``(..., ⌈n·b/8⌉)``, the bit-packed codebook indices (see :mod:`rotorjax.packing`);
    * ``norms``: ``(...)``, ``‖x‖``;
    * ``qjl_bits``: uint8 ``(..., ⌈m/8⌉)``, packed ``sign(S r) ≥ 0`` (``None`` without QJL);
    * ``residual_norms``: ``(...)``, ``γ = ‖r‖`` (``None`` without QJL).

    ``dtype`` (static) is the dtype ``decode`` returns.
    """

    def __init__(self, indices, norms, qjl_bits=None, residual_norms=None, dtype="float32"):
        self.indices = indices
        self.norms = norms
        self.qjl_bits = qjl_bits
        self.residual_norms = residual_norms
        self.dtype = jnp.dtype(dtype).name

    def tree_flatten(self):
        return (self.indices, self.norms, self.qjl_bits, self.residual_norms), self.dtype

    @classmethod
    def tree_unflatten(cls, dtype, leaves):
        return cls(*leaves, dtype=dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        """The batch shape: one entry per encoded vector."""
        return tuple(self.norms.shape)

    @property
    def nbytes(self) -> int:
        """Bytes actually stored."""
        return sum(int(leaf.size) * leaf.dtype.itemsize for leaf in jax.tree.leaves(self))

    def __getitem__(self, index) -> "Codes":
        return jax.tree.map(lambda leaf: leaf[index], self)

    def __repr__(self):
        return f"Codes(shape={self.shape}, nbytes={self.nbytes}, qjl={self.qjl_bits is not None}, dtype={self.dtype})"


def _check_float(x, what: str) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{what} must have a floating dtype (float32, bfloat16, float16), got {x.dtype}")
    return x


@jax.tree_util.register_pytree_node_class
class TurboQuant:
    """Rotation + Lloyd–Max vector quantizer for vectors of ``dim`` coordinates at ``bits`` bits each.

    Args:
      dim: vector length ``d ≥ 2``.
      bits: bits per coordinate, 1..8 (with ``qjl=True``: 2..8, of which one is the QJL sketch).
      rotation: a kind from :data:`rotorjax.rotations.KINDS` or a :class:`~rotorjax.rotations.Rotation`
        (e.g. a calibrated one) acting on ``R^dim``.
      qjl: add TurboQuant_prod's 1-bit residual sketch (unbiased inner products).
      key: PRNG key for the rotation and the QJL matrix (default: key 0).
      norm_dtype: storage dtype of the norms (float32, bfloat16 or float16).
      backend: ``"auto"`` (compiled XLA FFI kernels where the platform has them, pure JAX elsewhere),
        ``"jax"`` (the pure-JAX reference) or ``"ffi"`` (kernels only); see :mod:`rotorjax.ops`.

    A registered pytree: pass it through ``jit``/``vmap``; its arrays are the rotation's parameters, the
    codebook and the QJL matrix.
    """

    def __init__(self, dim, bits=4, rotation=rotations.DEFAULT, qjl=False, key=None, norm_dtype=jnp.float32,
                 backend="auto"):
        dim = rotations._validate_dim(dim)
        bits = codebooks.validate_bits(bits)
        if qjl and bits < 2:
            raise ValueError(f"qjl=True spends one of the bits on the QJL sketch, so bits must be >= 2, got {bits}")
        if jnp.dtype(norm_dtype) not in [jnp.dtype(t) for t in NORM_DTYPES]:
            raise TypeError(f"norm_dtype must be float32, bfloat16 or float16, got {norm_dtype!r}")
        key = jax.random.key(0) if key is None else key
        rot_key, qjl_key = jax.random.split(key)
        if isinstance(rotation, str):
            rotation = rotations.make(rotation, dim, rot_key)
        elif not isinstance(rotation, rotations.Rotation):
            raise TypeError(f"rotation must be a kind in {rotations.KINDS} or a Rotation, got {type(rotation)}")
        if rotation.dim != dim:
            raise ValueError(f"rotation acts on dim {rotation.dim}, but the quantizer has dim {dim}")
        n = rotation.padded_dim
        book = codebooks.lloyd_max(bits - 1 if qjl else bits, n)
        self.rotation = rotation
        self.centroids = jnp.asarray(book.centroids, jnp.float32)
        self.boundaries = jnp.asarray(book.boundaries, jnp.float32)
        self.qjl_matrix = jax.random.normal(qjl_key, (n, n), jnp.float32) if qjl else None
        self.dim, self.bits, self.qjl = dim, bits, bool(qjl)
        self.norm_dtype = jnp.dtype(norm_dtype).name
        self.codebook_mse = book.unit_vector_mse
        self.backend = ops.check_backend(backend)

    def tree_flatten(self):
        children = (self.rotation, self.centroids, self.boundaries, self.qjl_matrix)
        return children, (self.dim, self.bits, self.qjl, self.norm_dtype, self.codebook_mse, self.backend)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.rotation, obj.centroids, obj.boundaries, obj.qjl_matrix = children
        obj.dim, obj.bits, obj.qjl, obj.norm_dtype, obj.codebook_mse, obj.backend = aux
        return obj

    def __repr__(self):
        return (f"TurboQuant(dim={self.dim}, bits={self.bits}, rotation={self.rotation.kind!r}, "
                f"qjl={self.qjl}, padded_dim={self.padded_dim})")

    @property
    def padded_dim(self) -> int:
        return self.rotation.padded_dim

    @property
    def mse_bits(self) -> int:
        return self.bits - 1 if self.qjl else self.bits

    def _check(self, x, what: str) -> jax.Array:
        x = _check_float(x, what)
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(f"{what} must have shape (..., {self.dim}) for this quantizer, got {x.shape}")
        return x

    # --- rotation ---------------------------------------------------------------------------------

    def rotate(self, x: jax.Array) -> jax.Array:
        """``Π x``: ``(..., dim) → (..., padded_dim)`` float32."""
        return self.rotation.apply(self._check(x, "input").astype(jnp.float32), self.backend)

    def unrotate(self, y: jax.Array) -> jax.Array:
        """``Πᵀ y``: ``(..., padded_dim) → (..., dim)`` float32."""
        return self.rotation.inverse(_check_float(y, "rotated input").astype(jnp.float32), self.backend)

    # --- encode / decode --------------------------------------------------------------------------

    def quantize(self, y: jax.Array) -> jax.Array:
        """Codebook indices ``#{i : t_i < y}`` of rotated coordinates (int32)."""
        method = "compare_all" if self.mse_bits <= 5 else "scan"
        return jnp.searchsorted(self.boundaries, y, side="left", method=method).astype(jnp.int32)

    def encode(self, x: jax.Array) -> Codes:
        """``(..., dim)`` → :class:`Codes`. Zero vectors encode to norm 0 (and decode to zeros). A vector
        with a non-finite entry gets a non-finite norm and decodes to NaN; other vectors are unaffected."""
        return ops.dispatch(self.backend, self._encode_ffi, self._encode_jax, self._check(x, "input"),
                            width=self.padded_dim)

    def _encode_jax(self, x: jax.Array) -> Codes:
        xf = x.astype(jnp.float32)
        norm = jnp.linalg.norm(xf, axis=-1)
        u = xf / jnp.where(norm > 0, norm, 1.0)[..., None]
        y = self.rotation.apply(u)
        idx = self.quantize(y)
        codes = Codes(packing.pack(idx, self.mse_bits), norm.astype(self.norm_dtype), dtype=x.dtype)
        if self.qjl:
            r = y - lookup(self.centroids, idx)
            codes.qjl_bits = packing.pack((r @ self.qjl_matrix.T >= 0).astype(jnp.int32), 1)
            codes.residual_norms = jnp.linalg.norm(r, axis=-1).astype(self.norm_dtype)
        return codes

    def _kernel_rotation(self):
        """The kernels' view of the rotation: for haar, kind "none" on the vectors XLA rotated."""
        return _ffi.rotation_operands(self.rotation)

    def _encode_ffi(self, x: jax.Array) -> Codes:
        kind, dim, params = self._kernel_rotation()
        xin = x.astype(jnp.float32) @ self.rotation.matrix.T if self.rotation.kind == "haar" else x
        out = _ffi.encode(xin, params, self.boundaries, self.centroids, self.qjl_matrix, kind=kind, dim=dim,
                          n=self.padded_dim, bits=self.mse_bits)
        norms = [o.astype(self.norm_dtype) for o in out[1::2]]
        return Codes(out[0], norms[0], *((out[2], norms[1]) if self.qjl else ()), dtype=x.dtype)

    def _qjl_operands(self, codes: Codes):
        if not self.qjl:
            return None
        return self.qjl_matrix, codes.qjl_bits, codes.residual_norms.astype(jnp.float32)

    def _check_codes(self, codes: Codes) -> Codes:
        if not isinstance(codes, Codes):
            raise TypeError(f"expected Codes from TurboQuant.encode, got {type(codes)}")
        expected = packing.packed_size(self.padded_dim, self.mse_bits)
        if codes.indices.shape[-1] != expected:
            raise ValueError(
                f"codes hold {codes.indices.shape[-1]} bytes per vector, but this quantizer "
                f"(padded_dim={self.padded_dim}, {self.mse_bits}-bit indices) expects {expected}"
            )
        if (codes.qjl_bits is not None) != self.qjl:
            raise ValueError(f"codes {'have' if codes.qjl_bits is not None else 'lack'} QJL bits but qjl={self.qjl}")
        return codes

    def _centroid_values(self, codes: Codes) -> jax.Array:
        """``c[idx]`` ``(..., padded_dim)``."""
        return lookup(self.centroids, packing.unpack(codes.indices, self.mse_bits, self.padded_dim))

    def _qjl_signs(self, codes: Codes) -> jax.Array:
        """``z ∈ {±1}^m`` ``(..., m)``."""
        return 2.0 * packing.unpack(codes.qjl_bits, 1, self.qjl_matrix.shape[0]).astype(jnp.float32) - 1.0

    @property
    def _qjl_scale(self) -> float:
        """``√(π/2) / m``."""
        return math.sqrt(math.pi / 2) / self.qjl_matrix.shape[0]

    def _unit_rotated(self, codes: Codes) -> jax.Array:
        """``ŷ`` for unit vectors: ``c[idx]`` (+ the QJL term)."""
        y = self._centroid_values(codes)
        if self.qjl:
            gamma = codes.residual_norms.astype(jnp.float32)[..., None]
            y = y + gamma * self._qjl_scale * (self._qjl_signs(codes) @ self.qjl_matrix)
        return y

    def decode_rotated(self, codes: Codes) -> jax.Array:
        """``‖x‖ · ŷ``: the reconstruction in the rotated domain, ``(..., padded_dim)`` float32."""
        return ops.dispatch(self.backend, self._decode_rotated_ffi, self._decode_rotated_jax, self._check_codes(codes),
                            width=self.padded_dim)

    def _decode_rotated_ffi(self, codes: Codes) -> jax.Array:
        return _ffi.decode(codes.indices, codes.norms.astype(jnp.float32), _ffi.no_params(), self.centroids,
                           self._qjl_operands(codes), kind=_ffi.KIND_NONE, dim=self.padded_dim,
                           bits=self.mse_bits, dtype=jnp.float32)

    def _decode_rotated_jax(self, codes: Codes) -> jax.Array:
        return codes.norms.astype(jnp.float32)[..., None] * self._unit_rotated(codes)

    def decode(self, codes: Codes) -> jax.Array:
        """:class:`Codes` → ``x̂ (..., dim)`` in the dtype that was encoded."""
        return ops.dispatch(self.backend, self._decode_ffi, self._decode_jax, self._check_codes(codes),
                            width=self.padded_dim)

    def _decode_jax(self, codes: Codes) -> jax.Array:
        return self.rotation.inverse(self._decode_rotated_jax(codes)).astype(codes.dtype)

    def _decode_ffi(self, codes: Codes) -> jax.Array:
        if self.rotation.kind == "haar":
            return self.rotation.inverse(self._decode_rotated_ffi(codes)).astype(codes.dtype)
        kind, dim, params = self._kernel_rotation()
        return _ffi.decode(codes.indices, codes.norms.astype(jnp.float32), params, self.centroids,
                           self._qjl_operands(codes), kind=kind, dim=dim, bits=self.mse_bits, dtype=codes.dtype)

    # --- scores -------------------------------------------------------------------------------------

    def scores(self, q: jax.Array, codes: Codes, debias: bool = False) -> jax.Array:
        """Estimates of ``⟨q, x⟩`` from the codes: ``q (*Q, dim)``, codes of batch shape ``(*K)`` →
        ``(*Q, *K)`` float32. Equal to ``⟨q, decode(codes)⟩``; ``debias`` divides the MSE-only
        estimate by ``1 − D`` (QJL estimates are unbiased already)."""
        q, codes = self._check(q, "query"), self._check_scores(codes, debias)
        if self.rotation.kind == "haar":  # the dense rotation runs on XLA's dot on every backend
            return self.scores_rotated(self.rotate(q), codes, debias)
        kind, dim, params = self._kernel_rotation()
        return ops.dispatch(
            self.backend,
            lambda q, codes: self._scores_ffi(q, codes, debias, kind, dim, params),
            lambda q, codes: self._scores_rotated_jax(self.rotation.apply(q.astype(jnp.float32)), codes, debias),
            q, codes, width=self.padded_dim)

    def scores_rotated(self, q_rot: jax.Array, codes: Codes, debias: bool = False) -> jax.Array:
        """:meth:`scores` for a query already rotated by :meth:`rotate`, ``(*Q, padded_dim)``."""
        codes = self._check_scores(codes, debias)
        q_rot = _check_float(q_rot, "rotated query").astype(jnp.float32)
        if q_rot.shape[-1] != self.padded_dim:
            raise ValueError(f"rotated query must have shape (..., {self.padded_dim}), got {q_rot.shape}")
        return ops.dispatch(
            self.backend,
            lambda q, codes: self._scores_ffi(q, codes, debias, _ffi.KIND_NONE, self.padded_dim, _ffi.no_params()),
            lambda q, codes: self._scores_rotated_jax(q, codes, debias),
            q_rot, codes, width=self.padded_dim)

    def _check_scores(self, codes: Codes, debias: bool) -> Codes:
        if debias and self.qjl:
            raise ValueError("debias applies to MSE-only codes; with qjl=True the scores are unbiased already")
        return self._check_codes(codes)

    def _scores_ffi(self, q, codes: Codes, debias: bool, kind: int, dim: int, params) -> jax.Array:
        return _ffi.scores(q, codes.indices, codes.norms.astype(jnp.float32), params, self.centroids,
                           self._qjl_operands(codes), kind=kind, dim=dim, bits=self.mse_bits,
                           divisor=(1.0 - self.codebook_mse) if debias else 1.0)

    def _scores_rotated_jax(self, q_rot: jax.Array, codes: Codes, debias: bool) -> jax.Array:
        kshape = codes.shape
        flat = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[len(kshape):]), codes)
        s = jnp.einsum("...n,kn->...k", q_rot, self._centroid_values(flat))
        if self.qjl:
            sketch = jnp.einsum("...m,km->...k", q_rot @ self.qjl_matrix.T, self._qjl_signs(flat))
            s = s + flat.residual_norms.astype(jnp.float32) * self._qjl_scale * sketch
        if debias:
            s = s / (1.0 - self.codebook_mse)
        s = s * flat.norms.astype(jnp.float32)
        return s.reshape(q_rot.shape[:-1] + kshape)
