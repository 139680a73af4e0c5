"""Backend dispatch between the compiled XLA FFI kernels and the pure-JAX reference.

``backend`` is one of

* ``"auto"``: the kernel on every platform that has one, pure JAX elsewhere, chosen when the jitted
  function is lowered for a platform (``jax.lax.platform_dependent``), so one function runs anywhere;
* ``"jax"``: the pure-JAX reference (``rotorjax.rotations`` / ``rotorjax.quantizer``);
* ``"ffi"``: the kernel; raises if the default platform has no compiled kernels.

The dense ``"haar"`` rotation always runs on XLA's matrix multiply (a d×d GEMM is what XLA does best);
the kernels then fuse everything around it (``TurboQuant`` passes them the rotated vectors).

:func:`rotate` / :func:`inverse_rotate` are differentiable (``jax.custom_vjp``): for ``y = Π [x; 0]``
the cotangent of ``x`` is ``(Πᵀ ȳ)[:dim]``, computed by the inverse kernel, and the cotangent of the
rotation's parameters is the reference's (``jax.vjp`` of the pure-JAX rotation). They work under
``jit``, ``vmap`` and ``grad``, and with the batch sharded over devices (see ``rotorjax._ffi``).
"""

from __future__ import annotations

import functools

import jax

from rotorjax import _ffi, metal, rotations

BACKENDS = ("auto", "jax", "ffi")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def kernel_platforms(width: int | None = None) -> tuple[str, ...]:
    """Platforms whose kernels are available: compiled extension modules (CPU, CUDA) and Metal PJRT
    plugins that carry the same targets (:mod:`rotorjax.metal`). ``width`` is the rotated dimension of
    the call: the Metal kernels keep a vector in thread memory and take at most
    ``metal.MAX_ROTATED_DIM``, so wider calls stay on pure JAX there."""
    fits_metal = width is None or width <= metal.MAX_ROTATED_DIM
    return _ffi.platforms() + (metal.platforms() if fits_metal else ())


def dispatch(backend: str, kernel, reference, *args, width: int | None = None):
    """``kernel(*args)`` or ``reference(*args)`` as ``backend`` says (see the module docstring);
    ``width`` as in :func:`kernel_platforms`."""
    check_backend(backend)
    if backend == "jax":
        return reference(*args)
    if backend == "ffi":
        platform = jax.default_backend()
        if platform not in kernel_platforms(width):
            _ffi.require(platform)
        return kernel(*args)
    available = kernel_platforms(width)
    if not available:
        return reference(*args)
    return jax.lax.platform_dependent(*args, default=reference, **{p: kernel for p in available})


def _reference(rotation, x, inverse: bool):
    return rotation.inverse(x) if inverse else rotation.apply(x)


def _kernel(rotation, x, inverse: bool):
    if rotation.kind == "haar":
        return _reference(rotation, x, inverse)
    kind, dim, params = _ffi.rotation_operands(rotation)
    return _ffi.rotate(x, params, kind=kind, dim=dim, n=rotation.padded_dim, inverse=inverse)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _rotate(rotation, x, inverse: bool, backend: str):
    return dispatch(backend, functools.partial(_kernel, inverse=inverse),
                    functools.partial(_reference, inverse=inverse), rotation, x, width=rotation.padded_dim)


def _rotate_fwd(rotation, x, inverse, backend):
    return _rotate(rotation, x, inverse, backend), (rotation, x)


def _rotate_bwd(inverse, backend, residuals, g):
    rotation, x = residuals
    _, param_vjp = jax.vjp(lambda r: _reference(r, x, inverse), rotation)
    (rotation_ct,) = param_vjp(g)
    return rotation_ct, _rotate(rotation, g, not inverse, backend)


_rotate.defvjp(_rotate_fwd, _rotate_bwd)


def rotate(rotation: rotations.Rotation, x: jax.Array, backend: str = "auto") -> jax.Array:
    """``Π [x; 0]``: ``(..., dim) → (..., padded_dim)`` in ``x``'s dtype (computed in float32)."""
    x = rotations._check_input(x, rotation.dim, f"input to the {rotation.kind!r} rotation")
    return _rotate(rotation, x, False, check_backend(backend))


def inverse_rotate(rotation: rotations.Rotation, y: jax.Array, backend: str = "auto") -> jax.Array:
    """``(Πᵀ y)[:dim]``: ``(..., padded_dim) → (..., dim)`` in ``y``'s dtype (computed in float32)."""
    y = rotations._check_input(y, rotation.padded_dim, f"input to the inverse {rotation.kind!r} rotation")
    return _rotate(rotation, y, True, check_backend(backend))
