// Row tiles owned by one warp, for the fast encode / decode paths: 32 consecutive rows whose byte
// length is a whole number of 16-byte chunks. A warp stages its rows through its own slice of shared
// memory with coalesced 16-byte accesses, then each lane works on one row in registers. Warps never
// wait for one another, so the loads of some warps overlap the arithmetic of others (the block-wide
// staging of the generic kernels serialises load, compute and store in every block).
#pragma once

#include "cuda_common.cuh"

namespace rotorjax {
namespace cuda {
// Internal linkage: see cuda_common.cuh.
namespace {

constexpr int kWarpRows = 32;
constexpr int kFastWarps = 4;  // warps per block of the fast kernels

// Row stride of a slice in 16-byte chunks: odd, so lane l's chunk c lies in bank group (l + c) mod 8
// and the 8 lanes of each quarter-warp of a 16-byte access hit distinct banks.
__host__ __device__ constexpr int ChunkStride(int chunks) { return chunks | 1; }

// Copies `valid` rows of kChunks chunks each from src (16-byte aligned) into the slice, rows kStride
// chunks apart. All of a lane's loads are issued before its first shared store, so a warp has its
// whole tile in flight at once; streaming loads (.cs), since every byte is read once.
template <int kChunks, int kStride>
__device__ __forceinline__ void WarpLoadRows(const uint4* src, int valid, uint4* slice) {
  const int lane = threadIdx.x % 32;
  uint4 buf[kChunks];
#pragma unroll
  for (int j = 0; j < kChunks; ++j)
    if (j * 32 + lane < valid * kChunks) buf[j] = __ldcs(src + j * 32 + lane);
#pragma unroll
  for (int j = 0; j < kChunks; ++j) {
    const int e = j * 32 + lane;
    if (e < valid * kChunks) slice[e / kChunks * kStride + e % kChunks] = buf[j];
  }
  __syncwarp();
}

// The reverse: the first kChunks chunks of `valid` slice rows → dst (16-byte aligned), coalesced.
template <int kChunks, int kStride>
__device__ __forceinline__ void WarpStoreRows(const uint4* slice, int valid, uint4* dst) {
  const int lane = threadIdx.x % 32;
  __syncwarp();
#pragma unroll
  for (int j = 0; j < kChunks; ++j) {
    const int e = j * 32 + lane;
    if (e < valid * kChunks) __stcs(dst + e, slice[e / kChunks * kStride + e % kChunks]);
  }
}

// A staged row of N elements of dtype E → float32 registers, and back.
template <typename E, int N>
__device__ __forceinline__ void RowToFloats(const uint4* row, float (&v)[N]) {
  using S = typename E::S;
  constexpr int kPer = 16 / sizeof(S);
#pragma unroll
  for (int c = 0; c < N / kPer; ++c) {
    const uint4 w = row[c];
    S vals[kPer];
    memcpy(vals, &w, 16);
#pragma unroll
    for (int j = 0; j < kPer; ++j) v[c * kPer + j] = E::Load(vals[j]);
  }
}

template <typename E, int N>
__device__ __forceinline__ void FloatsToRow(const float (&v)[N], uint4* row) {
  using S = typename E::S;
  constexpr int kPer = 16 / sizeof(S);
#pragma unroll
  for (int c = 0; c < N / kPer; ++c) {
    S vals[kPer];
#pragma unroll
    for (int j = 0; j < kPer; ++j) vals[j] = E::Store(v[c * kPer + j]);
    uint4 w;
    memcpy(&w, vals, 16);
    row[c] = w;
  }
}

// Packed words (rj_word_put / rj_word_get) of a row ↔ its staged chunks.
template <int W>
__device__ __forceinline__ void WordsToRow(const unsigned int (&w)[W], uint4* row) {
  static_assert(W % 4 == 0, "code rows must be whole 16-byte chunks");
#pragma unroll
  for (int c = 0; c < W / 4; ++c) row[c] = make_uint4(w[4 * c], w[4 * c + 1], w[4 * c + 2], w[4 * c + 3]);
}

template <int W>
__device__ __forceinline__ void RowToWords(const uint4* row, unsigned int (&w)[W]) {
  static_assert(W % 4 == 0, "code rows must be whole 16-byte chunks");
#pragma unroll
  for (int c = 0; c < W / 4; ++c) {
    const uint4 x = row[c];
    w[4 * c] = x.x, w[4 * c + 1] = x.y, w[4 * c + 2] = x.z, w[4 * c + 3] = x.w;
  }
}

// Whether the fast kernels may take these buffers: every row a whole number of 16-byte chunks and
// every pointer 16-byte aligned (XLA's buffers are; a sub-buffer need not be).
inline bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// Grid and shared memory of a fast kernel over `rows` rows whose widest staged form is `chunks`.
inline dim3 FastGrid(long long rows) {
  return dim3(unsigned((rows + kFastWarps * kWarpRows - 1) / (kFastWarps * kWarpRows)));
}
inline size_t FastSmem(int chunks) { return size_t(kFastWarps) * kWarpRows * ChunkStride(chunks) * 16; }

}  // namespace
}  // namespace cuda
}  // namespace rotorjax
