// How a rotorjax op becomes Metal dispatches, shared by the Objective-C++ host (host/) and the CPU
// emulation harness (emulation/), so the harness tests the same argument checks and grid sizes the
// GPU gets. Plain C++; the maths it needs comes from rotorjax/kernel_math.h.
#pragma once

#include <string>

#include "rotorjax/kernel_math.h"
#include "rotorjax_metal/args.h"

namespace rotorjax_metal {

// Kernel entry points in the metallib (kernels/*.metal).
inline constexpr const char* kBlockMatricesKernel = "rotorjax_block_matrices";
inline constexpr const char* kRotateKernel = "rotorjax_rotate";
inline constexpr const char* kEncodeKernel = "rotorjax_encode";
inline constexpr const char* kDecodeKernel = "rotorjax_decode";
inline constexpr const char* kRotateQueriesKernel = "rotorjax_rotate_queries";
inline constexpr const char* kScoresKernel = "rotorjax_scores";

// Threads per threadgroup of every dispatch (one thread per vector; grids are rounded up to whole
// threadgroups and the kernels return early past the end).
inline constexpr int kThreadsPerGroup = 64;

// Threadgroups covering `threads` threads.
inline int Groups(int threads) { return (threads + kThreadsPerGroup - 1) / kThreadsPerGroup; }

// The ops (the FFI targets): which arguments an op takes is checked by MakeArgs.
enum Op { kRotate = 0, kEncode = 1, kDecode = 2, kScores = 3 };

// Checks an op's sizes and fills its argument block; returns "" or what is wrong. `raw_params` is the
// number of raw rotation parameters passed (rotorjax._ffi.rotation_operands). Rotate takes no
// codebook (bits = 0) and no QJL (m = 0); only scores takes queries and a divisor other than 1; only
// rotate takes `inverse`.
inline std::string MakeArgs(Op op, int kind, int dim, int bits, int m, long long rows, long long queries, int dtype,
                            float divisor, long long raw_params, int inverse, rj_metal_args* a) {
  if (op < kRotate || op > kScores) return "unknown op " + std::to_string(int(op));
  if (kind < RJ_KIND_NONE || kind > RJ_KIND_ROTOR_MIX) return "unknown rotation kind " + std::to_string(kind);
  // dim first: every size below is at least dim, and rj_padded_dim must not overflow.
  if (dim < 2 || dim > RJ_METAL_MAX_N)
    return "the Metal kernels handle 2 to " + std::to_string(RJ_METAL_MAX_N) + " coordinates, got " +
           std::to_string(dim);
  if (op == kRotate ? bits != 0 || m != 0 : bits < 1 || bits > 8)
    return op == kRotate ? "rotate takes no codebook and no QJL" : "bits must be in 1..8, got " + std::to_string(bits);
  if ((op != kScores && (queries != 0 || divisor != 1.0f)) || (op != kRotate && inverse))
    return "arguments of another op were passed";
  if (dtype != RJ_METAL_F32 && dtype != RJ_METAL_F16 && dtype != RJ_METAL_BF16)
    return "the Metal kernels take float32, float16 or bfloat16 vectors";
  const int n = rj_padded_dim(kind, dim);
  if (n > RJ_METAL_MAX_N || m > RJ_METAL_MAX_N)
    return "the Metal kernels handle up to " + std::to_string(RJ_METAL_MAX_N) + " rotated coordinates, got " +
           std::to_string(n > m ? n : m);
  if (m < 0) return "QJL rows must be >= 0";
  // The kernels index elements with 32-bit ints: every array must have fewer than 2^31 of them.
  const long long width = n > dim ? n : dim, limit = 0x7fffffffLL;
  if (rows < 0 || queries < 0 || rows * width > limit || queries * width > limit || rows * queries > limit)
    return "too many elements for the kernels' 32-bit indexing; split the batch";
  if (!(divisor > 0.0f)) return "divisor must be positive";
  if (raw_params != rj_raw_param_count(kind, dim))
    return "rotation kind " + std::to_string(kind) + " on dim " + std::to_string(dim) + " takes " +
           std::to_string(rj_raw_param_count(kind, dim)) + " parameters, got " + std::to_string(raw_params);
  a->kind = kind;
  a->dim = dim;
  a->n = n;
  a->bits = bits;
  a->m = m;
  a->rows = int(rows);
  a->queries = int(queries);
  a->inverse = inverse ? 1 : 0;
  a->dtype = dtype;
  a->blocks = kind == RJ_KIND_HADAMARD ? 0 : rj_num_blocks(kind, dim);
  a->divisor = divisor;
  return "";
}

// Floats of the rotation buffer the op kernels read: the raw signs for hadamard (used as passed),
// k×k per block matrix for the block kinds (built by kBlockMatricesKernel), none for RJ_KIND_NONE.
inline int RotationFloats(const rj_metal_args& a) {
  if (a.kind == RJ_KIND_HADAMARD) return a.n;
  const int k = rj_block_size(a.kind);
  return a.blocks * k * k;
}

}  // namespace rotorjax_metal
