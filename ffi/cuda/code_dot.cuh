// Inner products of rotated queries with encoded vectors, straight from packed codes in shared memory
// (the generic paths of scores and attention_decode; the word-wise ones are in code_mma.cuh): 8 indices
// at a time, since 8 indices of `bits` bits are `bits` whole bytes.
#pragma once

#include "cuda_common.cuh"

namespace rotorjax {
namespace cuda {
// Internal linkage: each .cu is its own CUDA module with its own c_params, so nothing that touches
// them (SetRotation, the kernels' host stubs) may be merged across translation units by the linker.
namespace {

// s[r] += Σ_c q[r * qs + c] · centroids[idx_c] over the n coordinates of one packed row.
// q rows are zero-padded to ⌈n/8⌉·8 and the row's bytes to GroupedBytes(n, bits), so the last group
// needs no bounds. BITS > 0: compile-time bits.
template <int R, int BITS>
__device__ __forceinline__ void CodeDot(const unsigned char* row, int n, int bits_rt, const float* cen,
                                        const float* q, int qs, float (&s)[R]) {
  const int bits = BITS > 0 ? BITS : bits_rt;
  for (int j = 0; j < (n + 7) / 8; ++j) {
    int idx[8];
    float y[8];
    rj_unpack(row + j * bits, 8, 1, bits, idx);
    rj_dequantize(idx, 8, cen, y);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float4 a = *reinterpret_cast<const float4*>(q + r * qs + 8 * j);
      const float4 b = *reinterpret_cast<const float4*>(q + r * qs + 8 * j + 4);
      s[r] += a.x * y[0] + a.y * y[1] + a.z * y[2] + a.w * y[3] + b.x * y[4] + b.y * y[5] + b.z * y[6] + b.w * y[7];
    }
  }
}

// Byte stride of a generic code tile's rows: whole 8-index groups (CodeDot), an odd number of words.
__host__ __device__ inline int CodeTileStride(int n, int bits) { return ByteStride(GroupedBytes(n, bits)); }

// Padded float row length of rotated queries: a multiple of 8 (whole groups, 16-byte aligned rows).
__host__ __device__ inline int QueryStride(int n) { return (n + 7) / 8 * 8; }

// Zeroes bytes [from, to) of each of `rows` rows of a byte tile (the padding CodeDot reads).
__device__ inline void ZeroPad(unsigned char* tile, int rows, int stride, int from, int to) {
  const int w = to - from;
  for (int i = threadIdx.x; i < rows * w; i += blockDim.x) tile[(i / w) * stride + from + i % w] = 0;
}

// R, the query rows one block takes (1, 2, 4 or 8: the register accumulators are R wide): the
// smallest that holds all `rows`, else 8 with ⌈rows / 8⌉ chunks.
inline int RowsPerChunk(int rows) { return rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8; }

}  // namespace
}  // namespace cuda
}  // namespace rotorjax
