// attention_decode's word-wise path on the tensor cores: rotated width 128, K and V of equal bits 2, 3
// or 4, 16-byte aligned codes. Each warp of a block takes 32 tokens of every 128-token tile, stages its
// own K and V code rows (cp.async, the next tile's K while it accumulates values, its V while it
// scores), and runs its own online softmax, so warps never wait for each other; each warp writes its
// own partial (max, sum, Σ p·v) and MergeRotateKernel merges them with the splits'.
//
// Both products run on the tensor cores with split float16 values: the scores by ScoreColumns
// (code_mma.cuh), and the value sum likewise, each A register one V table entry and each 8-token
// k-step's B registers holding each probability twice:
// Oᵀ (128 × columns) += V̂ᵀ (128 × tokens) · [p_hi | p_lo] (tokens × 2R); M-rows g and g + 8 of m-tile mt
// stand for coordinates c and c + 1, c = 64·(mt / 4) + 8g + 2·(mt % 4): an index pair of group g (g + 8
// from mt = 4 on). So a thread reads index groups g and g + 8 (GroupWindow) of 2 tokens per k-step,
// TokenOf(t, 0) and TokenOf(t, 1), chosen for distinct banks, and token s's pair is A registers a[2s],
// a[2s + 1] (at 2 and 3 bits one 8-byte LDS straight into them, ValueCodebook).
// Queries, centroids and probabilities × ‖v‖ each carry a power-of-two scale that the float32 results
// undo, so the float16 halves never overflow whatever the norms.
#pragma once

#include "attention_args.cuh"
#include "code_mma.cuh"

namespace rotorjax {
namespace cuda {
namespace {

constexpr int kAttnWarps = kTokens / 32;  // partials per block

template <int R, int BITS>
struct WordsLayout {
  static constexpr int kCols = ScoreShape<R>::kCols;
  static constexpr int kPStep = kCols * 12 + 8;  // words per 8-token k-step of P (12 per column)
  static constexpr int kRedStride = 129;         // floats per column of the final reduction
  static constexpr int kCodeBytes = 32 * WordRow<BITS>::kStride;  // one warp's K (or V) tile
  static constexpr int kLoopBytes = ScoreShape<R>::kBytes + 4 * 4 * kPStep + 2 * kCodeBytes;
  static constexpr int kRedBytes = 4 * kCols * kRedStride;
  static constexpr int kWarpBytes = ((kLoopBytes > kRedBytes ? kLoopBytes : kRedBytes) + 15) / 16 * 16;
  static constexpr int kSmem = kAttnWarps * kWarpBytes;  // the warps' regions (the codebooks are static)
};

// Token of an 8-token k-step in k-slot s (k-rows 2t + 8s, 2t + 8s + 1): a warp's reads of V rows
// TokenOf(0..3, s) hit distinct banks (WordRow's swizzle at 2 and 4 bits; the unswizzled 3-bit rows,
// 48 bytes apart, take adjacent tokens; tests/test_code_words.py).
template <int BITS>
__host__ __device__ inline int TokenOf(int t, int s) {
  return BITS == 3 ? 2 * t + s : (t & 1) + 4 * (t >> 1) + 2 * s;
}
// Word of token u of a k-step in a column of P: t + 4s for u = TokenOf(t, s), where lane (g, t) reads
// its B registers (the softmax lane of token u writes it).
template <int BITS>
__host__ __device__ inline int PWord(int u) {
  return BITS == 3 ? (u >> 1) + 4 * (u & 1) : (u & 1) + 2 * (u >> 2) + 4 * (u >> 1 & 1);
}

template <int R, int BITS>
__global__ void __launch_bounds__(kTokens, R <= 4 ? 4 : 2) AttentionWordsKernel(AttnArgs a) {
  using L = WordsLayout<R, BITS>;
  using W = WordRow<BITS>;
  using S = ScoreShape<R>;
  constexpr int NT = S::kTiles;
  __shared__ __align__(256) unsigned char ktab[KeyCodebook<BITS>::kBytes];
  __shared__ __align__(256) unsigned char vtab[ValueCodebook<BITS>::kBytes];
  extern __shared__ __align__(16) float smem[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
  const int p = blockIdx.y, r0 = blockIdx.z * R;
  unsigned char* region = reinterpret_cast<unsigned char*>(smem) + warp * L::kWarpBytes;
  float* sc = reinterpret_cast<float*>(region);  // this tile's score columns
  unsigned* pb = reinterpret_cast<unsigned*>(region + S::kBytes);  // 4 k-steps of P
  unsigned char* kt = reinterpret_cast<unsigned char*>(pb + 4 * L::kPStep);
  unsigned char* vt = kt + L::kCodeBytes;
  float* red = reinterpret_cast<float*>(region);  // after the loop: kCols × kRedStride

  const BlockTokens<R> span(a, p, r0);
  const auto stage = [&](long long tok0, bool values) {  // this warp's 32 rows of the tile at tok0
    const long long first = tok0 + 32 * warp;
    const unsigned char* codes = (values ? a.vc : a.kc) + ((long long)p * a.T + first) * W::kStride;
    StageWordRowsAsync<BITS>(codes, span.Valid(first, 32), values ? vt : kt, lane);
  };
  stage(span.begin, false);
  stage(span.begin, true);

  const int ek = KeyCodebook<BITS>::Build(a.kcen, ktab), ec = ValueCodebook<BITS>::Build(a.vcen, vtab);
  for (int i = lane; i < 4 * L::kPStep; i += 32) pb[i] = 0u;  // padding columns stay zero
  GridDependencyWait();  // the rotated queries come from the kernel before
  const QueryOperands<R> q(a.qrot + ((long long)p * a.rows + r0) * kWordN, a.rows - r0, ek);
  __syncthreads();  // the tables
  const KeyCodebook<BITS> kcen(ktab);
  const ValueCodebook<BITS> vcen(vtab);

  // Value rows of this thread: token TokenOf(t, s) of each k-step (k-slot s), index groups g and g + 8.
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

    ScoreColumns<R, BITS>(kt, kcen, q, sc);
    __syncwarp();
    stage(tok0 + kTokens, false);

    // Online softmax, a lane per token: probabilities × ‖v‖ split, each half twice in its B word.
    const int evn = max(ev, WarpMax(SplitExponent(vn)));
    const float vscale = vn * Pow2(15 - evn), drift = evn - ev > 100 ? 0.0f : Pow2(ev - evn);
    bool moved = evn != ev;
    ev = evn;
    float alpha[R];
    unsigned* pw = pb + lane / 8 * L::kPStep + PWord<BITS>(lane % 8);  // column n at 12n
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const bool seen = lane < valid && first + lane < span.lim[r];
      const float x = seen ? (sc[r * S::kStride + lane] + sc[(R + r) * S::kStride + lane]) * kn * q.unit[r] : -INFINITY;
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
      CodeWindow<BITS, 1, PairLoad::kAdjacent> ix[2][2];  // [k-slot][index group g, g + 8]
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const int u = 8 * ks + TokenOf<BITS>(t, k);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const unsigned v = win[h]([&](int c) {
            return *reinterpret_cast<const unsigned*>(vt + u * W::kStride + W::WordOffset(u, c));
          });
          ix[k][h] = CodeWindow<BITS, 1, PairLoad::kAdjacent>(&v, vcen);
        }
      }
#pragma unroll
      for (int mt = 0; mt < 8; ++mt) {
        const uint2 y0 = ix[0][mt / 4].Pair(vcen, mt % 4), y1 = ix[1][mt / 4].Pair(vcen, mt % 4);
        const unsigned e[4] = {y0.x, y0.y, y1.x, y1.y};
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
        red[(8 * nt + 2 * t + (i & 1)) * L::kRedStride + 64 * (mt / 4) + 8 * g + 2 * (mt % 4) + (i >> 1)] =
            acc[mt][nt][i];
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
