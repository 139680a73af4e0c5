// Row tiles owned by one warp, for the fast encode / decode paths: 32 consecutive rows whose byte
// length is a whole number of 16-byte chunks. A warp copies its tile into its own slice of shared
// memory (cp.async, coalesced 16-byte chunks), each lane works on one row in registers and writes its
// result over its own staged row, and the warp stores the rows coalesced. Warps never wait for one
// another, so the loads of some warps overlap the arithmetic of others.
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

template <int kChunks, int kStride, int... J>
__device__ __forceinline__ void CopyChunksAsync(unsigned shared, const uint4* global, int lane, int limit,
                                                std::integer_sequence<int, J...>) {
  ((J * 32 + lane < limit ? CopyChunkAsync<16 * J * (32 / kChunks) * kStride, 16 * 32 * J>(shared, global) : void()), ...);
}

template <int kChunks, int kStride>
__device__ __forceinline__ void WarpCopyRowsAsync(const uint4* src, int valid, uint4* slice) {
  const int lane = threadIdx.x % 32;
  if constexpr (32 % kChunks == 0) {
    CopyChunksAsync<kChunks, kStride>(unsigned(__cvta_generic_to_shared(slice + lane / kChunks * kStride + lane % kChunks)),
                                      src + lane, lane, valid * kChunks, std::make_integer_sequence<int, kChunks>());
  } else {
#pragma unroll
    for (int j = 0; j < kChunks; ++j) {
      const int e = j * 32 + lane;
      if (e < valid * kChunks) CopyAsync16(slice + e / kChunks * kStride + e % kChunks, src + e);
    }
  }
  CommitCopies();
}

__device__ __forceinline__ void WarpWaitRows() {
  WaitCopies();
  __syncwarp();
}

// The first kChunks chunks of `valid` slice rows → dst (16-byte aligned), coalesced: lanes write
// their results into their own staged rows first (a lane writing its own row straight to global memory
// spreads each store instruction over 32 rows; decode ran 1.8× slower that way).
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

// The tile of the calling warp (32 rows of kChunks chunks each from src, one tile per warp of the
// grid): starts copying its rows into the warp's slice (rows kStride chunks apart), runs the block-wide
// prologue() on every thread while the copy is in flight, then every lane of a warp with rows calls
// fn(tile, valid rows). (A persistent loop, a warp copying its next tile while computing this one, made
// ptxas spill 450–500 bytes per lane at the 168 registers of 3 blocks per SM, wherever the copy was
// issued; the loop alone did.)
template <int kChunks, int kStride = ChunkStride(kChunks), typename Prologue, typename Fn>
__device__ __forceinline__ void WithWarpTile(const uint4* src, long long rows, uint4* slice, Prologue&& prologue,
                                             Fn&& fn) {
  const long long t = (long long)blockIdx.x * kFastWarps + threadIdx.x / 32;
  const int valid = t * kWarpRows < rows ? int(min((long long)kWarpRows, rows - t * kWarpRows)) : 0;
  if (valid) WarpCopyRowsAsync<kChunks, kStride>(src + t * kWarpRows * kChunks, valid, slice);
  prologue();
  if (!valid) return;
  WarpWaitRows();
  fn(t, valid);
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

// Packed words (rj_word_put; IndexAddresses reads them) ↔ a staged row of 16-byte chunks.
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

// The fast kernels' rotation, rotor-mix on N = 2^j coordinates, forward (encode) or INVERSE (decode),
// with the rotor stage it applies first read from a copy in shared memory and the other from c_params.
// The two stages' matrices are 3 KB. With both in constant memory encode ran 12–21 % and decode 9–19 %
// slower on the H200; with the stage applied second shared instead, 1–10 % slower (float32 decode 2×:
// it spills). docs/cuda_notes.md, session 6.
template <int KIND, int N, bool INVERSE>
struct FastRotation {
  static_assert(KIND == RJ_KIND_ROTOR_MIX && (N & (N - 1)) == 0, "the fast kernels take rotor-mix on 2^j coordinates");
  static constexpr int kStage = 9 * ((N + 2) / 3);  // floats of one stage's ⌈N/3⌉ 3×3 matrices
  static constexpr int kPadded = 12;                // a block's stride in the shared copy: 16-byte loads
  static constexpr int kShared = kStage / 9 * kPadded;  // floats of the shared copy
  static constexpr int kFirst = INVERSE ? 1 : 0;    // the stage applied first
  // The block's copy of the first stage, kPadded floats per block, 16-byte aligned (a barrier must
  // follow before Apply). Packed 9 apart, the copy was read by one 4-byte load per float.
  __device__ static void Copy(float* mats) {
    for (int i = threadIdx.x; i < kStage; i += blockDim.x) mats[i / 9 * kPadded + i % 9] = c_params[kFirst * kStage + i];
  }
  // The rotation, the shared stage's blocks kPadded floats apart (two 16-byte loads and one 4-byte load
  // each), the other's packed in c_params.
  __device__ static void Apply(float (&v)[N], const float* mats, float scale) {
    if (INVERSE) rj_rotor_mix_pow2(v, N, 1, c_params, 9, mats, kPadded, true, scale);
    else rj_rotor_mix_pow2(v, N, 1, mats, kPadded, c_params + kStage, 9, false, scale);
  }
};

// Whether the fast kernels may take these buffers: every pointer 16-byte aligned (XLA's buffers are; a
// sub-buffer need not be).
inline bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

inline size_t FastSmem(int chunks) { return size_t(kFastWarps) * kWarpRows * ChunkStride(chunks) * 16; }

// Launches a fast kernel: a warp per 32-row tile.
template <typename Kernel, typename Args>
ffi::Error LaunchFast(Kernel kernel, long long rows, int chunks, cudaStream_t stream, const Args& args, const char* what) {
  const long long blocks = (rows + kFastWarps * kWarpRows - 1) / (kFastWarps * kWarpRows);
  return Launch(kernel, dim3(unsigned(blocks)), kFastWarps * kWarpRows, FastSmem(chunks), stream, args, what);
}

}  // namespace
}  // namespace cuda
}  // namespace rotorjax
