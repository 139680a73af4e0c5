// CPU emulation of the rotorjax Metal kernels: the .metal sources compiled as C++ against the
// metal_stdlib shim, each dispatch run over its whole grid (every thread of every threadgroup, as
// rotorjax_metal::Groups rounds it, in reverse order: kernels must not depend on thread order), with
// the same argument checks and dispatch sequence as the Objective-C++ host (rotorjax_metal/plan.h).
// The C ABI is emulate.h.
#include "emulate.h"

#include <string>
#include <vector>

#include "rotorjax_metal/plan.h"

// The kernels themselves. The shim's address-space macros stay defined after this point, so nothing
// below may use `device`, `constant`, `thread`, `threadgroup` or `kernel` as names.
#include "block_matrices.metal"
#include "decode.metal"
#include "encode.metal"
#include "rotate.metal"
#include "scores.metal"

namespace {

using rotorjax_metal::Groups;
using rotorjax_metal::kThreadsPerGroup;

template <typename Fn>
void Grid(int threads, Fn&& fn) {
  for (int g = Groups(threads) * kThreadsPerGroup - 1; g >= 0; --g) fn(uint(g));
}

thread_local std::string g_error;

const char* Fail(const std::string& msg) {
  g_error = msg;
  return g_error.c_str();
}

// The rotation buffer the op kernels read (see rotorjax_metal::RotationFloats).
std::vector<float> Rotation(rj_metal_args& a, const float* raw) {
  std::vector<float> rot(size_t(rotorjax_metal::RotationFloats(a)) + 1);  // + 1: never empty
  if (a.kind == RJ_KIND_HADAMARD) {
    for (int i = 0; i < a.n; ++i) rot[i] = raw[i];
  } else {
    Grid(a.blocks, [&](uint g) { rotorjax_block_matrices(const_cast<float*>(raw), rot.data(), a, g); });
  }
  return rot;
}

}  // namespace

extern "C" {

// rj_padded_dim of the header, so callers size their outputs by the kernels' own rule.
int rj_emu_padded_dim(int kind, int dim) { return rj_padded_dim(kind, dim); }

const char* rj_emu_check_args(int op, int kind, int dim, int bits, int m, long long rows, long long queries, int dtype,
                              float divisor, long long raw_count, int inverse) {
  rj_metal_args a;
  const std::string err = rotorjax_metal::MakeArgs(rotorjax_metal::Op(op), kind, dim, bits, m, rows, queries, dtype,
                                                   divisor, raw_count, inverse, &a);
  return err.empty() ? nullptr : Fail(err);
}

const char* rj_emu_rotate(int kind, int dim, int rows, int dtype, int inverse, const void* x, const float* raw,
                          long long raw_count, void* out) {
  rj_metal_args a;
  const std::string err = rotorjax_metal::MakeArgs(rotorjax_metal::kRotate, kind, dim, 0, 0, rows, 0, dtype, 1.0f,
                                                   raw_count, inverse, &a);
  if (!err.empty()) return Fail(err);
  std::vector<float> rot = Rotation(a, raw);
  Grid(a.rows, [&](uint gid) {
    rotorjax_rotate(static_cast<const uchar*>(x), rot.data(), static_cast<uchar*>(out), a, gid);
  });
  return nullptr;
}

const char* rj_emu_encode(int kind, int dim, int bits, int m, int rows, int dtype, const void* x, const float* raw,
                          long long raw_count, const float* boundaries, const float* centroids, const float* qjl,
                          unsigned char* codes, float* norms, unsigned char* qjl_bits, float* qjl_norms) {
  rj_metal_args a;
  const std::string err = rotorjax_metal::MakeArgs(rotorjax_metal::kEncode, kind, dim, bits, m, rows, 0, dtype, 1.0f,
                                                   raw_count, 0, &a);
  if (!err.empty()) return Fail(err);
  std::vector<float> rot = Rotation(a, raw);
  Grid(a.rows, [&](uint gid) {
    rotorjax_encode(static_cast<const uchar*>(x), rot.data(), const_cast<float*>(boundaries),
                    const_cast<float*>(centroids), const_cast<float*>(qjl), codes, norms, qjl_bits, qjl_norms, a, gid);
  });
  return nullptr;
}

const char* rj_emu_decode(int kind, int dim, int bits, int m, int rows, int dtype, const unsigned char* codes,
                          const float* norms, const float* raw, long long raw_count, const float* centroids,
                          const float* qjl, const unsigned char* qjl_bits, const float* qjl_norms, void* out) {
  rj_metal_args a;
  const std::string err = rotorjax_metal::MakeArgs(rotorjax_metal::kDecode, kind, dim, bits, m, rows, 0, dtype, 1.0f,
                                                   raw_count, 0, &a);
  if (!err.empty()) return Fail(err);
  std::vector<float> rot = Rotation(a, raw);
  Grid(a.rows, [&](uint gid) {
    rotorjax_decode(codes, norms, rot.data(), const_cast<float*>(centroids), const_cast<float*>(qjl), qjl_bits,
                    qjl_norms, static_cast<uchar*>(out), a, gid);
  });
  return nullptr;
}

const char* rj_emu_scores(int kind, int dim, int bits, int m, int queries, int rows, int dtype, float divisor,
                          const void* q, const unsigned char* codes, const float* norms, const float* raw,
                          long long raw_count, const float* centroids, const float* qjl,
                          const unsigned char* qjl_bits, const float* qjl_norms, float* out) {
  rj_metal_args a;
  const std::string err = rotorjax_metal::MakeArgs(rotorjax_metal::kScores, kind, dim, bits, m, rows, queries, dtype,
                                                   divisor, raw_count, 0, &a);
  if (!err.empty()) return Fail(err);
  std::vector<float> rot = Rotation(a, raw);
  std::vector<float> q_rot(size_t(a.queries) * a.n + 1), q_proj(size_t(a.queries) * a.m + 1);
  Grid(a.queries, [&](uint gid) {
    rotorjax_rotate_queries(static_cast<const uchar*>(q), rot.data(), const_cast<float*>(qjl), q_rot.data(),
                            q_proj.data(), a, gid);
  });
  Grid(a.rows, [&](uint gid) {
    rotorjax_scores(q_rot.data(), q_proj.data(), codes, norms, const_cast<float*>(centroids), qjl_bits, qjl_norms,
                    out, a, gid);
  });
  return nullptr;
}

}  // extern "C"
