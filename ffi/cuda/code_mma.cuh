// Scores straight from packed codes on the tensor cores (rotated width 128, bits 2/3/4 at compile time),
// shared by scores and attention_decode: a warp scores 32 code rows of a tile against R query rows,
// S (tokens × columns) = K̂ (tokens × 128) · [q_hi | q_lo] (128 × 2R), as m16n8k16 products on split
// float16 values (mma_f16.cuh). The centroid table holds split values and each A register is one
// table entry (one LDS per index, as on the CUDA cores); k-slots 2t, 2t + 1 (2t + 8, 2t + 9) of
// k-step ks stand for coordinate 32t + 2ks (+ 1), so a thread's A registers are the indices of
// coordinates [32t, 32t + 32) of tokens g and g + 8 of a 16-token tile (g = lane / 4, t = lane % 4):
// its window of code words (LoadWordWindow). Queries and centroids carry power-of-two scales that
// the float32 results undo, so the float16 halves never overflow.
#pragma once

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

// A codebook of 2^BITS centroids as split values in a CentroidTable's place (threads < 2^BITS write;
// a barrier must follow). Returns the table's scale exponent e: entries are centroid · 2^(15 − e).
template <int BITS>
__device__ __forceinline__ int SplitTable(const float* centroids, float* table) {
  float m = 0.0f;
#pragma unroll
  for (int i = 0; i < 1 << BITS; ++i) m = fmaxf(m, fabsf(centroids[i]));
  const int e = SplitExponent(m);
  if (threadIdx.x < 1 << BITS)
    reinterpret_cast<unsigned*>(table)[threadIdx.x] = SplitHalves(centroids[threadIdx.x] * Pow2(15 - e));
  return e;
}

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
template <int R, int BITS>
__device__ __forceinline__ void ScoreColumns(const unsigned char* tile, CentroidTable table,
                                             const QueryOperands<R>& q, float* sc) {
  using S = ScoreShape<R>;
  using Addresses = IndexAddresses<BITS, BITS>;
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  Addresses ix[2][2];  // [m-tile][token g, g + 8]
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      unsigned w[BITS];
      LoadWordWindow<BITS>(tile, 16 * mt + g + 8 * h, t, w);
      ix[mt][h] = Addresses(w, table.base);
    }
  // The two m-tiles' accumulations interleaved: independent chains of dependent products.
  float d[2][S::kTiles][4] = {};
#pragma unroll
  for (int ks = 0; ks < 16; ++ks)
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
      const unsigned e[4] = {table.Word(ix[mt][0][2 * ks]), table.Word(ix[mt][1][2 * ks]),
                             table.Word(ix[mt][0][2 * ks + 1]), table.Word(ix[mt][1][2 * ks + 1])};
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
