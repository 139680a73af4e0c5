// What attention_decode's kernels share: their arguments and the tokens a block sees.
#pragma once

#include "cuda_common.cuh"

namespace rotorjax {
namespace cuda {
namespace {

constexpr int kTokens = 128;  // tokens per tile = threads per block

struct AttnArgs {
  const float* qrot;  // (P, rows, QueryStride(nk)): P = B·Hkv (b, h) pairs, rows = G·S
  const unsigned char* kc;
  const float* kn;
  const unsigned char* vc;
  const float* vn;
  const int* lengths;
  const float* kcen;
  const float* vcen;
  long long T;
  int hkv, rows, S, nk, nv, kbits, vbits, chunks, splits, tiles_per_split;
  float* part;  // (P, chunks, splits · partials per block, R, nv + 2): Σ p·v, then max and sum
};

// The tokens of block (split, p, row chunk): row r0 + r sees tokens [0, lim[r]) (0 for rows past the
// end; new token s of S sits at position length − S + s), and the block streams tiles [begin, end).
template <int R>
struct BlockTokens {
  int lim[R];
  long long begin, end;
  __device__ BlockTokens(const AttnArgs& a, int p, int r0) {
    const int b = p / a.hkv;
    int maxlim = 0;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int rg = r0 + r;
      lim[r] = rg < a.rows ? a.lengths[b] - a.S + 1 + rg % a.S : 0;
      lim[r] = lim[r] < 0 ? 0 : (lim[r] > a.T ? int(a.T) : lim[r]);
      maxlim = lim[r] > maxlim ? lim[r] : maxlim;
    }
    begin = (long long)blockIdx.x * a.tiles_per_split * kTokens;
    end = begin + (long long)a.tiles_per_split * kTokens;
    end = end < maxlim ? end : maxlim;
  }
  // Tokens of the `count`-token span at tok that lie before end.
  __device__ int Valid(long long tok, int count) const {
    return int(tok < end ? (end - tok < count ? end - tok : count) : 0);
  }
};

}  // namespace
}  // namespace cuda
}  // namespace rotorjax
