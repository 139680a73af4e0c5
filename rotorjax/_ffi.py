"""The compiled XLA FFI kernels: loading, registration, and calls that batch and shard.

Each platform's kernels are an optional extension module exporting ``registrations()``, a dict from
target name (``rotorjax_rotate``, ``rotorjax_encode``, ``rotorjax_decode``, ``rotorjax_scores``) to
handler capsule. The CPU module is ``rotorjax._rotorjax_cpu`` (ffi/src); a CUDA module
``rotorjax._rotorjax_cuda`` exporting the same names is registered for ``"CUDA"`` the same way, so every
call below runs unchanged on either.

Every call flattens the batch to 2-D ``(rows, width)``, then goes through two wrappers:

* ``custom_partitioning``: under ``jax.jit`` with the rows sharded over a mesh axis, each device runs
  the kernel on its own rows (parameters replicated), so nothing is gathered;
* ``custom_vmap``: ``vmap`` over the data adds leading batch dimensions, which the kernels take as
  more rows; ``vmap`` over parameters (e.g. a batch of rotations) runs the kernel once per element.

Rotation parameters and codebooks are passed as buffers, never baked into the compiled kernel.
"""

from __future__ import annotations

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rotorjax import packing

# Kernel numbering of the rotation kinds (RJ_KIND_* in ffi/include/rotorjax/kernel_math.h). "haar" is
# 0 (RJ_KIND_NONE): its dense rotation stays on XLA's matrix multiply and the kernel gets the result.
KIND_NONE = 0
KIND_IDS = {"haar": KIND_NONE, "hadamard": 1, "rotor": 2, "planar": 3, "iso": 4, "rotor-mix": 5}

# lax.platform_dependent's platform name → (extension module, platform name for register_ffi_target).
_EXTENSIONS = {"cpu": ("rotorjax._rotorjax_cpu", "cpu"), "cuda": ("rotorjax._rotorjax_cuda", "CUDA")}
_load_errors: dict[str, str] = {}


@functools.cache
def platforms() -> tuple[str, ...]:
    """Platforms with compiled kernels; imports and registers each platform's module once."""
    found = []
    for platform, (module, ffi_platform) in _EXTENSIONS.items():
        try:
            ext = importlib.import_module(module)
        except ImportError as err:
            _load_errors[platform] = f"{module} could not be imported: {err}"
            continue
        for name, capsule in ext.registrations().items():
            jax.ffi.register_ffi_target(name, capsule, platform=ffi_platform)
        found.append(platform)
    return tuple(found)


def require(platform: str) -> None:
    """Raise a clear error unless ``platform`` has compiled kernels. ``jax.default_backend()`` names a
    CUDA device "gpu"; its kernels are the "cuda" module's."""
    platform = "cuda" if platform == "gpu" else platform
    if platform not in platforms():
        why = _load_errors.get(platform, f"no kernel module is defined for {platform!r}")
        raise RuntimeError(
            f"backend='ffi' needs rotorjax's compiled XLA FFI kernels for {platform!r}, which are not "
            f"available ({why}). Build them with `pip install .` (needs CMake and a C++17 compiler) or "
            f"use backend='auto' or 'jax'."
        )


def no_params() -> jax.Array:
    """The parameters of ``KIND_NONE`` (no rotation)."""
    return jnp.zeros((0,), jnp.float32)


def rotation_operands(rotation) -> tuple[int, int, jax.Array]:
    """``(kind id, kernel dim, raw float32 parameters)`` of a rotation: signs for hadamard, rotors /
    angles / quaternions for the block kinds; for haar no parameters and dim = padded_dim (the
    kernel sees the already-rotated vectors)."""
    kind = rotation.kind
    if kind == "haar":
        return KIND_NONE, rotation.padded_dim, no_params()
    raw = rotation.signs if kind == "hadamard" else rotation.params
    return KIND_IDS[kind], rotation.dim, jnp.asarray(raw, jnp.float32).reshape(-1)


# --- sharding over rows ------------------------------------------------------------------------------


def _row_partitioned(kernel, data, out_row_dims, rule):
    """``kernel(*arrays)`` partitioned over the rows: dim 0 of the args flagged in ``data`` and dim
    ``out_row_dims[i]`` of output ``i``, sharded as the first data arg is; all else replicated.
    ``rule`` is the Shardy rule with rows named ``r``; every other factor must stay whole."""
    fn = custom_partitioning(kernel)
    first = data.index(True)
    single = len(out_row_dims) == 1

    def shardings(mesh, arg_shapes, result_shape):
        spec = arg_shapes[first].sharding.spec
        rows = spec[0] if len(spec) else None
        args = tuple(
            NamedSharding(mesh, P(*[rows if (d and i == 0) else None for i in range(len(a.shape))]))
            for a, d in zip(arg_shapes, data)
        )
        results = [result_shape] if single else result_shape
        outs = tuple(
            NamedSharding(mesh, P(*[rows if i == row_dim else None for i in range(len(r.shape))]))
            for r, row_dim in zip(results, out_row_dims)
        )
        return args, (outs[0] if single else outs)

    def infer(mesh, arg_shapes, result_shape):
        return shardings(mesh, arg_shapes, result_shape)[1]

    def partition(mesh, arg_shapes, result_shape):
        args, outs = shardings(mesh, arg_shapes, result_shape)
        return mesh, kernel, outs, args

    factors = tuple(dict.fromkeys(c for c in rule if c.isalpha() and c != "r"))  # in order of appearance
    fn.def_partition(partition=partition, infer_sharding_from_operands=infer, sharding_rule=rule,
                     need_replication_factors=factors)
    return fn


# --- batching ------------------------------------------------------------------------------------------


def _broadcast(x, size):
    return jnp.broadcast_to(x, (size,) + x.shape)


def _vmappable(fn, data):
    """``custom_vmap`` of ``fn(*arrays)`` whose args flagged in ``data`` share leading batch dimensions
    that every output gets too: a vmapped data axis is one more leading batch dimension (unbatched
    data args are broadcast). A batched non-data arg (e.g. a batch of rotations) falls back to one
    call per element."""
    wrapped = custom_vmap(fn)

    @wrapped.def_vmap
    def rule(axis_size, in_batched, *args):
        if any(b and not d for b, d in zip(in_batched, data)):
            out = jax.lax.map(lambda xs: fn(*xs), tuple(a if b else _broadcast(a, axis_size)
                                                         for a, b in zip(args, in_batched)))
        else:
            out = fn(*(_broadcast(a, axis_size) if d and not b else a for a, b, d in zip(args, in_batched, data)))
        return out, jax.tree.map(lambda _: True, out)

    return wrapped


def _rows(x, trailing: int):
    """``x`` reshaped to ``(rows, *trailing dims)``, and its leading (batch) shape."""
    lead = x.shape[: x.ndim - trailing]
    return x.reshape((int(np.prod(lead, dtype=np.int64)),) + x.shape[x.ndim - trailing:]), lead


# --- the four kernels ------------------------------------------------------------------------------


@functools.cache
def _rotate_fn(kind: int, dim: int, n: int, inverse: bool):
    platforms()  # registers the targets before the first call is lowered
    out_width = dim if inverse else n

    def kernel(x, params):
        out = jax.ShapeDtypeStruct((x.shape[0], out_width), x.dtype)
        return jax.ffi.ffi_call("rotorjax_rotate", out)(x, params, kind=np.int64(kind), dim=np.int64(dim),
                                                        inverse=bool(inverse))

    call = _row_partitioned(kernel, (True, False), (0,), "r a, p -> r b")

    def fn(x, params):
        rows, lead = _rows(x, 1)
        return call(rows, params).reshape(lead + (out_width,))

    return _vmappable(fn, (True, False))


def rotate(x, params, *, kind: int, dim: int, n: int, inverse: bool):
    """``rotorjax_rotate``: ``(..., dim) → (..., n)``, or ``(..., n) → (..., dim)`` when ``inverse``."""
    return _rotate_fn(kind, dim, n, inverse)(x, params)


@functools.cache
def _encode_fn(kind: int, dim: int, n: int, bits: int, qjl: bool):
    platforms()  # registers the targets before the first call is lowered
    nbytes = packing.packed_size(n, bits)

    def kernel(x, params, boundaries, centroids, *s):
        rows = x.shape[0]
        outs = [jax.ShapeDtypeStruct((rows, nbytes), jnp.uint8), jax.ShapeDtypeStruct((rows,), jnp.float32)]
        if qjl:
            outs += [jax.ShapeDtypeStruct((rows, packing.packed_size(s[0].shape[0], 1)), jnp.uint8),
                     jax.ShapeDtypeStruct((rows,), jnp.float32)]
        return tuple(jax.ffi.ffi_call("rotorjax_encode", outs)(
            x, params, boundaries, centroids, *s, kind=np.int64(kind), dim=np.int64(dim), bits=np.int64(bits)))

    rule = "r a, p, b, c" + (", m n" if qjl else "") + " -> r d, r" + (", r e, r" if qjl else "")
    data = (True, False, False, False) + ((False,) if qjl else ())
    call = _row_partitioned(kernel, data, (0,) * (4 if qjl else 2), rule)

    def fn(x, params, boundaries, centroids, *s):
        rows, lead = _rows(x, 1)
        return tuple(o.reshape(lead + o.shape[1:]) for o in call(rows, params, boundaries, centroids, *s))

    return _vmappable(fn, data)


def encode(x, params, boundaries, centroids, qjl_matrix=None, *, kind: int, dim: int, n: int, bits: int):
    """``rotorjax_encode``: ``x (..., dim)`` → ``(codes, norms[, qjl_bits, residual_norms])``."""
    s = () if qjl_matrix is None else (qjl_matrix,)
    return _encode_fn(kind, dim, n, bits, qjl_matrix is not None)(x, params, boundaries, centroids, *s)


@functools.cache
def _decode_fn(kind: int, dim: int, bits: int, qjl: bool, dtype: str):
    platforms()  # registers the targets before the first call is lowered
    def kernel(codes, norms, params, centroids, *q):
        out = jax.ShapeDtypeStruct((codes.shape[0], dim), jnp.dtype(dtype))
        return jax.ffi.ffi_call("rotorjax_decode", out)(
            codes, norms, params, centroids, *q, kind=np.int64(kind), dim=np.int64(dim), bits=np.int64(bits))

    rule = "r a, r, p, c" + (", m n, r b, r" if qjl else "") + " -> r d"
    data = (True, True, False, False) + ((False, True, True) if qjl else ())
    call = _row_partitioned(kernel, data, (0,), rule)

    def fn(codes, norms, params, centroids, *q):
        rows, lead = _rows(codes, 1)
        extra = (q[0], _rows(q[1], 1)[0], q[2].reshape(-1)) if qjl else ()
        return call(rows, norms.reshape(-1), params, centroids, *extra).reshape(lead + (dim,))

    return _vmappable(fn, data)


def decode(codes, norms, params, centroids, qjl=None, *, kind: int, dim: int, bits: int, dtype):
    """``rotorjax_decode``: codes ``(..., ⌈n·bits/8⌉)``, float32 norms ``(...)``
    [, ``qjl = (matrix, bits, residual norms)``] → ``(..., dim)`` of ``dtype``."""
    q = () if qjl is None else tuple(qjl)
    return _decode_fn(kind, dim, bits, qjl is not None, jnp.dtype(dtype).name)(codes, norms, params, centroids, *q)


@functools.cache
def _scores_fn(kind: int, dim: int, bits: int, qjl: bool, divisor: float):
    platforms()  # registers the targets before the first call is lowered
    def kernel(q, codes, norms, params, centroids, *extra):
        out = jax.ShapeDtypeStruct((q.shape[0], codes.shape[0]), jnp.float32)
        return jax.ffi.ffi_call("rotorjax_scores", out)(
            q, codes, norms, params, centroids, *extra, kind=np.int64(kind), dim=np.int64(dim),
            bits=np.int64(bits), divisor=np.float32(divisor))

    # Rows are the encoded vectors (keys / tokens); the queries stay whole on every device.
    rule = "q a, r b, r, p, c" + (", m n, r e, r" if qjl else "") + " -> q r"
    codes_group = (False, True, True, False, False) + ((False, True, True) if qjl else ())
    call = _row_partitioned(kernel, codes_group, (1,), rule)

    def fn(q, codes, norms, params, centroids, *extra):
        qrows, qlead = _rows(q, 1)
        rows, klead = _rows(codes, 1)
        extra = (extra[0], _rows(extra[1], 1)[0], extra[2].reshape(-1)) if qjl else ()
        return call(qrows, rows, norms.reshape(-1), params, centroids, *extra).reshape(qlead + klead)

    wrapped = custom_vmap(fn)

    @wrapped.def_vmap
    def rule_(axis_size, in_batched, q, *rest):
        # Batched queries give leading output dims; batched codes give dims after the queries'.
        codes_batched = any(b for b, d in zip(in_batched[1:], codes_group[1:]) if d)
        if in_batched[0] and not any(in_batched[1:]):
            out = fn(q, *rest)
        elif codes_batched and not in_batched[0] and not any(
                b for b, d in zip(in_batched[1:], codes_group[1:]) if not d):
            rest = tuple(_broadcast(a, axis_size) if d and not b else a
                         for a, b, d in zip(rest, in_batched[1:], codes_group[1:]))
            out = jnp.moveaxis(fn(q, *rest), q.ndim - 1, 0)
        else:
            args = tuple(a if b else _broadcast(a, axis_size) for a, b in zip((q,) + rest, in_batched))
            out = jax.lax.map(lambda xs: fn(*xs), args)
        return out, True

    return wrapped


def scores(q, codes, norms, params, centroids, qjl=None, *, kind: int, dim: int, bits: int, divisor: float):
    """``rotorjax_scores``: queries ``(*Q, dim)`` against codes of batch shape ``(*K)`` → ``(*Q, *K)``
    float32, ``‖x‖ · ⟨Π q, ŷ⟩ / divisor``."""
    extra = () if qjl is None else tuple(qjl)
    return _scores_fn(kind, dim, bits, qjl is not None, float(divisor))(q, codes, norms, params, centroids, *extra)
