// Rotor-mix on 128 coordinates with each vector split over a pair of warps, for the fast encode and
// decode: lane l of the pair's two warps (roles 0 and 1) shares row l of the pair's 32-row tile, and
// each role keeps 64 of the 128 coordinates in registers. A whole vector per lane took 168 registers,
// 3 warps per scheduler, and left the encode kernel at 50 % of its issue slots (docs/cuda_notes.md,
// session 6); half a vector lets 5 warps per scheduler hide the latencies.
//
// The roles run different code (a warp-uniform branch, so no lane diverges) and trade values through
// shared memory at pair barriers (named barriers of 64 threads):
// - the natural layout: role r holds coordinates 64r + k in registers k = 0…63;
// - the swapped layout: role r holds 32r + k for k < 32 and 64 + 32r + (k − 32) for k ≥ 32.
// The Walsh–Hadamard transform's strides 1…32 run inside a role in the natural layout and stride 64
// inside a role in the swapped one (registers k and k + 32); between the two layouts each role trades
// 32 values (SwapQuarters). A rotor stage applies each role's own 3-blocks in registers; the few blocks
// that straddle the roles (block 21 in the natural layout, blocks 10 and 21 in the swapped one) trade
// their owned coordinates and are computed by both roles, each keeping its own outputs.
#pragma once

#include <utility>

#include "warp_rows.cuh"

namespace rotorjax {
namespace cuda {
// Internal linkage: see cuda_common.cuh.
namespace {

constexpr int kSplitN = 128;  // the rotated width of the split kernels
constexpr int kSplitBlocks = (kSplitN + 2) / 3;  // 3-blocks per rotor stage (rj_rotor_stage_blocks)
constexpr int kPaddedBlock = 12;  // floats per 3×3 block in shared memory: three 16-byte loads
constexpr int kExchangeSlots = 8;  // values per row a pair trades outside SwapQuarters

enum class Layout { kNatural, kSwapped };

// The register of role `role` that holds coordinate c in layout L, or −1 if the other role holds it.
__host__ __device__ constexpr int RegOf(Layout l, int role, int c) {
  return l == Layout::kNatural ? (c / 64 == role ? c % 64 : -1) : ((c / 32) % 2 == role ? c % 32 + 32 * (c / 64) : -1);
}

__host__ __device__ constexpr int BlockStart(int g) { return 3 * g < kSplitN - 3 ? 3 * g : kSplitN - 3; }

// How many of block g's coordinates role `role` holds.
__host__ __device__ constexpr int Owned(Layout l, int role, int g) {
  return (RegOf(l, role, BlockStart(g)) >= 0) + (RegOf(l, role, BlockStart(g) + 1) >= 0) +
         (RegOf(l, role, BlockStart(g) + 2) >= 0);
}

__host__ __device__ constexpr bool Straddles(Layout l, int g) { return Owned(l, 0, g) % 3 != 0; }

// The exchange slot of coordinate j of a straddling block g: 3 per straddling block before it, plus j.
__host__ __device__ constexpr int StraddleSlot(Layout l, int g, int j) {
  int slot = j;
  for (int h = 0; h < g; ++h) slot += Straddles(l, h) ? 3 : 0;
  return slot;
}

// Pair barriers: named barrier 1 + pair, for the pair's 64 threads only. The ids are immediates: with
// the id in a register, ptxas reserves all 16 barriers and the SM then holds only 4 blocks.
static_assert(kFastWarps == 4, "two pairs per block");
__device__ __forceinline__ void PairSync(int pair) {
  if (pair == 0) asm volatile("bar.sync 1, 64;\n" ::: "memory");
  else asm volatile("bar.sync 2, 64;\n" ::: "memory");
}

// Copies both rotor stages' 3×3 blocks from c_params into shared memory, kPaddedBlock floats apart
// (a barrier must follow).
__device__ inline void CopyPaddedStages(float* mats) {
  for (int i = threadIdx.x; i < 2 * 9 * kSplitBlocks; i += blockDim.x) mats[i / 9 * kPaddedBlock + i % 9] = c_params[i];
}

// Block g of a stage (a warp-uniform address: the loads broadcast) applied to (t0, t1, t2).
template <int G, bool INVERSE>
__device__ __forceinline__ void ApplyPadded(float (&t)[3], const float* stage) {
  const float4* m4 = reinterpret_cast<const float4*>(stage + G * kPaddedBlock);
  const float4 a = m4[0], b = m4[1];
  const float m[9] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w, stage[G * kPaddedBlock + 8]};
  rj_block_apply(t, 1, m, 3, INVERSE);
}

// The pair's trade area: kExchangeSlots values of each of 32 rows, slot-major (conflict-free).
struct Exchange {
  float* slots;  // the pair's [kExchangeSlots][32]
  int lane;
  __device__ __forceinline__ float& operator[](int slot) const { return slots[slot * 32 + lane]; }
};

// One rotor stage (forward: blocks in order; INVERSE: in reverse order, transposed) on a role's 64
// coordinates in layout L, with a pair barrier. Blocks of one stage overlap only where the last block
// (g = 42, coordinates 125…127) meets the one before it, and the role holding 125…127 holds both, so
// the straddling blocks may run after the owned ones. `before_sync` runs just before the barrier (to
// trade more values, in slots the straddling blocks leave free).
template <Layout L, int ROLE, bool INVERSE>
struct SplitRotorStage {
  template <int G>
  __device__ static void Owned3(float (&v)[64], const float* stage) {
    if constexpr (Owned(L, ROLE, G) == 3) {
      constexpr int r0 = RegOf(L, ROLE, BlockStart(G)), r1 = RegOf(L, ROLE, BlockStart(G) + 1),
                    r2 = RegOf(L, ROLE, BlockStart(G) + 2);
      float t[3] = {v[r0], v[r1], v[r2]};
      ApplyPadded<G, INVERSE>(t, stage);
      v[r0] = t[0], v[r1] = t[1], v[r2] = t[2];
    }
  }
  template <int G, int J>
  __device__ static void Put(const float (&v)[64], Exchange x) {
    if constexpr (Straddles(L, G) && RegOf(L, ROLE, BlockStart(G) + J) >= 0)
      x[StraddleSlot(L, G, J)] = v[RegOf(L, ROLE, BlockStart(G) + J)];
  }
  // Coordinate J of straddling block G: the role's own, or the partner's from the trade.
  template <int G, int J>
  __device__ static float Get(const float (&v)[64], Exchange x) {
    if constexpr (RegOf(L, ROLE, BlockStart(G) + J) >= 0) return v[RegOf(L, ROLE, BlockStart(G) + J)];
    else return x[StraddleSlot(L, G, J)];
  }
  template <int G, int J>
  __device__ static void Keep(float (&v)[64], const float (&t)[3]) {
    if constexpr (RegOf(L, ROLE, BlockStart(G) + J) >= 0) v[RegOf(L, ROLE, BlockStart(G) + J)] = t[J];
  }
  template <int G>
  __device__ static void Straddle(float (&v)[64], const float* stage, Exchange x) {
    if constexpr (Straddles(L, G) && Owned(L, ROLE, G) > 0) {
      float t[3] = {Get<G, 0>(v, x), Get<G, 1>(v, x), Get<G, 2>(v, x)};
      ApplyPadded<G, INVERSE>(t, stage);
      Keep<G, 0>(v, t), Keep<G, 1>(v, t), Keep<G, 2>(v, t);
    }
  }
  template <typename BeforeSync, int... I>
  __device__ static void Run(float (&v)[64], const float* stage, Exchange x, int pair, BeforeSync&& before_sync,
                             std::integer_sequence<int, I...>) {
    (Owned3<INVERSE ? kSplitBlocks - 1 - I : I>(v, stage), ...);
    (Put<I, 0>(v, x), ...), (Put<I, 1>(v, x), ...), (Put<I, 2>(v, x), ...);
    before_sync();
    PairSync(pair);
    (Straddle<I>(v, stage, x), ...);
  }
  template <typename BeforeSync>
  __device__ static void Apply(float (&v)[64], const float* stage, Exchange x, int pair, BeforeSync&& before_sync) {
    Run(v, stage, x, pair, before_sync, std::make_integer_sequence<int, kSplitBlocks>());
  }
  __device__ static void Apply(float (&v)[64], const float* stage, Exchange x, int pair) {
    Apply(v, stage, x, pair, [] {});
  }
};

// Between the layouts, either way: role 0 trades its registers 32…63, role 1 its registers 0…31,
// through each role's slice (`mine`, `theirs`: 32 words of each of 32 lanes, word-major, so that
// 4-byte accesses are conflict-free and need no aligned register quads), with a pair barrier. The
// caller must know the partner is done with `mine` (a barrier since its last read of it).
template <int ROLE>
__device__ __forceinline__ void SwapQuarters(float (&v)[64], float* mine, const float* theirs, int lane, int pair) {
  constexpr int k0 = ROLE == 0 ? 32 : 0;
#pragma unroll
  for (int k = 0; k < 32; ++k) mine[k * 32 + lane] = v[k0 + k];
  PairSync(pair);
#pragma unroll
  for (int k = 0; k < 32; ++k) v[k0 + k] = theirs[k * 32 + lane];
}

// The Walsh–Hadamard stride 64 in the swapped layout (registers k and k + 32), times s.
__device__ __forceinline__ void Stride64(float (&v)[64], float s) {
#pragma unroll
  for (int k = 0; k < 32; ++k) {
    const float a = v[k], b = v[k + 32];
    v[k] = (a + b) * s;
    v[k + 32] = (a - b) * s;
  }
}

// The split tiles: a block of kFastWarps warps is kFastWarps / 2 pairs, pair p of block b owns rows
// [32 (b · kFastWarps / 2 + p), + 32), and warp 2p + r is its role r. Each warp has a slice of 32 rows
// kStride chunks apart.
struct SplitTile {
  int role, pair, lane;
  long long tile;  // the pair's tile index
  int valid;       // its rows (0 if none)
  __device__ SplitTile(long long rows) {
    const int warp = threadIdx.x / 32;
    role = warp % 2, pair = warp / 2, lane = threadIdx.x % 32;
    tile = (long long)blockIdx.x * (kFastWarps / 2) + pair;
    valid = tile * kWarpRows < rows ? int(min((long long)kWarpRows, rows - tile * kWarpRows)) : 0;
  }
};

// Blocks per SM the split kernels are built for: 5 blocks of 4 warps, ≤ 96 registers per thread.
constexpr int kSplitMinBlocks = 5;

// The slices' row stride in chunks for half rows of `half` chunks: room for SwapQuarters' 8 chunks,
// odd so that a lane's 16-byte accesses of its own row are conflict-free.
__host__ __device__ constexpr int SplitStride(int half) { return ChunkStride(half > 8 ? half : 8); }

// A warp's slice, its partner's, and the pair's code rows (role 0's slice).
template <int kStride>
struct SplitSlices {
  uint4 *mine, *theirs, *codes;
  __device__ explicit SplitSlices(uint4* slices) {
    const int warp = threadIdx.x / 32;
    mine = slices + warp * kWarpRows * kStride;
    theirs = slices + (warp ^ 1) * kWarpRows * kStride;
    codes = slices + (warp & ~1) * kWarpRows * kStride;
  }
};

// Group g (BITS words: 32 indices) of a staged code row, to or from words w.
// (PutWords stores 8 bytes at a time: 16-byte stores need aligned register quads, and forming them
// made ptxas spill at 96 registers.)
template <int BITS>
__device__ __forceinline__ void PutWords(uint4* row, int g, const unsigned* w) {
  const unsigned at = unsigned(__cvta_generic_to_shared(row)) + 4 * g * BITS;
  if constexpr (BITS % 2 == 0) {
#pragma unroll
    for (int i = 0; i < BITS; i += 2)
      asm volatile("st.shared.v2.u32 [%0], {%1, %2};\n" ::"r"(at + 4 * i), "r"(w[i]), "r"(w[i + 1]) : "memory");
  } else {
#pragma unroll
    for (int i = 0; i < BITS; ++i) asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(at + 4 * i), "r"(w[i]) : "memory");
  }
}

template <int BITS>
__device__ __forceinline__ void GetWords(const uint4* row, int g, unsigned* w) {
  if constexpr (BITS == 4) {
    const uint4 q = row[g];
    w[0] = q.x, w[1] = q.y, w[2] = q.z, w[3] = q.w;
  } else if constexpr (BITS == 2) {
    const uint2 q = reinterpret_cast<const uint2*>(row)[g];
    w[0] = q.x, w[1] = q.y;
  } else {
#pragma unroll
    for (int i = 0; i < BITS; ++i) w[i] = reinterpret_cast<const unsigned*>(row)[g * BITS + i];
  }
}

// The pair's staged code rows (BITS chunks each) ↔ its tile in global memory (rows back to back), by
// the pair's 64 lanes, coalesced. Storing needs a pair barrier before; a staged load needs one after
// (CommitCopies, WaitCopies, PairSync).
template <int BITS, int kStride>
__device__ __forceinline__ void StorePairRows(const uint4* codes, const SplitTile& st, uint4* dst) {
#pragma unroll
  for (int j = 0; j < (BITS + 1) / 2; ++j) {
    const int e = 64 * j + 32 * st.role + st.lane;
    if (e < st.valid * BITS) __stcs(dst + e, codes[e / BITS * kStride + e % BITS]);
  }
}

template <int BITS, int kStride>
__device__ __forceinline__ void LoadPairRowsAsync(const uint4* src, const SplitTile& st, uint4* codes) {
#pragma unroll
  for (int j = 0; j < (BITS + 1) / 2; ++j) {
    const int e = 64 * j + 32 * st.role + st.lane;
    if (e < st.valid * BITS) CopyAsync16(codes + e / BITS * kStride + e % BITS, src + e);
  }
  CommitCopies();
}

inline size_t SplitSmem(int stride) { return size_t(kFastWarps) * kWarpRows * stride * 16; }

// Launches a split kernel: a warp pair per 32-row tile.
template <typename Kernel, typename Args>
ffi::Error LaunchSplit(Kernel kernel, long long rows, int stride, cudaStream_t stream, const Args& args, const char* what) {
  constexpr int kRows = kFastWarps / 2 * kWarpRows;
  // All of the SM's shared memory: the default carveout held 4 blocks of the bfloat16 kernels.
  if (ffi::Error err = CudaError(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                                      cudaSharedmemCarveoutMaxShared), what);
      err.failure())
    return err;
  return Launch(kernel, dim3(unsigned((rows + kRows - 1) / kRows)), kFastWarps * kWarpRows, SplitSmem(stride), stream,
                args, what);
}

}  // namespace
}  // namespace cuda
}  // namespace rotorjax
