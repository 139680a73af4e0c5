"""The Metal build is a CMake option that is off by default and refuses to turn on without macOS."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "metal_plugin"
pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")


def configure(tmp_path, *options):
    return subprocess.run(["cmake", "-S", str(PLUGIN), "-B", str(tmp_path), *options], capture_output=True, text=True)


def test_off_by_default_configures_nothing(tmp_path):
    result = configure(tmp_path)
    assert result.returncode == 0, result.stderr
    generated = [f for f in tmp_path.rglob("*") if f.is_file() and "rotorjax_metallib" in f.read_text(errors="ignore")]
    assert generated == []


@pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS the option builds")
def test_on_without_macos_is_a_clear_error(tmp_path):
    result = configure(tmp_path, "-DROTORJAX_METAL=ON")
    assert result.returncode != 0 and "needs macOS with the Metal SDK" in result.stderr
