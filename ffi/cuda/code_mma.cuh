// Scores straight from packed codes on the tensor cores (rotated width 128, bits 2/3/4 at compile time),
// shared by scores and attention_decode: a warp scores 32 code rows of a tile against R query rows,
// S (tokens × columns) = K̂ (tokens × 128) · [q_hi | q_lo] (128 × 2R), as m16n8k16 products on split
// float16 values (mma_f16.cuh). The centroid table holds split values and each A register is one
// table entry (KeyCodebook); k-slots 2t, 2t + 1 (2t + 8, 2t + 9) of k-step ks stand for coordinate
// 32t + 2ks (+ 1), so a thread's A registers are the indices of coordinates [32t, 32t + 32) of tokens
// g and g + 8 of a 16-token tile (g = lane / 4, t = lane % 4): its window of code words
// (LoadWordWindow). Queries and centroids carry power-of-two scales that the float32 results undo, so
// the float16 halves never overflow.
#pragma once

#include <type_traits>

#include "code_words.cuh"
#include "mma_f16.cuh"

namespace rotorjax {
namespace cuda {
namespace {

// x[i] where i is known only at run time (no local-memory array).
template <int N, typename T>
__device__ __forceinline__ T Pick(const T (&x)[N], int i) {
  T y = x[0];
#pragma unroll
  for (int k = 1; k < N; ++k) y = i == k ? x[k] : y;
  return y;
}

// A codebook of 2^BITS centroids as split values in shared memory, read two adjacent indices at a time:
// at 2 and 3 bits from a PairTable laid out for loads L, at 4 bits from a CentroidTable (an LDS per
// index; a 4-bit pair table would take 32 or 64 KB). Its storage is a kernel's static shared array of
// kBytes (256-byte aligned, for IndexAddresses).
template <int BITS, PairLoad L>
struct SplitCodebook {
  static constexpr bool kPairs = BITS < 4;
  static constexpr int kBytes = kPairs ? PairTable<BITS, L>::kBytes : 256;
  using Table = typename std::conditional<kPairs, PairTable<BITS, L>, CentroidTable>::type;
  Table table;
  __device__ explicit SplitCodebook(const void* storage) : table(static_cast<const float*>(storage)) {}
  // Writes the table (by the block's threads; a barrier must follow) and returns its scale exponent e:
  // entries are centroid · 2^(15 − e).
  __device__ static int Build(const float* centroids, void* storage) {
    float m = 0.0f;
#pragma unroll
    for (int i = 0; i < 1 << BITS; ++i) m = fmaxf(m, fabsf(centroids[i]));
    const int e = SplitExponent(m);
    const float scale = Pow2(15 - e);
    const auto entry = [&](int i) { return SplitHalves(centroids[i] * scale); };
    if constexpr (kPairs) {
      PairTable<BITS, L>::Fill(storage, entry);
    } else if (threadIdx.x < 1 << BITS) {
      static_cast<unsigned*>(storage)[threadIdx.x] = entry(threadIdx.x);
    }
    return e;
  }
};
// The keys' codebook (ScoreColumns, for scores and attention: pairs in planes) and the values' (attention's
// value products: pairs side by side).
template <int BITS>
using KeyCodebook = SplitCodebook<BITS, PairLoad::kPlanes>;
template <int BITS>
using ValueCodebook = SplitCodebook<BITS, PairLoad::kAdjacent>;

// The entries of the indices held in W words (a row's window or an index group), two adjacent indices
// (2p, 2p + 1) at a time.
template <int BITS, int W, PairLoad L>
struct CodeWindow {
  using Addresses = typename std::conditional<SplitCodebook<BITS, L>::kPairs, PairAddresses<BITS, W>,
                                              IndexAddresses<BITS, W>>::type;
  Addresses ix;
  CodeWindow() = default;
  __device__ __forceinline__ CodeWindow(const unsigned* w, const SplitCodebook<BITS, L>& c) : ix(w, Base(c.table)) {}
  static __device__ __forceinline__ unsigned Base(const PairTable<BITS, L>& t) { return t.copy; }
  static __device__ __forceinline__ unsigned Base(const CentroidTable& t) { return t.base; }
  __device__ __forceinline__ uint2 Pair(const SplitCodebook<BITS, L>& c, int p) const {
    if constexpr (SplitCodebook<BITS, L>::kPairs) return c.table(ix[p]);
    else return make_uint2(c.table.Word(ix[2 * p]), c.table.Word(ix[2 * p + 1]));
  }
};

// B columns of R query rows: R his, R los, zero padding to whole n-tiles of 8.
template <int R>
struct ScoreShape {
  static constexpr int kCols = (2 * R + 7) / 8 * 8;
  static constexpr int kTiles = kCols / 8;
  static constexpr int kStride = 36;  // floats per score column in shared memory (32 tokens; banks 8t + g)
  static constexpr int kBytes = 4 * kCols * kStride;
};

// A warp's query operands: this lane's B registers (column 8·nt + g: row n's hi for n < R, row
// n − R's lo for n < 2R, else zero; its window's coordinates) and each row's unit, the value of 1 in
// the products' columns: 2^(eq + e_table − 30).
template <int R>
struct QueryOperands {
  static constexpr int NT = ScoreShape<R>::kTiles;
  unsigned b[NT][16][2];
  float unit[R];
  // Rows r < live of q (row stride 128 floats), for a table of scale exponent table_e.
  __device__ QueryOperands(const float* q, int live, int table_e) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int eq[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float m = 0.0f;
      if (r < live)
#pragma unroll
        for (int i = 0; i < 4; ++i) m = fmaxf(m, fabsf(q[r * kWordN + lane + 32 * i]));
      eq[r] = SplitExponent(WarpMax(m));
      unit[r] = ldexpf(1.0f, eq[r] + table_e - 30);
    }
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int n = 8 * nt + g, row = n < R ? n : n - R;
      const bool used = n < 2 * R && row < live, high = n < R;
      const float scale = ldexpf(1.0f, 15 - Pick(eq, row));
#pragma unroll
      for (int ks = 0; ks < 16; ks += 2) {
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (used) x = *reinterpret_cast<const float4*>(q + row * kWordN + 32 * t + 2 * ks);
        const float y[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const unsigned h = SplitHalves(y[i] * scale);
          b[nt][ks + i / 2][i % 2] = high ? HighTwice(h) : LowTwice(h);
        }
      }
    }
  }
};

// The score columns of a warp's 32 code rows (a WordRow tile) into sc (ScoreShape<R>: column n of
// token u at sc[n · kStride + u]); the score of token u for row r is (sc[r][u] + sc[R + r][u]) · unit[r].
// A's registers per k-step are tokens g and g + 8 at coordinates 32t + 2ks and 32t + 2ks + 1, an index
// pair per token; at 2 and 3 bits each pair's two entries come from the planes of a pair table, two
// 4-byte LDS straight into their registers (an 8-byte LDS would need moves: the pair's registers are
// not adjacent).
template <int R, int BITS>
__device__ __forceinline__ void ScoreColumns(const unsigned char* tile, const KeyCodebook<BITS>& table,
                                             const QueryOperands<R>& q, float* sc) {
  using S = ScoreShape<R>;
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  CodeWindow<BITS, BITS, PairLoad::kPlanes> win[2][2];  // [m-tile][token g, g + 8]
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      unsigned w[BITS];
      LoadWordWindow<BITS>(tile, 16 * mt + g + 8 * h, t, w);
      win[mt][h] = CodeWindow<BITS, BITS, PairLoad::kPlanes>(w, table);
    }
  // The two m-tiles' accumulations interleaved: independent chains of dependent products.
  float d[2][S::kTiles][4] = {};
#pragma unroll
  for (int ks = 0; ks < 16; ++ks)
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
      const uint2 x = win[mt][0].Pair(table, ks), y = win[mt][1].Pair(table, ks);
      const unsigned e[4] = {x.x, y.x, x.y, y.y};
#pragma unroll
      for (int nt = 0; nt < S::kTiles; ++nt) Mma16816(d[mt][nt], e, q.b[nt][ks][0], q.b[nt][ks][1]);
    }
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < S::kTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i)
        sc[(8 * nt + 2 * t + (i & 1)) * S::kStride + 16 * mt + g + 8 * (i >> 1)] = d[mt][nt][i];
}

}  // namespace
}  // namespace cuda
}  // namespace rotorjax
