// Word-wise decoding of packed rows for the fast shapes (rotated width 128, bits 2/3/4 at compile
// time), shared by scores, attention_decode and the fast decode. Read as little-endian 32-bit words,
// a row of 128 indices is 4·BITS words and index i is stream bits [i·BITS, i·BITS + BITS): every
// shift, mask and byte selector below is a compile-time constant once the loops unroll, so the
// shared-memory address of an index's centroid costs one or two instructions (IndexAddresses), then
// one LDS. Centroid tables of ≤ 16 floats sit in distinct shared-memory banks, so the per-thread
// lookups never conflict. At 2 and 3 bits, tables of index pairs (PairAddresses, PairTable) halve the
// address work: one shift and one LOP3 per two indices, with a copy of the table per lane of a phase.
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

// A packed row in a tile: kChunks 16-byte chunks, rows back to back (no padding). Where kChunks is a
// power of two (4 or 2 bits), chunk c of row t sits at chunk Chunk(t, c) = c ^ ((t / (8 / kChunks)) %
// kChunks) of its row, so that the value reads of attention_decode (TokenOf in attention_words.cuh:
// index groups g of 4 rows) fall in distinct banks.
template <int BITS>
struct WordRow {
  static constexpr int kWords = kWordN * BITS / 32;  // 16, 12 or 8: whole 16-byte chunks
  static constexpr int kChunks = kWords / 4;
  static constexpr int kStride = 16 * kChunks;  // tile row stride in bytes
  __host__ __device__ static int Chunk(int t, int c) { return kChunks == 3 ? c : c ^ (t / (8 / kChunks) % kChunks); }
  // Byte offset of word k in row t; it depends on t only modulo 8, so a thread stepping through rows
  // 8 apart computes it once.
  __host__ __device__ static int WordOffset(int t, int k) { return Chunk(t, k / 4) * 16 + k % 4 * 4; }
};

// 4 · (index i) of a row held as words w; i must be a compile-time constant after unrolling.
template <int BITS>
__host__ __device__ __forceinline__ unsigned IndexOffset(const unsigned* w, int i) {
  constexpr unsigned kMask = ((1u << BITS) - 1u) << 2;
  const int t = i * BITS, k = t >> 5, s = t & 31;
  if (s < 2) return (w[k] << (2 - s)) & kMask;
  if (s + BITS <= 32) return (w[k] >> (s - 2)) & kMask;
  return unsigned(((static_cast<unsigned long long>(w[k + 1]) << 32) | w[k]) >> (s - 2)) & kMask;
}

// __byte_perm (PRMT): byte n of the result is byte (s >> 4n) & 7 of y:x.
__host__ __device__ __forceinline__ unsigned BytePerm(unsigned x, unsigned y, unsigned s) {
#ifdef __CUDA_ARCH__
  return __byte_perm(x, y, s);
#else
  const unsigned long long v = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned r = 0;
  for (int n = 0; n < 4; ++n) r |= unsigned((v >> (8 * ((s >> (4 * n)) & 7))) & 0xff) << (8 * n);
  return r;
#endif
}

// Shared-memory addresses base | 4·idx of the centroids of the indices held in W words w, for a table
// at a 256-byte aligned base (the low byte of base is 0). 2 and 4 bits: each word is first spread into
// 8/BITS words whose bytes each hold one index times 4 (a shift and a mask per spread word, for 4 or 8
// indices), then an index's address is one byte permute putting its byte under base's upper three:
// 1.5 instructions per index against 2 for a shift and a mask each. 3 bits, whose indices straddle
// bytes: IndexOffset's shift (or funnel shift) and one LOP3 that masks and merges base.
template <int BITS, int W>
struct IndexAddresses {
  static constexpr int kCopies = BITS == 3 ? 1 : 8 / BITS;  // spread words per word
  static constexpr int kPerWord = 32 / BITS;                // indices per word (2 and 4 bits)
  unsigned s[W * kCopies];
  unsigned base;
  IndexAddresses() = default;
  __host__ __device__ __forceinline__ IndexAddresses(const unsigned* w, unsigned table) : base(table) {
    constexpr unsigned kMask = 0x01010101u * (((1u << BITS) - 1u) << 2);
#pragma unroll
    for (int k = 0; k < W; ++k)
#pragma unroll
      for (int m = 0; m < kCopies; ++m)
        s[k * kCopies + m] = BITS == 3 ? w[k] : (m == 0 ? w[k] << 2 : w[k] >> (BITS * m - 2)) & kMask;
  }
  // The address of index i (a compile-time constant after unrolling).
  __host__ __device__ __forceinline__ unsigned operator[](int i) const {
    if constexpr (BITS == 3) {
      return base | IndexOffset<3>(s, i);
    } else {
      const int p = i % kPerWord;
      return BytePerm(s[i / kPerWord * kCopies + p % kCopies], base, 0x7650u | unsigned(p / kCopies));
    }
  }
};

// Byte offsets, in a PairTable, of the entries of index pairs (2p, 2p + 1) held in W words w:
// 128 · (i_2p + 2^BITS · i_2p+1) | copy, for a lane's copy offset (PairCopy, < 128). A pair's 2·BITS
// bits are adjacent in the packed stream (index 2p in the low ones), so its offset is one shift (or
// funnel shift) and one LOP3 that masks and merges the copy; the table's own address rides on the
// load's immediate (a static shared array). One instruction per index, against IndexAddresses' 1.5
// (2 at 3 bits).
template <int BITS, int W>
struct PairAddresses {
  unsigned w[W];
  unsigned copy;
  PairAddresses() = default;
  __host__ __device__ __forceinline__ PairAddresses(const unsigned* words, unsigned lane_copy) : copy(lane_copy) {
#pragma unroll
    for (int k = 0; k < W; ++k) w[k] = words[k];
  }
  // The offset of pair p (a compile-time constant after unrolling).
  __host__ __device__ __forceinline__ unsigned operator[](int p) const {
    constexpr unsigned kMask = ((1u << 2 * BITS) - 1u) << 7;
    const int t = 2 * BITS * p, k = t >> 5, s = t & 31;
    unsigned x;
    if (s + 2 * BITS <= 32) x = s >= 7 ? w[k] >> (s - 7) : w[k] << (7 - s);
    else x = unsigned(((static_cast<unsigned long long>(w[k + 1]) << 32) | w[k]) >> (s - 7));
    return copy | (x & kMask);
  }
};

// Where a pair table keeps a pair's two entries: side by side, for one 8-byte LDS into two adjacent
// registers, or in two planes, for two 4-byte LDS into any two registers.
enum class PairLoad { kAdjacent, kPlanes };

// A pair table's copy for the lane of a thread (PairAddresses' low bits): every entry has one per lane
// of a phase, so the lanes of a phase read distinct banks whatever their indices. Side by side, 8 bytes
// at 8 · (lane % 16) of each 128-byte entry (an 8-byte LDS is served half a warp at a time); in planes,
// 4 bytes at 4 · lane.
template <PairLoad L>
__host__ __device__ inline unsigned PairCopy(int thread) {
  return L == PairLoad::kAdjacent ? 8u * unsigned(thread % 16) : 4u * unsigned(thread % 32);
}

// A table of ≤ 16 centroids (or other 32-bit entries) in shared memory at a 256-byte aligned address
// (IndexAddresses).
struct CentroidTable {
  unsigned base;  // shared-space address
  __device__ explicit CentroidTable(const float* placed) : base(unsigned(__cvta_generic_to_shared(placed))) {}
  // The centroid at a shared-space address from IndexAddresses.
  __device__ __forceinline__ float operator()(unsigned address) const { return __uint_as_float(Word(address)); }
  // The table's 32-bit entry there, for tables of other 32-bit values (split halves: mma_f16.cuh).
  __device__ __forceinline__ unsigned Word(unsigned address) const {
    unsigned y;
    asm("ld.shared.b32 %0, [%1];" : "=r"(y) : "r"(address));
    return y;
  }
};

// A table of the 2^(2·BITS) index pairs' entries, two 32-bit values each (index 2p's, then 2p + 1's),
// with a copy per lane of a phase (PairCopy), read at offsets from PairAddresses: one plane of 128 bytes
// per pair, or two (side by side: 2 KB at 2 bits, 8 KB at 3; in planes twice that).
template <int BITS, PairLoad L>
struct PairTable {
  static constexpr int kPairs = 1 << (2 * BITS);
  static constexpr int kPlaneBytes = kPairs * 128;
  static constexpr int kBytes = (L == PairLoad::kPlanes ? 2 : 1) * kPlaneBytes;
  unsigned base;  // shared-space address of the table
  unsigned copy;  // this lane's copy
  __device__ explicit PairTable(const void* storage)
      : base(unsigned(__cvta_generic_to_shared(storage))), copy(PairCopy<L>(threadIdx.x)) {}
  // Fills storage with entry(i) of each index i < 2^BITS, by the block's threads (a barrier must follow).
  template <typename Entry>
  __device__ static void Fill(void* storage, Entry entry) {
    constexpr int kCopies = L == PairLoad::kAdjacent ? 16 : 32;
    unsigned* s = static_cast<unsigned*>(storage);
    for (int i = threadIdx.x; i < kPairs * kCopies; i += blockDim.x) {
      const int p = i / kCopies, lo = p & ((1 << BITS) - 1), hi = p >> BITS;
      if constexpr (L == PairLoad::kAdjacent) {
        reinterpret_cast<uint2*>(s)[i] = make_uint2(entry(lo), entry(hi));
      } else {
        s[i] = entry(lo);
        s[kPlaneBytes / 4 + i] = entry(hi);
      }
    }
  }
  // The entries of a pair at an offset from PairAddresses.
  __device__ __forceinline__ uint2 operator()(unsigned offset) const {
    uint2 y;
    if constexpr (L == PairLoad::kAdjacent) {
      asm("ld.shared.v2.b32 {%0, %1}, [%2];" : "=r"(y.x), "=r"(y.y) : "r"(base + offset));
    } else {
      asm("ld.shared.b32 %0, [%1];" : "=r"(y.x) : "r"(base + offset));
      asm("ld.shared.b32 %0, [%1];" : "=r"(y.y) : "r"(base + kPlaneBytes + offset));
    }
    return y;
  }
};

// Copy of `rows` ≤ 32 packed rows (16-byte aligned source) into a tile laid out as WordRow says, by one
// warp (this is its lane), consecutive lanes taking consecutive 16-byte chunks. The copies are cp.async,
// committed as one group (WaitCopies, then __syncwarp, before the tile is read), so the warp can compute
// on one tile while the next one lands. A whole tile, the common case, is kChunks straight-line copies
// per lane, without the general loop's bookkeeping.
template <int BITS>
__device__ __forceinline__ void StageWordRowsAsync(const unsigned char* src, int rows, unsigned char* tile, int lane) {
  using W = WordRow<BITS>;
  const uint4* s = reinterpret_cast<const uint4*>(src);
  // Chunk ch lands at 16·ch moved by the layout's swizzle, which depends on ch mod 32 alone: the same
  // move for all of a lane's chunks.
  const int c = lane % W::kChunks, move = 16 * (W::Chunk(lane / W::kChunks, c) - c);
  if (rows == 32) {
#pragma unroll
    for (int k = 0; k < W::kChunks; ++k) CopyAsync16(tile + 16 * (lane + 32 * k) + move, s + lane + 32 * k);
  } else {
    for (int ch = lane; ch < rows * W::kChunks; ch += 32) CopyAsync16(tile + 16 * ch + move, s + ch);
  }
  CommitCopies();
}

// Words [BITS·t, BITS·t + BITS) of row `row` of a tile: the indices of coordinates [32t, 32t + 32).
// One 16-byte read at 4 bits, one 8-byte read at 2, three 4-byte reads at 3.
template <int BITS>
__device__ __forceinline__ void LoadWordWindow(const unsigned char* tile, int row, int t, unsigned (&w)[BITS]) {
  using W = WordRow<BITS>;
  const unsigned char* base = tile + row * W::kStride;
  if constexpr (BITS == 4) {
    const uint4 v = *reinterpret_cast<const uint4*>(base + W::WordOffset(row, 4 * t));
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
  } else if constexpr (BITS == 2) {
    const uint2 v = *reinterpret_cast<const uint2*>(base + W::WordOffset(row, 2 * t));
    w[0] = v.x, w[1] = v.y;
  } else {
#pragma unroll
    for (int i = 0; i < BITS; ++i) w[i] = *reinterpret_cast<const unsigned*>(base + W::WordOffset(row, BITS * t + i));
  }
}

// The 8 indices of coordinates [8g, 8g + 8) of a packed row, as one word (index j at bits
// [j·BITS, j·BITS + BITS)): word k of the row shifted right by s, with word k + 1 only where the
// group crosses into it. Built once per thread for its group g, applied to each token's row, whose
// word k is word(k).
template <int BITS>
struct GroupWindow {
  int k, s;
  bool two;
  // Only 3-bit groups (24 bits) can straddle two words; saying so at compile time spares the 2-bit
  // path a runtime branch and load per group.
  __host__ __device__ explicit GroupWindow(int g)
      : k(8 * BITS * g >> 5), s(8 * BITS * g & 31), two(32 % (8 * BITS) != 0 && s + 8 * BITS > 32) {}
  template <typename Word>
  __host__ __device__ __forceinline__ unsigned operator()(Word word) const {
    const unsigned lo = word(k), hi = two ? word(k + 1) : 0u;
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
