// Word-wise decoding of packed rows for the fast shapes (rotated width 128, bits 2/3/4 at compile
// time), shared by scores and attention_decode. Read as little-endian 32-bit words, a row of 128
// indices is 4·BITS words and index i is stream bits [i·BITS, i·BITS + BITS): every shift and mask
// below is a compile-time constant once the loops unroll, so an index costs one shift (a funnel
// shift where it straddles two words) and one LOP3, which masks it, scales it to a byte offset and
// ORs in the 64-byte aligned table address; then one LDS. Centroid tables of ≤ 16 floats sit in
// distinct shared-memory banks, so the per-thread lookups never conflict.
#pragma once

#include "cuda_common.cuh"

namespace rotorjax {
namespace cuda {
// Internal linkage: each .cu is its own CUDA module with its own c_params, so nothing that touches
// them (SetRotation, the kernels' host stubs) may be merged across translation units by the linker.
namespace {

constexpr int kWordN = 128;  // the rotated width the word-wise kernels take

// Whether packed rows of n indices of `bits` bits run through the word-wise path.
__host__ __device__ inline bool WordShape(int n, int bits) { return n == kWordN && bits >= 2 && bits <= 4; }

template <int BITS>
struct WordRow {
  static constexpr int kWords = kWordN * BITS / 32;  // 16, 12 or 8: whole 16-byte chunks
  static constexpr int kChunks = kWords / 4;
  static constexpr int kStride = 16 * ChunkStride(kChunks);  // tile row stride in bytes
};

// Byte tile row stride of the word-wise (WORDS) or the generic byte-wise layout.
__host__ __device__ inline int CodeTileStride(bool words, int n, int bits) {
  return words ? 16 * ChunkStride(n * bits / 128) : ByteStride(GroupedBytes(n, bits));
}

// 4 · (index i) of a row held as words w; i must be a compile-time constant after unrolling.
template <int BITS>
__host__ __device__ __forceinline__ unsigned IndexOffset(const unsigned* w, int i) {
  constexpr unsigned kMask = ((1u << BITS) - 1u) << 2;
  const int t = i * BITS, k = t >> 5, s = t & 31;
  if (s < 2) return (w[k] << (2 - s)) & kMask;
  if (s + BITS <= 32) return (w[k] >> (s - 2)) & kMask;
  return unsigned(((static_cast<unsigned long long>(w[k + 1]) << 32) | w[k]) >> (s - 2)) & kMask;
}

// A table of ≤ 16 centroids in shared memory at a 64-byte aligned address, so that the address of
// entry idx is base | 4·idx (no add: without it the compiler adds a non-uniform base per lookup).
struct CentroidTable {
  unsigned base;  // shared-space address
  // The table's place inside a region of ≥ 32 floats at p: p rounded up to 64 bytes.
  __device__ static float* Place(float* p) {
    return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t(63));
  }
  __device__ explicit CentroidTable(const float* placed) : base(unsigned(__cvta_generic_to_shared(placed))) {}
  // The centroid at byte offset off = 4·idx (from IndexOffset).
  __device__ __forceinline__ float operator()(unsigned off) const {
    float y;
    asm("ld.shared.f32 %0, [%1];" : "=f"(y) : "r"(base | off));
    return y;
  }
};

// Block-cooperative copy of `rows` packed rows (16-byte aligned source) into a tile of
// WordRow<BITS>::kStride-byte rows, consecutive threads taking consecutive 16-byte chunks. The copies
// are cp.async, committed as one group (WaitCopies, then a barrier, before the tile is read), so a
// block can compute on one tile while the next one lands.
template <int BITS>
__device__ __forceinline__ void StageWordRowsAsync(const unsigned char* src, int rows, unsigned char* tile) {
  using W = WordRow<BITS>;
  const uint4* s = reinterpret_cast<const uint4*>(src);
  for (int ch = threadIdx.x; ch < rows * W::kChunks; ch += blockDim.x)
    CopyAsync16(tile + (ch / W::kChunks) * W::kStride + (ch % W::kChunks) * 16, s + ch);
  CommitCopies();
}

// A tile row into registers, 16 bytes at a time.
template <int BITS>
__device__ __forceinline__ void LoadWordRow(const unsigned char* row, unsigned (&w)[WordRow<BITS>::kWords]) {
#pragma unroll
  for (int c = 0; c < WordRow<BITS>::kChunks; ++c) {
    const uint4 v = reinterpret_cast<const uint4*>(row)[c];
    w[4 * c] = v.x, w[4 * c + 1] = v.y, w[4 * c + 2] = v.z, w[4 * c + 3] = v.w;
  }
}

// s[k][r] += Σ_c q[r * qs + c] · cen[idx_kc] over the 128 coordinates of the K rows in w: each
// centroid is looked up once for all R query rows, and each query float4 (a broadcast read from
// shared memory) serves all K rows.
template <int R, int K, int BITS>
__device__ __forceinline__ void WordDot(const unsigned (&w)[K][WordRow<BITS>::kWords], CentroidTable cen,
                                        const float* q, int qs, float (&s)[K][R]) {
#pragma unroll
  for (int c = 0; c < kWordN; c += 4) {
    float y[K][4];
#pragma unroll
    for (int k = 0; k < K; ++k)
#pragma unroll
      for (int j = 0; j < 4; ++j) y[k][j] = cen(IndexOffset<BITS>(w[k], c + j));
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float4 a = *reinterpret_cast<const float4*>(q + r * qs + c);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        s[k][r] = fmaf(a.x, y[k][0], s[k][r]);
        s[k][r] = fmaf(a.y, y[k][1], s[k][r]);
        s[k][r] = fmaf(a.z, y[k][2], s[k][r]);
        s[k][r] = fmaf(a.w, y[k][3], s[k][r]);
      }
    }
  }
}

// The 8 indices of coordinates [8g, 8g + 8) of a packed row, as one word (index j at bits
// [j·BITS, j·BITS + BITS)): word k of the row shifted right by s, with word k + 1 only where the
// group crosses into it. Built once per thread for its group g, applied to each token's row.
template <int BITS>
struct GroupWindow {
  int k, s;
  bool two;
  __host__ __device__ explicit GroupWindow(int g) : k(8 * BITS * g >> 5), s(8 * BITS * g & 31), two(s + 8 * BITS > 32) {}
  __host__ __device__ __forceinline__ unsigned operator()(const unsigned* row) const {
    const unsigned lo = row[k], hi = two ? row[k + 1] : 0u;
#ifdef __CUDA_ARCH__
    return __funnelshift_r(lo, hi, s);
#else
    return unsigned(((static_cast<unsigned long long>(hi) << 32) | lo) >> s);
#endif
  }
};

}  // namespace
}  // namespace cuda
}  // namespace rotorjax
