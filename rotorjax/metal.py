"""Metal (Apple GPU) dispatch: which Metal platforms' running PJRT plugin has rotorjax's kernels.

The Metal kernels (``metal_plugin/``) are XLA FFI handlers compiled into a Metal PJRT plugin: they
register statically in the plugin's own copy of XLA, so nothing is loaded or registered from Python,
and the only way to know whether they are there is to ask the plugin. :func:`platforms` does that
once per process: for each Metal platform JAX has initialised it compiles (never runs) a call to
every kernel target on that platform's device. The call compiles only if the plugin has the handler;
Apple's jax-metal (0.1.1, the last release) rejects every custom call, so it always takes the
pure-JAX path. For each Metal platform found, one warning says which path rotorjax uses there.
Nothing here raises because Metal kernels are missing.

Hooking into dispatch (``rotorjax._ffi.platforms`` / ``rotorjax.ops.dispatch``): add
``metal.platforms()`` to the platforms that have kernels. The Metal handlers take the same target
names, operands and attributes as the CPU module, so ``rotorjax._ffi``'s calls run unchanged there,
and ``jax.lax.platform_dependent`` picks them on Metal and the pure-JAX reference elsewhere. A
quantizer whose ``padded_dim`` exceeds :data:`MAX_ROTATED_DIM` must not be routed to them.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp

# The plugins' backend names (JAX matches them case-sensitively): Apple's jax-metal, metal-pjrt-plugin,
# jax-mps.
METAL_PLATFORMS = ("METAL", "metal", "mtl", "mps")
# The targets rotorjax._ffi calls; a plugin is used only if it has all of them.
TARGETS = ("rotorjax_rotate", "rotorjax_encode", "rotorjax_decode", "rotorjax_scores")
# Largest rotated width (padded_dim, and QJL rows) the Metal kernels take (RJ_METAL_MAX_N in
# metal_plugin/include/rotorjax_metal/args.h: their per-thread arrays); larger calls must take the
# pure-JAX path, since the handlers refuse them.
MAX_ROTATED_DIM = 1024


def _metal_devices() -> dict[str, jax.Device]:
    """One device per Metal platform JAX has initialised, keyed by its platform name (the name
    lowering, and so ``jax.lax.platform_dependent``, uses)."""
    found = {}
    for name in METAL_PLATFORMS:
        try:
            device = jax.devices(name)[0]
        except RuntimeError:  # no such backend in this process
            continue
        found.setdefault(device.platform, device)
    return found


def _missing_target(device: jax.Device) -> str | None:
    """The first of TARGETS that does not compile for ``device`` (with XLA's reason), or None."""
    arg = jax.ShapeDtypeStruct((1,), jnp.float32, sharding=jax.sharding.SingleDeviceSharding(device))
    for target in TARGETS:
        call = jax.ffi.ffi_call(target, jax.ShapeDtypeStruct((1,), jnp.float32))
        try:
            jax.jit(call).lower(arg).compile()
        except Exception as err:  # whatever the plugin reports, the answer is "not usable here"
            return f"{target}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    return None


@functools.cache
def platforms() -> tuple[str, ...]:
    """The Metal platforms whose running plugin has every rotorjax kernel target, decided (and
    announced with one warning per Metal platform) once per process."""
    usable = []
    for platform, device in _metal_devices().items():
        missing = _missing_target(device)
        if missing is None:
            usable.append(platform)
            warnings.warn(f"rotorjax: using the Metal kernels compiled into the {platform!r} PJRT plugin",
                          stacklevel=2)
        else:
            warnings.warn(f"rotorjax: the {platform!r} PJRT plugin has no rotorjax Metal kernels ({missing}); "
                          "using the pure-JAX path there (docs/metal.md says how to build them in)",
                          stacklevel=2)
    return tuple(usable)
