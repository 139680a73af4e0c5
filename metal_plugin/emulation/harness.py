"""Builds the CPU emulation of the Metal kernels (emulate.cc) and calls it from NumPy.

``build(kernels_dir)`` compiles the ``.metal`` sources of ``kernels_dir`` (default: the repository's)
with the metal_stdlib shim into a shared library, cached in the temp directory under a hash of every
input, so a test session compiles each distinct source set once. ``Emulator`` wraps its C ABI with
the operand layout of ``rotorjax._ffi`` (raw rotation parameters, codebook, optional QJL matrix).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import ml_dtypes
import numpy as np

PLUGIN = Path(__file__).resolve().parents[1]
ROOT = PLUGIN.parent
KERNELS = PLUGIN / "kernels"
INCLUDES = (PLUGIN / "shim", ROOT / "ffi" / "include", PLUGIN / "include")
# RJ_METAL_F32 / F16 / BF16 of rotorjax_metal/args.h.
DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(ml_dtypes.bfloat16): 2}


def compiler() -> str:
    """clang++ (what the issue and docs/metal.md name); its absence is an error, not a skip."""
    cxx = shutil.which("clang++")
    if cxx is None:
        raise RuntimeError("clang++ not found: install clang (CI: apt-get install -y clang)")
    return cxx


def include_flags(kernels_dir: Path) -> list[str]:
    return [f"-I{p}" for p in (*INCLUDES, kernels_dir)]


def syntax_check(source: Path, kernels_dir: Path = KERNELS) -> subprocess.CompletedProcess:
    """``clang++ -fsyntax-only`` of one ``.metal`` file with the shim's address spaces on."""
    cmd = [compiler(), "-x", "c++", "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
           "-Wno-unknown-attributes", "-DRJ_SHIM_ADDRESS_SPACES", *include_flags(kernels_dir), str(source)]
    return subprocess.run(cmd, capture_output=True, text=True)


def host_syntax_check(source: Path) -> subprocess.CompletedProcess:
    """``clang++ -x objective-c++ -fsyntax-only`` of host code against the Foundation/Metal declarations
    in shim/objc (ARC and blocks on, as the macOS build compiles it)."""
    cmd = [compiler(), "-x", "objective-c++", "-std=c++17", "-fobjc-arc", "-fblocks", "-fobjc-runtime=gnustep-2.0",
           "-fsyntax-only", "-Wall", "-Wextra", "-Werror", f"-I{PLUGIN / 'shim' / 'objc'}", f"-I{PLUGIN / 'host'}",
           f"-I{PLUGIN / 'include'}", f"-I{PLUGIN / 'emulation'}", f"-I{ROOT / 'ffi' / 'include'}", str(source)]
    return subprocess.run(cmd, capture_output=True, text=True)


def _inputs(kernels_dir: Path) -> list[Path]:
    files = [*sorted((PLUGIN / "emulation").glob("emulate.*")), *sorted(kernels_dir.iterdir())]
    for d in INCLUDES:
        files += sorted(p for p in d.rglob("*") if p.is_file())
    return files


def build(kernels_dir: Path = KERNELS) -> Path:
    """The emulation library for the kernels in ``kernels_dir`` (compiled once per distinct input)."""
    cxx = compiler()
    # No FMA contraction: the emulation rounds every operation, the same on every CPU.
    flags = ["-std=c++17", "-O1", "-shared", "-fPIC", "-ffp-contract=off", "-Wall", "-Werror",
             "-Wno-unknown-attributes"]
    h = hashlib.sha256(" ".join([cxx, *flags]).encode())
    for f in _inputs(kernels_dir):
        h.update(f.name.encode() + f.read_bytes())
    lib = Path(tempfile.gettempdir()) / f"rotorjax-metal-emu-{h.hexdigest()[:16]}.so"
    if not lib.exists():
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        cmd = [cxx, *flags, *include_flags(kernels_dir), str(PLUGIN / "emulation" / "emulate.cc"), "-o", str(tmp)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        tmp.replace(lib)
    return lib


def _unwritten(shape, dtype):
    """An output buffer filled with what no kernel writes on purpose (NaN, 0xFF bytes), so a missed
    element shows up in the comparison instead of passing as zero."""
    dtype = np.dtype(dtype)
    return np.full(shape, 0xFF if dtype == np.uint8 else np.nan, dtype)


def _ptr(a):
    return None if a is None else a.ctypes.data_as(ctypes.c_void_p)


def _f32(a):
    return None if a is None else np.ascontiguousarray(a, np.float32)


class Emulator:
    """The emulated kernels. Arrays are NumPy; ``raw`` is the flat float32 rotation parameters and
    ``qjl`` the (m, n) QJL matrix or None."""

    def __init__(self, lib: Path):
        self._lib = ctypes.CDLL(str(lib))
        for name in ("rj_emu_check_args", "rj_emu_rotate", "rj_emu_encode", "rj_emu_decode", "rj_emu_scores"):
            getattr(self._lib, name).restype = ctypes.c_char_p
        self._lib.rj_emu_check_args.argtypes = [ctypes.c_int] * 5 + [ctypes.c_longlong] * 2 + [
            ctypes.c_int, ctypes.c_float, ctypes.c_longlong, ctypes.c_int]

    @staticmethod
    def _check(err):
        if err is not None:
            raise ValueError(err.decode())

    OPS = {"rotate": 0, "encode": 1, "decode": 2, "scores": 3}  # rotorjax_metal::Op

    def check_args(self, op, *, kind, dim, bits, m=0, rows=1, queries=0, dtype=np.float32, divisor=1.0, raw_count,
                   inverse=False):
        """The host's argument checks (rotorjax_metal::MakeArgs) of ``op`` for any sizes; raises ValueError."""
        self._check(self._lib.rj_emu_check_args(self.OPS[op], kind, dim, bits, m, rows, queries,
                                                DTYPES[np.dtype(dtype)], divisor, raw_count, int(inverse)))

    def rotate(self, x, raw, *, kind, dim, inverse=False):
        """Π [x; 0] of rows ``x (rows, dim)``, or with ``inverse`` (Πᵀ y)[:dim] of ``y (rows, n)``."""
        x = np.ascontiguousarray(x)
        raw = _f32(raw)
        n = self.padded_dim(kind, dim)
        out = _unwritten((x.shape[0], dim if inverse else n), x.dtype)
        if x.shape[1] != (n if inverse else dim):
            raise ValueError(f"rotate input has width {x.shape[1]}")
        self._check(self._lib.rj_emu_rotate(kind, dim, x.shape[0], DTYPES[x.dtype], int(inverse), _ptr(x), _ptr(raw),
                                            ctypes.c_longlong(raw.size), _ptr(out)))
        return out

    def encode(self, x, raw, boundaries, centroids, qjl=None, *, kind, bits):
        x = np.ascontiguousarray(x)
        rows, dim = x.shape
        raw, boundaries, centroids, qjl = map(_f32, (raw, boundaries, centroids, qjl))
        n = self.padded_dim(kind, dim)
        m = 0 if qjl is None else qjl.shape[0]
        codes = _unwritten((rows, -(-n * bits // 8)), np.uint8)
        norms = _unwritten(rows, np.float32)
        qbits = _unwritten((rows, -(-m // 8)), np.uint8)
        qnorms = _unwritten(rows, np.float32)
        self._check(self._lib.rj_emu_encode(
            kind, dim, bits, m, rows, DTYPES[x.dtype], _ptr(x), _ptr(raw), ctypes.c_longlong(raw.size),
            _ptr(boundaries), _ptr(centroids), _ptr(qjl), _ptr(codes), _ptr(norms), _ptr(qbits), _ptr(qnorms)))
        return (codes, norms) + ((qbits, qnorms) if m else ())

    def decode(self, codes, norms, raw, centroids, qjl=None, *, kind, dim, bits, dtype=np.float32):
        codes = np.ascontiguousarray(codes, np.uint8)
        norms, raw, centroids = map(_f32, (norms, raw, centroids))
        m, s, qbits, qnorms = self._qjl(qjl)
        out = _unwritten((codes.shape[0], dim), dtype)
        self._check(self._lib.rj_emu_decode(
            kind, dim, bits, m, codes.shape[0], DTYPES[np.dtype(dtype)], _ptr(codes), _ptr(norms), _ptr(raw),
            ctypes.c_longlong(raw.size), _ptr(centroids), _ptr(s), _ptr(qbits), _ptr(qnorms), _ptr(out)))
        return out

    def scores(self, q, codes, norms, raw, centroids, qjl=None, *, kind, bits, divisor=1.0):
        q = np.ascontiguousarray(q)
        codes = np.ascontiguousarray(codes, np.uint8)
        norms, raw, centroids = map(_f32, (norms, raw, centroids))
        m, s, qbits, qnorms = self._qjl(qjl)
        out = _unwritten((q.shape[0], codes.shape[0]), np.float32)
        self._check(self._lib.rj_emu_scores(
            kind, q.shape[1], bits, m, q.shape[0], codes.shape[0], DTYPES[q.dtype], ctypes.c_float(divisor),
            _ptr(q), _ptr(codes), _ptr(norms), _ptr(raw), ctypes.c_longlong(raw.size), _ptr(centroids), _ptr(s),
            _ptr(qbits), _ptr(qnorms), _ptr(out)))
        return out

    @staticmethod
    def _qjl(qjl):
        """``(matrix, bits, residual norms)`` or None → (m, matrix, bits, norms) as the C ABI takes them."""
        if qjl is None:
            return 0, None, None, None
        s, qbits, qnorms = qjl
        s = _f32(s)
        return s.shape[0], s, np.ascontiguousarray(qbits, np.uint8), _f32(qnorms)

    def padded_dim(self, kind: int, dim: int) -> int:
        """The kernels' rotated width for ``kind`` on ``dim`` (rj_padded_dim)."""
        return self._lib.rj_emu_padded_dim(kind, dim)
