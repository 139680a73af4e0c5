"""The Metal kernels (metal_plugin/kernels) on Linux: syntax against the metal_stdlib shim, behaviour
under CPU emulation against the pure-JAX reference, that a wrong shader fails, and that the shaders
take their maths from the shared header. See docs/metal.md for what this does not verify."""

from __future__ import annotations

import math
import re
import shutil
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import rotorjax
from rotorjax import _ffi, packing

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "metal_plugin" / "emulation"))
import harness  # noqa: E402

KERNELS = harness.KERNELS
SHADERS = sorted(KERNELS.glob("*.metal"))


@pytest.fixture(scope="module")
def emu():
    return harness.Emulator(harness.build())


# --- syntax -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shader", SHADERS, ids=lambda p: p.name)
def test_shader_compiles_against_the_shim(shader):
    result = harness.syntax_check(shader)
    assert result.returncode == 0, result.stderr


def test_shim_rejects_a_pointer_in_the_wrong_address_space(tmp_path):
    # The syntax check is only worth something if it catches what Metal's compiler would: a device
    # pointer where the header expects thread memory.
    src = tmp_path / "bad.metal"
    src.write_text('#include "rj_metal.h"\n'
                   "kernel void bad(device float* v [[buffer(0)]]) { rj_fwht(v, 4, 1); }\n")
    result = harness.syntax_check(src)
    assert result.returncode != 0 and "address space" in result.stderr


@pytest.mark.parametrize("source", sorted((harness.PLUGIN / "host").glob("*.mm")), ids=lambda p: p.name)
def test_host_code_type_checks_against_the_metal_api_declarations(source):
    result = harness.host_syntax_check(source)
    assert result.returncode == 0, result.stderr


# --- drift: the shaders' maths is the header's --------------------------------------------------------

# Calls each shader must make into rotorjax/kernel_math.h.
HEADER_CALLS = {
    "block_matrices.metal": ["rj_block_matrices", "rj_block_size", "rj_params_per_block"],
    "rotate.metal": ["rj_rotate"],
    "encode.metal": ["rj_rotate", "rj_quantize", "rj_pack", "rj_packed_size", "rj_qjl_sketch"],
    "decode.metal": ["rj_unpack", "rj_dequantize", "rj_qjl_correct", "rj_rotate"],
    "scores.metal": ["rj_rotate", "rj_dense_matvec", "rj_unpack", "rj_dequantize", "rj_tile_dot", "rj_qjl_scale"],
}
# What the shaders' own helpers (rj_metal.h) may do: move data, nothing else.
OWN_HELPERS = {"rj_metal_load", "rj_metal_store", "rj_metal_load_row", "rj_metal_bytes_in", "rj_metal_bytes_out"}
DEFINITION = re.compile(r"^\s*(?:kernel\s+|inline\s+|static\s+)*[\w:]+[\s*&]+(\w+)\s*\([^;]*?\)\s*\{",
                        re.MULTILINE | re.DOTALL)


def _code(text: str) -> str:
    """Source without comments."""
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.DOTALL)


def test_every_shader_includes_the_shared_header_and_calls_its_maths():
    assert sorted(p.name for p in SHADERS) == sorted(HEADER_CALLS)
    header = (ROOT / "ffi/include/rotorjax/kernel_math.h").read_text()
    for shader in SHADERS:
        code = _code(shader.read_text())
        assert '#include "rotorjax/kernel_math.h"' in code, shader.name
        for fn in HEADER_CALLS[shader.name]:
            assert re.search(rf"RJ_FN\s+[\w ]+\b{fn}\(", header), f"{fn} is not a header function"
            assert re.search(rf"\b{fn}\(", code), f"{shader.name} no longer calls {fn}"


def test_shaders_define_no_maths_of_their_own():
    for path in [*SHADERS, KERNELS / "rj_metal.h"]:
        code = _code(path.read_text())
        defined = set(DEFINITION.findall(code))
        kernels = set(re.findall(r"kernel\s+void\s+(\w+)", code))
        assert defined - kernels <= OWN_HELPERS, f"{path.name} defines {sorted(defined - kernels - OWN_HELPERS)}"
        # Constants of the maths (1/√2, √(π/2)) and header-style names belong in the header alone.
        assert not re.search(r"0\.7071|1\.2533|\bfwht|hadamard|givens|quaternion|rotor_to", code, re.I), path.name


def test_definition_pattern_finds_a_local_maths_function():
    # Guards the drift test above against a regex that matches nothing.
    code = "inline void rj_my_fwht(thread float* v, int p) {\n  v[0] = v[1];\n}\n"
    assert DEFINITION.findall(code) == ["rj_my_fwht"]


# --- behaviour under emulation -------------------------------------------------------------------------

# (rotation, dim, bits, qjl, dtype): every kind, odd dims, 1..5 bits (5: the binary-search path), QJL,
# float16 and bfloat16; rotor-mix with one and two Hadamard windows, with and without an overlapping block.
CONFIGS = [
    ("hadamard", 5, 2, False, np.float32),
    ("hadamard", 127, 4, True, np.float16),
    ("rotor", 7, 3, False, np.float32),
    ("rotor", 80, 4, False, np.float16),
    ("rotor", 127, 2, False, ml_dtypes.bfloat16),
    ("planar", 7, 1, False, np.float32),
    ("planar", 127, 3, True, np.float32),
    ("iso", 5, 4, False, np.float32),
    ("iso", 80, 2, False, np.float32),
    ("rotor-mix", 5, 3, True, np.float32),
    ("rotor-mix", 8, 4, False, np.float16),  # one Hadamard window
    ("rotor-mix", 96, 4, False, np.float32),  # 3 | n: no overlapping rotor block
    ("rotor-mix", 127, 5, False, np.float32),
    ("haar", 80, 3, False, np.float32),
]
ROWS, QUERIES = 96, 5


def inputs(dim: int, dtype, seed: int) -> np.ndarray:
    """Random, one-hot (first, middle, last coordinate), outlier-channel, zero, large and non-finite rows."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((ROWS, dim)).astype(np.float32)
    for r, c in enumerate((0, dim // 2, dim - 1)):
        x[r] = 0.0
        x[r, c] = 1.0 + r
    x[3:40, rng.choice(dim, size=min(3, dim), replace=False)] *= 100.0  # outlier channels
    x[40] = 0.0
    x[41] *= 1e3
    x[42, dim // 3] = np.nan
    x[43, dim - 1] = np.inf
    return x.astype(dtype)


def ties(y: np.ndarray, boundaries: np.ndarray, tol: float) -> np.ndarray:
    """Where y lies within tol of a codebook boundary (an index either side is correct)."""
    return np.min(np.abs(y[..., None] - boundaries), axis=-1) <= tol


unpack = jax.jit(packing.unpack, static_argnums=(1, 2))


@jax.jit(static_argnames="debias")
def reference(tq, x, q, debias: bool):
    """The pure-JAX results the kernels must reproduce, in one compiled call per configuration: codes,
    decode, scores, the rotated unit vectors (to tell boundary ties) and the unpacked indices."""
    codes = tq.encode(x)
    xf = x.astype(jnp.float32)
    norm = jnp.linalg.norm(xf, axis=-1, keepdims=True)
    y = tq.rotation.apply(xf / jnp.where(norm > 0, norm, 1.0))
    rot = tq.rotation.apply(x)
    return (codes, tq.decode(codes), tq.scores(q, codes, debias=debias), y,
            unpack(codes.indices, tq.mse_bits, tq.padded_dim), rot, tq.rotation.inverse(rot))


def compare(emu: harness.Emulator, rotation: str, dim: int, bits: int, qjl: bool, dtype, seed: int = 0) -> list[str]:
    """Runs rotate, encode, decode and scores under emulation and with the pure-JAX reference; returns the
    mismatches found (empty when the kernels agree)."""
    tq = rotorjax.TurboQuant(dim, bits, rotation=rotation, qjl=qjl, key=jax.random.key(seed), backend="jax")
    kind, kdim, raw = _ffi.rotation_operands(tq.rotation)
    raw = np.asarray(raw)
    n, b = tq.padded_dim, tq.mse_bits
    bnd, cen = np.asarray(tq.boundaries), np.asarray(tq.centroids)
    smat = None if tq.qjl_matrix is None else np.asarray(tq.qjl_matrix)
    x = inputs(dim, dtype, seed)
    q = np.random.default_rng(seed + 1).standard_normal((QUERIES, dim)).astype(dtype)
    debias = not qjl  # scores debiased without QJL, so the divisor is exercised
    ref, want_decode, want_scores, y, want_idx, want_rot, want_back = reference(
        tq, jnp.asarray(x), jnp.asarray(q), debias=debias)
    y, want_idx = np.asarray(y, np.float64), np.asarray(want_idx)
    # haar is kind "none" for the kernels: XLA applies the dense rotation around them (rotorjax.quantizer).
    mat = np.asarray(tq.rotation.matrix) if rotation == "haar" else None

    def dense(v):
        if rotation != "haar":
            return v
        with np.errstate(invalid="ignore"):  # the NaN / inf rows
            return v.astype(np.float32) @ mat.T

    tol = max(1e-5, 2 * float(ml_dtypes.finfo(dtype).eps))  # float32: 1e-5; float16 / bfloat16 outputs: 2 ulp
    problems = []

    def close(name, got, want, rtol):
        """Non-finite where the reference is, and within rtol of the largest finite value elsewhere."""
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        finite = np.isfinite(want)
        if np.any(np.isfinite(got) != finite):
            problems.append(f"{name}: {int(np.sum(np.isfinite(got) != finite))} values finite on one side only")
            return
        got, want = got[finite], want[finite]
        scale = max(float(np.max(np.abs(want), initial=0.0)), 1e-30)
        err = float(np.max(np.abs(got - want) - rtol * np.abs(want), initial=0.0)) / scale
        if err > rtol:
            problems.append(f"{name}: max relative error {err:.3g} > {rtol}")

    # rotate and its inverse (haar's dense rotation is XLA's, never a kernel's)
    if rotation != "haar":
        got = emu.rotate(x, raw, kind=kind, dim=dim)
        close("rotate", got, want_rot, tol)
        got = emu.rotate(np.asarray(want_rot), raw, kind=kind, dim=dim, inverse=True)
        close("inverse rotate", got, want_back, tol)

    # encode (the codes of a vector with a non-finite entry are unspecified: it decodes to NaN)
    out = emu.encode(dense(x), raw, bnd, cen, smat, kind=kind, bits=b)
    finite_rows = np.all(np.isfinite(x.astype(np.float32)), axis=-1, keepdims=True)
    differ = (np.asarray(unpack(out[0], b, n)) != want_idx) & finite_rows
    off_boundary = differ & ~ties(y, bnd, 1e-5)
    if np.any(off_boundary):
        problems.append(f"codes: {int(np.sum(off_boundary))} indices differ away from a boundary")
    if np.sum(differ) > math.ceil(1e-4 * differ.size):
        problems.append(f"codes: {int(np.sum(differ))} of {differ.size} indices differ (boundary ties)")
    close("norms", out[1], ref.norms, 1e-5)
    if qjl:
        same_rows = ~np.any(differ, axis=-1)
        r = y - cen[want_idx]
        proj = r @ smat.astype(np.float64).T
        sketch_tie = np.abs(proj) <= 1e-5 * np.linalg.norm(smat, axis=-1) * np.linalg.norm(r, axis=-1, keepdims=True)
        flips = np.asarray(unpack(out[2], 1, n)) != np.asarray(unpack(ref.qjl_bits, 1, n))
        if np.any(flips & ~sketch_tie & same_rows[:, None]):
            problems.append("qjl bits differ away from a tie")
        close("residual norms", out[3][same_rows], np.asarray(ref.residual_norms)[same_rows], 1e-5)

    # decode, both from the reference's codes
    q_ops = (smat, np.asarray(ref.qjl_bits), np.asarray(ref.residual_norms)) if qjl else None
    got = emu.decode(ref.indices, ref.norms, raw, cen, q_ops, kind=kind, dim=kdim, bits=b, dtype=dtype)
    if rotation == "haar":
        with np.errstate(invalid="ignore"):  # the NaN / inf rows
            got = got.astype(np.float32) @ mat
    close("decode", got, want_decode, tol)

    # scores
    got = emu.scores(dense(q), ref.indices, ref.norms, raw, cen, q_ops, kind=kind, bits=b,
                     divisor=(1.0 - tq.codebook_mse) if debias else 1.0)
    close("scores", got, want_scores, 1e-5)
    return problems


@pytest.mark.parametrize("rotation,dim,bits,qjl,dtype", CONFIGS,
                         ids=[f"{r}-d{d}-b{b}{'-qjl' if q else ''}-{np.dtype(t).name}" for r, d, b, q, t in CONFIGS])
def test_kernels_match_the_reference_under_emulation(emu, rotation, dim, bits, qjl, dtype):
    assert compare(emu, rotation, dim, bits, qjl, dtype) == []


def valid(op: str) -> dict:
    """A valid call of ``op``: rotor-mix on 80 coordinates (3 stages of 27 rotors)."""
    return dict(kind=5, dim=80, bits=0 if op == "rotate" else 2, raw_count=3 * 27 * 4)


@pytest.mark.parametrize("op,change,match", [
    ("encode", dict(dim=1100, raw_count=3 * 367 * 4), "2 to 1024 coordinates"),
    ("encode", dict(kind=2, dim=1024, raw_count=342 * 4), "up to 1024 rotated"),  # rotor blocks pad to 1026
    ("encode", dict(raw_count=2 * 27 * 4), "takes 324 parameters"),
    ("decode", dict(bits=9), "bits must be in 1..8"),
    ("rotate", dict(bits=2), "no codebook"),
    ("encode", dict(rows=1 << 25), "32-bit indexing"),  # rows × 80 ≥ 2^31
    ("scores", dict(rows=1 << 16, queries=1 << 16), "32-bit indexing"),  # the score matrix
    ("scores", dict(divisor=0.0), "divisor must be positive"),
    ("encode", dict(queries=3), "another op"),
], ids=["dim", "width", "params", "bits", "rotate-bits", "rows", "scores", "divisor", "queries"])
def test_the_host_checks_refuse_bad_operands(emu, op, change, match):
    emu.check_args(op, **valid(op))
    with pytest.raises(ValueError, match=match):
        emu.check_args(op, **{**valid(op), **change})


def test_an_emulated_op_refuses_what_the_host_refuses(emu):
    x = np.ones((2, 1100), np.float32)
    with pytest.raises(ValueError, match="2 to 1024 coordinates"):
        emu.encode(x, np.zeros(4 * 367 * 3, np.float32), np.zeros(3), np.zeros(4), kind=5, bits=2)


# A wrong direction, sign or index in a shader must fail the comparison above.
MUTANTS = {
    "rotate-direction": ("rotate.metal", "rj_rotate(a.kind, v, n, 1, rot, a.inverse);",
                         "rj_rotate(a.kind, v, n, 1, rot, !a.inverse);"),
    "encode-direction": ("encode.metal", "rj_rotate(a.kind, v, n, 1, rot, 0);", "rj_rotate(a.kind, v, n, 1, rot, 1);"),
    "encode-missed-byte": ("encode.metal", "rj_metal_bytes_out(packed, nbytes, codes + row * nbytes);",
                           "rj_metal_bytes_out(packed, nbytes - 1, codes + row * nbytes);"),
    "decode-sign": ("decode.metal", "v[c] *= norm;", "v[c] *= -norm;"),
    "scores-index": ("scores.metal", "out[i * a.rows + key]", "out[key * a.queries + i]"),
    "block-matrix-sign": ("block_matrices.metal", "mats[int(g) * k * k + i] = m[i];",
                          "mats[int(g) * k * k + i] = -m[i];"),
}


@pytest.mark.parametrize("shader,old,new", MUTANTS.values(), ids=MUTANTS.keys())
def test_a_wrong_shader_fails_the_comparison(tmp_path, shader, old, new):
    kernels = tmp_path / "kernels"
    shutil.copytree(KERNELS, kernels)
    src = (kernels / shader).read_text()
    assert src.count(old) == 1, f"mutation site gone from {shader}"
    (kernels / shader).write_text(src.replace(old, new))
    mutant = harness.Emulator(harness.build(kernels))
    assert compare(mutant, "rotor-mix", 96, 4, False, np.float32) != []
