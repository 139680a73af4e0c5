// A warp rotates one vector held in shared memory, its lanes sharing out each step's independent
// pieces (blocks of a stage, butterflies of a Walsh–Hadamard stage) between __syncwarp()s. The block
// matrices come straight from the raw parameters, so the few vectors a scores or attention_decode call
// rotates (its queries, attention's outputs) need no prepared constant buffer, and no thread runs a
// whole rotation's ~4,000 dependent instructions (128 queries: 7–8 µs on the H200, against 15 µs a
// thread per query, plus the preparation kernel and copy it no longer needs). The maths is the header's
// (rj_block_matrices, rj_block_apply, rj_butterfly_index, the rotor-mix order of rj_rotor_mix); only the
// sharing out is here. Shared-memory reads and writes of one step touch distinct coordinates.
#pragma once

#include "cuda_common.cuh"

namespace rotorjax {
namespace cuda {
// Internal linkage: see cuda_common.cuh.
namespace {

// Blocks [first, last) of a block stage (block g of kind at start(g), raw parameters raw + g·pp).
template <typename Start>
__device__ __forceinline__ void WarpBlocks(int kind, float* v, const float* raw, int first, int last, bool inverse,
                                           Start start) {
  const int k = rj_block_size(kind), pp = rj_params_per_block(kind);
  for (int g = first + threadIdx.x % 32; g < last; g += 32) {
    float m[16];
    rj_block_matrices(kind, raw + g * pp, 1, m);
    rj_block_apply(v + start(g), 1, m, k, inverse);
  }
  __syncwarp();
}

// One rotor-mix stage (rj_rotor_stage): blocks 0 … B−2 are disjoint; block B−1 may overlap B−2 (when
// 3 ∤ n), so it runs after them (forward) or before them (inverse).
__device__ __forceinline__ void WarpRotorStage(float* v, int n, const float* raw, bool inverse) {
  const int blocks = rj_rotor_stage_blocks(n);
  const auto start = [n](int g) { return rj_rotor_stage_block_start(g, n); };
  if (inverse) WarpBlocks(RJ_KIND_ROTOR_MIX, v, raw, blocks - 1, blocks, true, start);
  WarpBlocks(RJ_KIND_ROTOR_MIX, v, raw, 0, blocks - 1, inverse, start);
  if (!inverse) WarpBlocks(RJ_KIND_ROTOR_MIX, v, raw, blocks - 1, blocks, false, start);
}

// rj_fwht_scaled on p coordinates at v.
__device__ __forceinline__ void WarpFwht(float* v, int p, float scale) {
  const int lane = threadIdx.x % 32;
  for (int h = 1; h < p; h <<= 1) {
    for (int q = lane; q < p / 2; q += 32) {
      const int j = rj_butterfly_index(q, h);
      const float x = v[j], y = v[j + h];
      v[j] = x + y;
      v[j + h] = x - y;
    }
    __syncwarp();
  }
  const float s = rj_inv_sqrt_pow2(p) * scale;
  for (int i = lane; i < p; i += 32) v[i] *= s;
  __syncwarp();
}

// v ⊙ w (w null: v · scale).
__device__ __forceinline__ void WarpScale(float* v, int n, const float* w, float scale = 1.0f) {
  for (int i = threadIdx.x % 32; i < n; i += 32) v[i] *= w ? w[i] : scale;
  __syncwarp();
}

// rj_rotate_scaled(kind, v, n, …, inverse, scale) by the calling warp on the n floats at v (shared
// memory, written by the whole warp before the call), from the kind's raw parameters.
__device__ void WarpRotate(int kind, float* v, int n, const float* raw, bool inverse, float scale) {
  if (kind == RJ_KIND_HADAMARD) {  // rj_hadamard_rotation: raw holds the signs
    if (!inverse) WarpScale(v, n, raw);
    WarpFwht(v, n, scale);
    if (inverse) WarpScale(v, n, raw);
  } else if (kind == RJ_KIND_ROTOR_MIX) {
    const int windows = rj_rotor_mix_windows(n), p = rj_largest_pow2(n), stage = 4 * rj_rotor_stage_blocks(n);
    const float fold = windows == 1 ? scale : 1.0f;
    if (!inverse) {
      WarpRotorStage(v, n, raw, false);
      for (int s = 0; s < windows; ++s) {
        WarpFwht(v + rj_rotor_mix_window_start(s, n), p, fold);
        WarpRotorStage(v, n, raw + (s + 1) * stage, false);
      }
    } else {
      for (int s = windows - 1; s >= 0; --s) {
        WarpRotorStage(v, n, raw + (s + 1) * stage, true);
        WarpFwht(v + rj_rotor_mix_window_start(s, n), p, fold);
      }
      WarpRotorStage(v, n, raw, true);
    }
    if (windows > 1) WarpScale(v, n, nullptr, scale);
  } else {
    if (kind != RJ_KIND_NONE) {
      const int k = rj_block_size(kind);
      WarpBlocks(kind, v, raw, 0, n / k, inverse, [k](int g) { return g * k; });
    }
    WarpScale(v, n, nullptr, scale);
  }
}

// A warp per row: y = Π [x; 0] · scale (in_w = dim → out_w ≥ n, zeros past n) or, with `inverse`,
// (Πᵀ x)[:out_w] · scale (in_w = n → out_w = dim), from raw parameters; kRotateWarps rows per block.
constexpr int kRotateWarps = 4;

struct WarpRotateArgs {
  RotateArgs io;
  bool inverse;
  const float* raw;  // the rotation's raw parameters (rj_raw_param_count floats)
};

__global__ void __launch_bounds__(kRotateWarps * 32) WarpRotateKernel(WarpRotateArgs w) {
  extern __shared__ __align__(16) float vecs[];  // kRotateWarps × n
  const RotateArgs& a = w.io;
  LaunchDependents();  // the main kernel after it (LaunchAfter) stages its first tiles meanwhile
  const int lane = threadIdx.x % 32;
  const long long row = (long long)blockIdx.x * kRotateWarps + threadIdx.x / 32;
  if (row >= a.rows) return;
  float* v = vecs + threadIdx.x / 32 * a.n;
  WithDtype(a.in_dtype, [&](auto e) {
    using E = decltype(e);
    const typename E::S* x = static_cast<const typename E::S*>(a.x) + row * a.in_w;
    for (int c = lane; c < a.n; c += 32) v[c] = c < a.in_w ? E::Load(x[c]) : 0.0f;
  });
  __syncwarp();
  WarpRotate(a.kind, v, a.n, w.raw, w.inverse, a.scale);
  WithDtype(a.out_dtype, [&](auto e) {
    using E = decltype(e);
    typename E::S* y = static_cast<typename E::S*>(a.y) + row * a.out_w;
    for (int c = lane; c < a.out_w; c += 32) y[c] = E::Store(c < a.n ? v[c] : 0.0f);
  });
}

inline ffi::Error LaunchWarpRotate(cudaStream_t stream, const WarpRotateArgs& w, const char* what) {
  const dim3 grid(unsigned((w.io.rows + kRotateWarps - 1) / kRotateWarps));
  return Launch(WarpRotateKernel, grid, kRotateWarps * 32, size_t(kRotateWarps) * w.io.n * sizeof(float), stream, w,
                what);
}

}  // namespace
}  // namespace cuda
}  // namespace rotorjax
