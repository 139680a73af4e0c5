// The rotation kernel of the rotate handler: one thread per vector, the rotation prepared in c_params
// (scores and attention_decode rotate their few queries a warp per vector instead: warp_rotate.cuh).
#pragma once

#include "cuda_common.cuh"

namespace rotorjax {
namespace cuda {
// Internal linkage: each .cu is its own CUDA module with its own c_params, so nothing that touches
// them (SetRotation, the kernels' host stubs) may be merged across translation units by the linker.
namespace {

// y = Π [x; 0] (in_w = dim → out_w = n) or, with INV, (Πᵀ x)[:dim] (n → dim), computed in float32.
template <int KIND, int N, bool INV>
__global__ void __launch_bounds__(128) RotateKernel(RotateArgs a) {
  constexpr int kCap = N > 0 ? N : kMaxN;
  const int kind = KIND >= 0 ? KIND : a.kind, n = N > 0 ? N : a.n;
  const int in_w = N > 0 ? N : a.in_w, out_w = N > 0 ? N : a.out_w;
  const int ts = FloatStride(in_w > out_w ? in_w : out_w);
  extern __shared__ __align__(16) float tile[];
  const long long row0 = (long long)blockIdx.x * blockDim.x;
  const int valid = int(min((long long)blockDim.x, a.rows - row0));
  WithDtype(a.in_dtype, [&](auto e) {
    using E = decltype(e);
    StageIn<E>(static_cast<const typename E::S*>(a.x) + row0 * in_w, (long long)valid * in_w, in_w, tile, ts);
  });
  __syncthreads();
  const int t = threadIdx.x;
  if (t < valid) {  // each thread reads and writes only its own row of the tile
    float v[kCap];
#pragma unroll
    for (int c = 0; c < n; ++c) v[c] = c < in_w ? tile[t * ts + c] : 0.0f;
    rj_rotate(kind, v, n, 1, c_params, INV);
#pragma unroll
    for (int c = 0; c < out_w; ++c) tile[t * ts + c] = (c < n ? v[c] : 0.0f) * a.scale;  // zero padding past n
  }
  __syncthreads();
  WithDtype(a.out_dtype, [&](auto e) {
    using E = decltype(e);
    StageOut<E>(tile, ts, (long long)valid * out_w, out_w, static_cast<typename E::S*>(a.y) + row0 * out_w);
  });
}

template <int KIND, int N, bool INV>
ffi::Error LaunchRotateAs(cudaStream_t stream, const RotateArgs& a) {
  const int width = a.in_w > a.out_w ? a.in_w : a.out_w, threads = RowsPerBlock(width);
  const size_t smem = size_t(threads) * FloatStride(width) * sizeof(float);
  const dim3 grid(unsigned((a.rows + threads - 1) / threads));
  return Launch(RotateKernel<KIND, N, INV>, grid, threads, smem, stream, a, "rotate");
}

// The rotation must already be in c_params (SetRotation).
template <bool INV>
ffi::Error LaunchRotate(cudaStream_t stream, const RotationShape& rot, const RotateArgs& a) {
  if (rot.kind == RJ_KIND_ROTOR_MIX && rot.n == 128 && rot.dim == 128)
    return LaunchRotateAs<RJ_KIND_ROTOR_MIX, 128, INV>(stream, a);
  return LaunchRotateAs<-1, 0, INV>(stream, a);
}

}  // namespace
}  // namespace cuda
}  // namespace rotorjax
