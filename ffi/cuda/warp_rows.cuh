// Rows staged by one warp, for the fast encode / decode paths (split_rows.cuh): a warp copies up to
// 32 rows (or a slice of each: whole 16-byte chunks) into its own slice of shared memory with cp.async
// in coalesced 16-byte chunks, at an odd-chunk row stride so that a lane's 16-byte accesses of its own
// row are conflict-free, and converts a staged row to and from float32 registers.
#pragma once

#include <utility>

#include "cuda_common.cuh"

namespace rotorjax {
namespace cuda {
// Internal linkage: see cuda_common.cuh.
namespace {

constexpr int kWarpRows = 32;
constexpr int kFastWarps = 4;  // warps per block of the fast kernels

// Starts copying `valid` rows of kChunks chunks each from src (16-byte aligned) into the slice, rows
// kStride chunks apart; WarpWaitRows completes the copy for the whole warp. Chunk e = 32 j + lane is
// chunk e % kChunks of row e / kChunks. When kChunks divides 32 that is row j·32/kChunks + lane/kChunks,
// so each copy is one shared and one global base per lane plus immediate offsets (CopyAsync16 with
// the offsets added to its operands in registers instead).
template <int kSharedOffset, int kGlobalOffset>
__device__ __forceinline__ void CopyChunkAsync(unsigned shared, const uint4* global) {
  asm volatile("cp.async.cg.shared.global [%0+%2], [%1+%3], 16;\n" ::"r"(shared), "l"(global), "n"(kSharedOffset),
               "n"(kGlobalOffset)
               : "memory");
}

template <int kChunks, int kStride, int kSrcStride, int... J>
__device__ __forceinline__ void CopyChunksAsync(unsigned shared, const uint4* global, int lane, int limit,
                                                std::integer_sequence<int, J...>) {
  ((J * 32 + lane < limit
        ? CopyChunkAsync<16 * J * (32 / kChunks) * kStride, 16 * J * (32 / kChunks) * kSrcStride>(shared, global)
        : void()),
   ...);
}

// The first kChunks chunks of `valid` source rows kSrcStride chunks apart (whole rows by default).
template <int kChunks, int kStride, int kSrcStride = kChunks>
__device__ __forceinline__ void WarpCopyRowsAsync(const uint4* src, int valid, uint4* slice) {
  const int lane = threadIdx.x % 32;
  if constexpr (32 % kChunks == 0) {
    CopyChunksAsync<kChunks, kStride, kSrcStride>(
        unsigned(__cvta_generic_to_shared(slice + lane / kChunks * kStride + lane % kChunks)),
        src + lane / kChunks * kSrcStride + lane % kChunks, lane, valid * kChunks, std::make_integer_sequence<int, kChunks>());
  } else {
#pragma unroll
    for (int j = 0; j < kChunks; ++j) {
      const int e = j * 32 + lane;
      if (e < valid * kChunks) CopyAsync16(slice + e / kChunks * kStride + e % kChunks, src + e / kChunks * kSrcStride + e % kChunks);
    }
  }
  CommitCopies();
}

__device__ __forceinline__ void WarpWaitRows() {
  WaitCopies();
  __syncwarp();
}

// A staged row of N elements of dtype E ↔ float32 registers.
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

// Whether the fast kernels may take these buffers: every pointer 16-byte aligned (XLA's buffers are; a
// sub-buffer need not be).
inline bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace
}  // namespace cuda
}  // namespace rotorjax
