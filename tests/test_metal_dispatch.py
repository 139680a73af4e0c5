"""rotorjax.metal's choice between the Metal kernels and the pure-JAX path, on a fake Metal platform:
the CPU device posing as one, so the probe is XLA's real answer for targets it has and lacks."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import jax
import pytest

from rotorjax import _ffi, metal, ops


@pytest.fixture
def fake_metal(monkeypatch):
    """The CPU device as platform "mtl"; platforms() decided afresh."""
    monkeypatch.setattr(metal, "_metal_devices", lambda: {"mtl": jax.devices("cpu")[0]})
    metal.platforms.cache_clear()
    yield
    metal.platforms.cache_clear()


def decide():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = metal.platforms()
    return result, [str(w.message) for w in caught]


def test_no_metal_platform_means_no_kernels_and_no_warning(monkeypatch):
    monkeypatch.setattr(metal, "_metal_devices", dict)
    metal.platforms.cache_clear()
    assert decide() == ((), [])
    metal.platforms.cache_clear()


def test_looking_for_metal_backends_never_raises():
    # Here there are none; on a Mac, whichever Metal plugins are installed.
    assert {p.lower() for p in metal._metal_devices()} <= {"metal", "mtl", "mps"}


def test_plugin_with_the_targets_is_used_once_announced(fake_metal):
    if "cpu" not in _ffi.platforms():  # registers the CPU module's targets, which the fake plugin then has
        pytest.skip("the CPU kernel module is not built (pip install .)")
    result, messages = decide()
    assert result == ("mtl",)
    assert len(messages) == 1 and "using the Metal kernels" in messages[0] and "'mtl'" in messages[0]
    # Decided once per process: no second probe, no second warning.
    assert decide() == (("mtl",), [])


def test_calls_wider_than_the_metal_kernels_stay_on_pure_jax(fake_metal):
    if "cpu" not in _ffi.platforms():
        pytest.skip("the CPU kernel module is not built (pip install .)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert "mtl" in ops.kernel_platforms(width=metal.MAX_ROTATED_DIM)
    assert "mtl" not in ops.kernel_platforms(width=metal.MAX_ROTATED_DIM + 1)
    assert "mtl" in ops.kernel_platforms()


def test_plugin_without_a_target_falls_back_with_one_warning(fake_metal, monkeypatch):
    monkeypatch.setattr(metal, "TARGETS", ("rotorjax_not_compiled_in",))
    result, messages = decide()
    assert result == ()
    assert len(messages) == 1
    assert "pure-JAX path" in messages[0] and "rotorjax_not_compiled_in" in messages[0]
    assert decide() == ((), [])


def test_a_plugin_that_fails_any_custom_call_is_not_an_error(fake_metal, monkeypatch):
    # jax-metal 0.1.1: every custom call fails to compile ("failed to legalize operation
    # 'mhlo.custom_call'"); whatever exception the probe meets, dispatch falls back.
    def fail(*args, **kwargs):
        raise RuntimeError("error: failed to legalize operation 'mhlo.custom_call'")

    monkeypatch.setattr(jax, "jit", fail)
    result, messages = decide()
    assert result == () and "failed to legalize" in messages[0]


def test_max_rotated_dim_is_the_kernels_limit():
    args = (Path(__file__).resolve().parents[1] / "metal_plugin/include/rotorjax_metal/args.h").read_text()
    assert int(re.search(r"#define RJ_METAL_MAX_N (\d+)", args).group(1)) == metal.MAX_ROTATED_DIM
