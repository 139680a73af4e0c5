import shutil
import subprocess
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
CXX = shutil.which("clang++") or shutil.which("g++") or shutil.which("c++")


@pytest.fixture
def key():
    """A fresh key per test, from the test's name, so tests draw independent inputs."""
    import os
    import zlib

    return jax.random.key(zlib.crc32(os.environ.get("PYTEST_CURRENT_TEST", "").encode()))


@pytest.fixture
def run_cxx(tmp_path):
    """Builds a C++17 check program against ffi/include (the kernel header) and runs it; asserts that it
    built, exited 0 and printed bad=0. Skips where there is no C++ compiler."""
    if CXX is None:
        pytest.skip("needs a C++ compiler")

    def run(source: str, *flags: str, timeout: int = 300) -> None:
        src, exe = tmp_path / "check.cc", tmp_path / "check"
        src.write_text(source)
        build = subprocess.run([CXX, "-std=c++17", "-O1", *flags, "-I", str(ROOT / "ffi" / "include"), str(src), "-o",
                                str(exe)], capture_output=True, text=True)
        assert build.returncode == 0, build.stderr
        out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0 and "bad=0" in out.stdout, (out.stdout + out.stderr)[-3000:]

    return run
