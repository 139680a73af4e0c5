// attention_decode's word-wise path on the tensor cores: rotated width 128, K and V of equal bits 2, 3
// or 4, 16-byte aligned codes. Each warp of a block takes 32 tokens of every 128-token tile, stages its
// own K and V code rows (cp.async, the next tile's K while it accumulates values, its V while it
// scores), and runs its own online softmax, so warps never wait for each other; each warp writes its
// own partial (max, sum, Σ p·v) and MergeRotateKernel merges them with the splits'.
//
// Both products run as m16n8k16 tensor-core tiles on split float16 values (mma_f16.cuh): the centroid
// tables hold split values, each A register is one table entry (one LDS per index, as on the CUDA
// cores), and a k-step covers 8 coordinates (tokens), its B registers holding each partner twice.
// - scores: S (tokens × columns) = K̂ (tokens × 128) · [q_hi | q_lo] (128 × 2R); k-slots 2t, 2t + 1
//   (2t + 8, 2t + 9) of k-step ks stand for coordinate 32t + 2ks (+ 1), so a thread's A registers are
//   the indices of coordinates [32t, 32t + 32) of tokens g and g + 8 of a 16-token tile: its window
//   of code words;
// - values: Oᵀ (128 × columns) += V̂ᵀ (128 × tokens) · [p_hi | p_lo] (tokens × 2R); M-row g (g + 8) of
//   m-tile mt stands for coordinate 8g + mt (64 + 8g + mt), so a thread reads index groups g and
//   g + 8 (GroupWindow) of 2 tokens per 8-token k-step, TokenOf(t, 0) and TokenOf(t, 1), chosen for
//   distinct banks.
// Queries, centroids and probabilities × ‖v‖ each carry a power-of-two scale that the float32 results
// undo, so the float16 halves never overflow whatever the norms.
#pragma once

#include "attention_args.cuh"
#include "code_dot.cuh"  // QueryStride
#include "code_words.cuh"
#include "mma_f16.cuh"

namespace rotorjax {
namespace cuda {
namespace {

constexpr int kAttnWarps = kTokens / 32;  // partials per block

template <int R, int BITS>
struct WordsLayout {
  static constexpr int kCols = (2 * R + 7) / 8 * 8;  // B columns: R his, R los, zero padding
  static constexpr int kTiles = kCols / 8;           // n-tiles
  static constexpr int kScoreStride = 36;            // floats per score column (32 tokens; banks 8t + g)
  static constexpr int kPStep = kCols * 12 + 8;      // words per 8-token k-step of P (12 per column)
  static constexpr int kRedStride = 129;             // floats per column of the final reduction
  static constexpr int kCodeBytes = 32 * WordRow<BITS>::kStride;  // one warp's K (or V) tile
  static constexpr int kLoopBytes = 4 * (kCols * kScoreStride + 4 * kPStep) + 2 * kCodeBytes;
  static constexpr int kRedBytes = 4 * kCols * kRedStride;
  static constexpr int kWarpBytes = ((kLoopBytes > kRedBytes ? kLoopBytes : kRedBytes) + 15) / 16 * 16;
  static constexpr int kSmem = 1024 + kAttnWarps * kWarpBytes;  // two tables, then the warps' regions
};

// Token of an 8-token k-step in k-slot s (k-rows 2t + 8s, 2t + 8s + 1): a warp's reads of V rows
// TokenOf(0..3, s) hit distinct banks (WordRow's swizzle). P's word of token u: t = (u & 1) + 2 (u >> 2),
// s = u >> 1 & 1.
__device__ __forceinline__ int TokenOf(int t, int s) { return (t & 1) + 4 * (t >> 1) + 2 * s; }

__device__ __forceinline__ float WarpMax(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float WarpSum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// x[i] where i is known only at run time (no local-memory array).
template <int N, typename T>
__device__ __forceinline__ T Pick(const T (&x)[N], int i) {
  T y = x[0];
#pragma unroll
  for (int k = 1; k < N; ++k) y = i == k ? x[k] : y;
  return y;
}

template <int R, int BITS>
__global__ void __launch_bounds__(kTokens, R <= 4 ? 4 : 2) AttentionWordsKernel(AttnArgs a) {
  using L = WordsLayout<R, BITS>;
  using W = WordRow<BITS>;
  constexpr int NT = L::kTiles;
  extern __shared__ __align__(16) float smem[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
  const int p = blockIdx.y, r0 = blockIdx.z * R;
  unsigned* ktab = reinterpret_cast<unsigned*>(CentroidTable::Place(smem));  // in regions of 128 floats
  unsigned* vtab = reinterpret_cast<unsigned*>(CentroidTable::Place(smem + 128));
  unsigned char* region = reinterpret_cast<unsigned char*>(smem + 256) + warp * L::kWarpBytes;
  float* sc = reinterpret_cast<float*>(region);  // kCols × kScoreStride: this tile's score columns
  unsigned* pb = reinterpret_cast<unsigned*>(sc + L::kCols * L::kScoreStride);  // 4 k-steps of P
  unsigned char* kt = reinterpret_cast<unsigned char*>(pb + 4 * L::kPStep);
  unsigned char* vt = kt + L::kCodeBytes;
  float* red = reinterpret_cast<float*>(region);  // after the loop: kCols × kRedStride

  const BlockTokens<R> span(a, p, r0);
  const auto stage = [&](long long tok0, bool values) {  // this warp's 32 rows of the tile at tok0
    const long long first = tok0 + 32 * warp;
    const unsigned char* codes = (values ? a.vc : a.kc) + ((long long)p * a.T + first) * W::kStride;
    StageWordRowsAsync<BITS>(codes, span.Valid(first, 32), values ? vt : kt, lane, 32);
  };
  stage(span.begin, false);
  stage(span.begin, true);

  // Codebooks as split values, each under its own scale.
  float kmax = 0.0f, vmax = 0.0f;
#pragma unroll
  for (int i = 0; i < 1 << BITS; ++i) kmax = fmaxf(kmax, fabsf(a.kcen[i])), vmax = fmaxf(vmax, fabsf(a.vcen[i]));
  const int ek = SplitExponent(kmax), ec = SplitExponent(vmax);
  if (threadIdx.x < 1 << BITS) {
    ktab[threadIdx.x] = SplitHalves(a.kcen[threadIdx.x] * Pow2(15 - ek));
    vtab[threadIdx.x] = SplitHalves(a.vcen[threadIdx.x] * Pow2(15 - ec));
  }
  for (int i = lane; i < 4 * L::kPStep; i += 32) pb[i] = 0u;  // padding columns stay zero

  // Queries: each row's scale, then this thread's B registers (column 8·nt + g: row n's hi for n < R,
  // row n − R's lo for n < 2R, else zero) for the coordinates of its window.
  GridDependencyWait();  // the rotated queries come from the kernel before
  const float* qrows = a.qrot + ((long long)p * a.rows + r0) * QueryStride(kWordN);
  int eq[R];
  float unit[R];  // a score's unit: 2^(eq + ek − 30)
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float m = 0.0f;
    if (r0 + r < a.rows)
#pragma unroll
      for (int i = 0; i < 4; ++i) m = fmaxf(m, fabsf(qrows[r * kWordN + lane + 32 * i]));
    eq[r] = SplitExponent(WarpMax(m));
    unit[r] = ldexpf(1.0f, eq[r] + ek - 30);
  }
  unsigned qb[NT][16][2];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const int n = 8 * nt + g, row = n < R ? n : n - R;
    const bool live = n < 2 * R && r0 + row < a.rows, high = n < R;
    const float scale = ldexpf(1.0f, 15 - Pick(eq, row));
#pragma unroll
    for (int ks = 0; ks < 16; ks += 2) {
      float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (live) x = *reinterpret_cast<const float4*>(qrows + row * kWordN + 32 * t + 2 * ks);
      const float y[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const unsigned h = SplitHalves(y[i] * scale);
        qb[nt][ks + i / 2][i % 2] = high ? HighTwice(h) : LowTwice(h);
      }
    }
  }
  __syncthreads();  // the tables
  const CentroidTable kcen(reinterpret_cast<float*>(ktab)), vcen(reinterpret_cast<float*>(vtab));

  // Value rows of this thread: token TokenOf(t, j) of each k-step, index groups g and g + 8.
  const GroupWindow<BITS> win[2] = {GroupWindow<BITS>(g), GroupWindow<BITS>(g + 8)};
  float acc[8][NT][4] = {};
  float mrun[R], lrun[R];
#pragma unroll
  for (int r = 0; r < R; ++r) mrun[r] = -INFINITY, lrun[r] = 0.0f;
  int ev = -100;  // the running scale exponent of ‖v‖: the accumulators are in units of 2^(ev + ec − 30)

  for (long long tok0 = span.begin; tok0 < span.end; tok0 += kTokens) {
    const long long first = tok0 + 32 * warp;
    const int valid = span.Valid(first, 32);
    const long long row = (long long)p * a.T + first + lane;
    const float kn = lane < valid ? a.kn[row] : 0.0f, vn = lane < valid ? a.vn[row] : 0.0f;
    WaitCopies<1>();  // K codes here; V may be in flight
    __syncwarp();

    // Scores of tokens 16mt + g and 16mt + g + 8 into the score columns.
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
      unsigned w[2][BITS];
      LoadWordWindow<BITS>(kt, 16 * mt + g, t, w[0]);
      LoadWordWindow<BITS>(kt, 16 * mt + g + 8, t, w[1]);
      const IndexAddresses<BITS, BITS> ix[2] = {IndexAddresses<BITS, BITS>(w[0], kcen.base),
                                                IndexAddresses<BITS, BITS>(w[1], kcen.base)};
      float d[NT][4] = {};
#pragma unroll
      for (int ks = 0; ks < 16; ++ks) {
        const unsigned e[4] = {kcen.Word(ix[0][2 * ks]), kcen.Word(ix[1][2 * ks]), kcen.Word(ix[0][2 * ks + 1]),
                               kcen.Word(ix[1][2 * ks + 1])};
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) Mma16816(d[nt], e, qb[nt][ks][0], qb[nt][ks][1]);
      }
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) sc[(8 * nt + 2 * t + (i & 1)) * L::kScoreStride + 16 * mt + g + 8 * (i >> 1)] = d[nt][i];
    }
    __syncwarp();
    stage(tok0 + kTokens, false);

    // Online softmax, a lane per token: probabilities × ‖v‖ split, each half twice in its B word.
    int evt = SplitExponent(vn);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) evt = max(evt, __shfl_xor_sync(0xffffffffu, evt, o));
    const int evn = max(ev, evt);
    const float vscale = vn * Pow2(15 - evn), drift = evn - ev > 100 ? 0.0f : Pow2(ev - evn);
    bool moved = evn != ev;
    ev = evn;
    float alpha[R];
    const int u = lane % 8;
    unsigned* pw = pb + lane / 8 * L::kPStep + (u & 1) + 2 * (u >> 2) + 4 * (u >> 1 & 1);  // column n at 12n
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const bool seen = lane < valid && first + lane < span.lim[r];
      const float x = seen ? (sc[r * L::kScoreStride + lane] + sc[(R + r) * L::kScoreStride + lane]) * kn * unit[r]
                           : -INFINITY;
      const float m_new = fmaxf(mrun[r], WarpMax(x));
      const bool none = m_new == -INFINITY;  // nothing visible yet: keep zeros, no NaN from −∞ − −∞
      const float e = none ? 0.0f : __expf(x - m_new);
      alpha[r] = none ? 1.0f : __expf(mrun[r] - m_new);
      moved |= alpha[r] != 1.0f;
      mrun[r] = m_new;
      lrun[r] = lrun[r] * alpha[r] + WarpSum(e);
      const unsigned h = SplitHalves(e * vscale);
      pw[12 * r] = HighTwice(h);
      pw[12 * (R + r)] = LowTwice(h);
    }
    if (moved) {  // the same for the whole warp
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const float f = drift * Pick(alpha, (8 * nt + 2 * t + j) % R);
#pragma unroll
          for (int mt = 0; mt < 8; ++mt) acc[mt][nt][j] *= f, acc[mt][nt][2 + j] *= f;
        }
    }
    WaitCopies<1>();  // V codes here; the next K may be in flight
    __syncwarp();

    // Σ p · ‖v‖ · ĉ over the warp's four 8-token k-steps.
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
      unsigned b[NT][2];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int k = 0; k < 2; ++k) b[nt][k] = pb[ks * L::kPStep + 12 * (8 * nt + g) + t + 4 * k];
      IndexAddresses<BITS, 1> ix[2][2];  // [k-slot][index group g, g + 8]
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const int u = 8 * ks + TokenOf(t, k);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const unsigned v = win[h]([&](int c) {
            return *reinterpret_cast<const unsigned*>(vt + u * W::kStride + W::WordOffset(u, c));
          });
          ix[k][h] = IndexAddresses<BITS, 1>(&v, vcen.base);
        }
      }
#pragma unroll
      for (int mt = 0; mt < 8; ++mt) {
        const unsigned e[4] = {vcen.Word(ix[0][0][mt]), vcen.Word(ix[0][1][mt]), vcen.Word(ix[1][0][mt]),
                               vcen.Word(ix[1][1][mt])};
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) Mma16816(acc[mt][nt], e, b[nt][0], b[nt][1]);
      }
    }
    __syncwarp();
    stage(tok0 + kTokens, true);
  }

  // This warp's partial: Σ for row r is the sum of columns r and R + r, in units of 2^(ev + ec − 30).
  WaitCopies<0>();
  __syncwarp();
#pragma unroll
  for (int mt = 0; mt < 8; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i)
        red[(8 * nt + 2 * t + (i & 1)) * L::kRedStride + 64 * (i >> 1) + 8 * g + mt] = acc[mt][nt][i];
  __syncwarp();
  const float vunit = ldexpf(1.0f, ev + ec - 30);
  float* out = a.part + ((((long long)p * a.chunks + blockIdx.z) * a.splits + blockIdx.x) * kAttnWarps + warp) * R *
                            (kWordN + 2);
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int c = lane + 32 * i;
      out[r * (kWordN + 2) + c] = (red[r * L::kRedStride + c] + red[(R + r) * L::kRedStride + c]) * vunit;
    }
    if (lane == 0) out[r * (kWordN + 2) + kWordN] = mrun[r], out[r * (kWordN + 2) + kWordN + 1] = lrun[r];
  }
}

}  // namespace
}  // namespace cuda
}  // namespace rotorjax
