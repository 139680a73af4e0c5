// attention_decode on CUDA: softmax(q·Kᵀ/√d)·V for S new query tokens per sequence against a cache
// whose keys and values are both encoded (own rotation and bits each), grouped-query (G = Hq / Hkv
// query heads per KV head), with a length per sequence. New token s of S sits at cache position
// length − S + s and sees positions [0, length − S + s].
//
// 1. A warp per query (warp_rotate.cuh) rotates it once by the keys' rotation, scaled by 1/√dim.
// 2. AttentionKernel (flash-decoding): block (split, b·Hkv + h, row chunk) streams 128-token tiles of
//    its split: one thread per token scores R query rows from the K codes; a warp per row updates the
//    running max and sum; then a thread per (8 value coordinates, token lane) accumulates the
//    probabilities times the V centroids, in the values' rotated domain. Writes (max, sum, sum·v).
//    Where n = 128, K and V bits are equal (2, 3 or 4) and the codes 16-byte aligned,
//    AttentionWordsKernel (attention_words.cuh) does this on the tensor cores instead, a partial per warp.
// 3. MergeRotateKernel merges the splits of each query row (a warp per row, a lane per coordinate),
//    divides, and un-rotates once by the values' rotation into the output dtype.
#include "attention_args.cuh"
#include "attention_words.cuh"
#include "code_dot.cuh"
#include "warp_rotate.cuh"

namespace rotorjax {
namespace cuda {
namespace {

template <int R, int KB, int VB>
__global__ void __launch_bounds__(kTokens) AttentionKernel(AttnArgs a) {
  const int kbits = KB > 0 ? KB : a.kbits, vbits = VB > 0 ? VB : a.vbits;
  const int nk = a.nk, nv = a.nv;
  const int nkb = rj_packed_size(nk, kbits), nvb = rj_packed_size(nv, vbits);
  const int qs = QueryStride(nk), csk = CodeTileStride(nk, kbits), csv = CodeTileStride(nv, vbits);
  const int groups = (nv + 7) / 8, lanes = kTokens / groups;  // value coordinate groups × token lanes
  extern __shared__ __align__(16) float smem[];
  float* kcen = smem;
  float* vcen = smem + 256;
  float* q = smem + 512;                // R × qs
  float* prob = q + R * qs;             // R × kTokens: scores, then probabilities × ‖v‖
  float* vnorm = prob + R * kTokens;    // kTokens
  float* stat = vnorm + kTokens;        // R × 3: running max, running sum, this tile's rescale
  float* work = stat + 4 * R;           // K and V byte tiles; after the last tile, the lane reduction
  unsigned char* kt = reinterpret_cast<unsigned char*>(work);
  unsigned char* vt = kt + kTokens * csk;

  const int tid = threadIdx.x, p = blockIdx.y, r0 = blockIdx.z * R;
  const BlockTokens<R> span(a, p, r0);
  const long long begin = span.begin, end = span.end;
  const auto tile_tokens = [&](long long tok) { return span.Valid(tok, kTokens); };
  // Stages the K (V) codes of the tile at tok into kt (vt).
  const auto stage = [&](long long tok, bool values) {
    const int valid = tile_tokens(tok);
    if (!valid) return;
    const long long row0 = (long long)p * a.T + tok;
    const int nb = values ? nvb : nkb, cs = values ? csv : csk, n = values ? nv : nk, bits = values ? vbits : kbits;
    unsigned char* tile = values ? vt : kt;
    StageIn<U8>((values ? a.vc : a.kc) + row0 * nb, (long long)valid * nb, nb, tile, cs);
    ZeroPad(tile, valid, cs, nb, GroupedBytes(n, bits));
  };
  stage(begin, false);
  stage(begin, true);
  for (int i = tid; i < 1 << kbits; i += kTokens) kcen[i] = a.kcen[i];
  for (int i = tid; i < 1 << vbits; i += kTokens) vcen[i] = a.vcen[i];
  GridDependencyWait();  // the rotated queries come from the kernel before
  for (int i = tid; i < R * qs; i += kTokens) {
    const int r = i / qs;
    q[i] = r0 + r < a.rows ? a.qrot[((long long)p * a.rows + r0 + r) * qs + i % qs] : 0.0f;
  }
  if (tid < R) {
    stat[3 * tid] = -INFINITY;
    stat[3 * tid + 1] = 0.0f;
  }
  // Value thread (group cg, token lane tl): a warp takes consecutive tokens of a few groups, so its
  // code reads fall in distinct banks (WordRow's layout) and its probability reads are adjacent.
  const int cg = tid / lanes, tl = tid % lanes;
  const bool vthread = cg < groups;
  float acc[R][8] = {};

  // Each tile's K codes are staged once its keys are scored, its V codes once the tile before's values
  // are summed; the norms load into registers at the start of the tile.
  for (long long tok0 = begin; tok0 < end; tok0 += kTokens) {
    const int valid = tile_tokens(tok0);
    const long long row0 = (long long)p * a.T + tok0;
    const float kn = tid < valid ? a.kn[row0 + tid] : 0.0f, vn = tid < valid ? a.vn[row0 + tid] : 0.0f;
    __syncthreads();

    // Scores of this thread's token for the R rows (−∞ where masked or past the tile).
    {
      float s[1][R] = {};
      if (tid < valid) CodeDot<R, KB>(kt + tid * csk, nk, kbits, kcen, q, qs, s[0]);
#pragma unroll
      for (int r = 0; r < R; ++r)
        prob[r * kTokens + tid] = tid < valid && tok0 + tid < span.lim[r] ? s[0][r] * kn : -INFINITY;
      vnorm[tid] = vn;
    }
    __syncthreads();
    stage(tok0 + kTokens, false);

    // Online softmax: warp w takes rows w, w + 4, ...
    for (int r = tid / 32; r < R; r += kTokens / 32) {
      const int lane = tid % 32;
      float x[kTokens / 32], mx = -INFINITY;
#pragma unroll
      for (int i = 0; i < kTokens / 32; ++i) {
        x[i] = prob[r * kTokens + lane + 32 * i];
        mx = fmaxf(mx, x[i]);
      }
      mx = WarpMax(mx);
      const float m_old = stat[3 * r], m_new = fmaxf(m_old, mx);
      const bool none = m_new == -INFINITY;  // nothing visible yet: keep zeros, no NaN from −∞ − −∞
      float sum = 0.0f;
#pragma unroll
      for (int i = 0; i < kTokens / 32; ++i) {
        const float e = none ? 0.0f : __expf(x[i] - m_new);
        sum += e;
        prob[r * kTokens + lane + 32 * i] = e * vnorm[lane + 32 * i];
      }
      sum = WarpSum(sum);
      __syncwarp();
      if (lane == 0) {
        const float alpha = none ? 1.0f : __expf(m_old - m_new);
        stat[3 * r] = m_new;
        stat[3 * r + 1] = stat[3 * r + 1] * alpha + sum;
        stat[3 * r + 2] = alpha;
      }
    }
    __syncthreads();

    // Σ p · ‖v‖ · c_V[idx] in the values' rotated domain.
    if (vthread) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float alpha = stat[3 * r + 2];
        if (alpha != 1.0f)  // the running max moved (the same for the whole block: no divergence)
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[r][i] *= alpha;
      }
      for (int t = tl; t < valid; t += lanes) {
        int idx[8];
        float y[8];
        rj_unpack(vt + t * csv + cg * vbits, 8, 1, vbits, idx);
        rj_dequantize(idx, 8, vcen, y);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const float pr = prob[r * kTokens + t];
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[r][i] += pr * y[i];
        }
      }
    }
    __syncthreads();
    stage(tok0 + kTokens, true);
  }

  // Reduce the token lanes (the byte tiles are free now) and write this split's partial sums.
  float* red = work;  // lanes × R × groups·8
  const int gw = groups * 8;
  if (vthread)
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int i = 0; i < 8; ++i) red[(tl * R + r) * gw + cg * 8 + i] = acc[r][i];
  __syncthreads();
  float* out = a.part + (((long long)p * a.chunks + blockIdx.z) * a.splits + blockIdx.x) * R * (nv + 2);
  for (int i = tid; i < R * nv; i += kTokens) {
    const int r = i / nv, c = i % nv;
    float s = 0.0f;
    for (int l = 0; l < lanes; ++l) s += red[(l * R + r) * gw + c];
    out[r * (nv + 2) + c] = s;
  }
  if (tid < R) {
    out[tid * (nv + 2) + nv] = stat[3 * tid];
    out[tid * (nv + 2) + nv + 1] = stat[3 * tid + 1];
  }
}

struct MergeArgs {
  const float* part;
  long long total_rows;  // P · rows
  int rows, R, chunks, splits, nv, dim, kind, out_dtype;
  const float* raw;  // the values' raw rotation parameters
  void* out;         // (P · rows, dim)
};

// A warp per query row: merge the splits' partial sums (a lane per coordinate), divide by the sum and
// un-rotate by the values' rotation. Row p·rows + g·S + s is row (b, h·G + g, s) of the output.
__global__ void __launch_bounds__(kRotateWarps * 32) MergeRotateKernel(MergeArgs a) {
  extern __shared__ __align__(16) float vecs[];  // kRotateWarps × nv
  const int lane = threadIdx.x % 32;
  const long long row = (long long)blockIdx.x * kRotateWarps + threadIdx.x / 32;
  if (row >= a.total_rows) return;
  const long long p = row / a.rows;
  const int rg = int(row % a.rows), chunk = rg / a.R, r = rg % a.R;
  const float* base = a.part + ((p * a.chunks + chunk) * a.splits * a.R + r) * (a.nv + 2);
  const long long step = (long long)a.R * (a.nv + 2);  // next split, same row
  float* v = vecs + threadIdx.x / 32 * a.nv;
  float m = -INFINITY, l = 0.0f;
  for (int s = 0; s < a.splits; ++s) m = fmaxf(m, base[s * step + a.nv]);
  for (int c = lane; c < a.nv; c += 32) v[c] = 0.0f;
  if (m != -INFINITY) {
    for (int s = 0; s < a.splits; ++s) {
      const float w = __expf(base[s * step + a.nv] - m);
      l += w * base[s * step + a.nv + 1];
      for (int c = lane; c < a.nv; c += 32) v[c] += w * base[s * step + c];
    }
  }
  __syncwarp();
  WarpRotate(a.kind, v, a.nv, a.raw, true, l > 0.0f ? 1.0f / l : 0.0f);  // a row that sees no token: zeros
  WithDtype(a.out_dtype, [&](auto e) {
    using E = decltype(e);
    typename E::S* y = static_cast<typename E::S*>(a.out) + row * a.dim;
    for (int c = lane; c < a.dim; c += 32) y[c] = E::Store(v[c]);
  });
}

// The attention kernel instantiation for a call, its dynamic shared memory and partials per block.
struct AttnPlan {
  void (*kernel)(AttnArgs);
  size_t smem;
  int partials;
};

template <int R, int KB, int VB>
AttnPlan PlanAs(const AttnArgs& a) {
  const int csk = CodeTileStride(a.nk, a.kbits), csv = CodeTileStride(a.nv, a.vbits);
  const int groups = (a.nv + 7) / 8, lanes = kTokens / groups;
  const size_t tiles = size_t(kTokens) * (csk + csv), red = size_t(lanes) * R * groups * 8 * sizeof(float);
  const size_t smem = (512 + R * QueryStride(a.nk) + R * kTokens + kTokens + 4 * R) * sizeof(float) +
                      (tiles > red ? tiles : red);
  return {AttentionKernel<R, KB, VB>, smem, 1};
}

template <int R, int BITS>
AttnPlan PlanWords() {
  return {AttentionWordsKernel<R, BITS>, size_t(WordsLayout<R, BITS>::kSmem), kAttnWarps};
}

template <int R>
AttnPlan PlanBits(const AttnArgs& a, bool words) {
  if (words) {
    if (a.kbits == 4) return PlanWords<R, 4>();
    if (a.kbits == 3) return PlanWords<R, 3>();
    return PlanWords<R, 2>();
  }
  if (a.kbits == 4 && a.vbits == 4) return PlanAs<R, 4, 4>(a);
  if (a.kbits == 3 && a.vbits == 3) return PlanAs<R, 3, 3>(a);
  return PlanAs<R, 0, 0>(a);
}

ffi::Error AttentionImpl(cudaStream_t stream, ffi::AnyBuffer q,
                         ffi::Buffer<ffi::U8> k_codes, ffi::Buffer<ffi::F32> k_norms, ffi::Buffer<ffi::F32> k_params,
                         ffi::Buffer<ffi::F32> k_centroids, ffi::Buffer<ffi::U8> v_codes, ffi::Buffer<ffi::F32> v_norms,
                         ffi::Buffer<ffi::F32> v_params, ffi::Buffer<ffi::F32> v_centroids,
                         ffi::Buffer<ffi::S32> lengths, ffi::Result<ffi::AnyBuffer> out, int64_t k_kind,
                         int64_t v_kind, int64_t dim, int64_t k_bits, int64_t v_bits) {
  StreamScratch scratch(stream);
  RotationShape kr, vr;
  if (ffi::Error err = CheckRotation(k_kind, dim, k_params.element_count(), &kr); err.failure()) return err;
  if (ffi::Error err = CheckRotation(v_kind, dim, v_params.element_count(), &vr); err.failure()) return err;
  if (ffi::Error err = CheckBits(k_bits); err.failure()) return err;
  if (ffi::Error err = CheckBits(v_bits); err.failure()) return err;
  if (int64_t(k_centroids.element_count()) != (int64_t(1) << k_bits) ||
      int64_t(v_centroids.element_count()) != (int64_t(1) << v_bits))
    return Invalid("attention_decode: codebooks must have 2^bits centroids");
  if (!IsFloat(q.element_type())) return Invalid("attention_decode: query dtype must be float32, bfloat16 or float16");
  auto qd = q.dimensions(), kd = k_codes.dimensions(), vd = v_codes.dimensions();
  if (qd.size() != 4 || qd[3] != dim)
    return Invalid("attention_decode: queries must have shape (B, Hq, S, " + std::to_string(dim) + ")");
  const int64_t B = qd[0], Hq = qd[1], S = qd[2];
  if (kd.size() != 4 || kd[0] != B || kd[3] != rj_packed_size(kr.n, int(k_bits)) || vd.size() != 4 ||
      vd[0] != B || vd[1] != kd[1] || vd[2] != kd[2] || vd[3] != rj_packed_size(vr.n, int(v_bits)))
    return Invalid("attention_decode: K and V codes must have shape (B, Hkv, T, bytes) with the same B, Hkv, T");
  const int64_t Hkv = kd[1], T = kd[2];
  if (Hkv == 0 || Hq % Hkv) return Invalid("attention_decode: query heads must be a multiple of KV heads");
  if (int64_t(k_norms.element_count()) != B * Hkv * T || int64_t(v_norms.element_count()) != B * Hkv * T)
    return Invalid("attention_decode: K and V norms must have shape (B, Hkv, T)");
  if (int64_t(lengths.element_count()) != B) return Invalid("attention_decode: lengths must have shape (B,)");
  auto od = out->dimensions();
  if (od.size() != 4 || od[0] != B || od[1] != Hq || od[2] != S || od[3] != dim ||
      out->element_type() != q.element_type())
    return Invalid("attention_decode: output must have the queries' shape and dtype");
  const long long P = B * Hkv, rows = (Hq / Hkv) * S;
  if (P * rows == 0) return ffi::Error::Success();

  const int R = RowsPerChunk(int(rows < 8 ? rows : 8));
  const int chunks = int((rows + R - 1) / R);
  AttnArgs a{nullptr, k_codes.typed_data(), k_norms.typed_data(), v_codes.typed_data(), v_norms.typed_data(),
             lengths.typed_data(), k_centroids.typed_data(), v_centroids.typed_data(), T, int(Hkv), int(rows),
             int(S), kr.n, vr.n, int(k_bits), int(v_bits), chunks, 1, 1, nullptr};
  // Word-wise: whole 16-byte chunks per row, so every staged tile starts 16-byte aligned with the base.
  const bool words = WordShape(kr.n, int(k_bits)) && WordShape(vr.n, int(v_bits)) && k_bits == v_bits &&
                     reinterpret_cast<uintptr_t>(a.kc) % 16 == 0 && reinterpret_cast<uintptr_t>(a.vc) % 16 == 0;
  const AttnPlan plan = R == 1 ? PlanBits<1>(a, words)
                        : R == 2 ? PlanBits<2>(a, words)
                        : R == 4 ? PlanBits<4>(a, words)
                                 : PlanBits<8>(a, words);
  long long resident = 0;
  if (ffi::Error err = ResidentBlocks(plan.kernel, kTokens, plan.smem, "attention_decode", &resident); err.failure())
    return err;
  const long long tiles = std::max((long long)(T + kTokens - 1) / kTokens, 1LL);
  ChooseSplits(P * chunks, tiles, resident, &a.splits, &a.tiles_per_split);

  void *qrot = nullptr, *part = nullptr;
  if (ffi::Error err = scratch.Allocate(size_t(P * rows) * QueryStride(kr.n) * sizeof(float), &qrot); err.failure())
    return err;
  const int partials = a.splits * plan.partials;  // per (pair, row chunk)
  if (ffi::Error err = scratch.Allocate(size_t(P) * chunks * partials * R * (vr.n + 2) * sizeof(float), &part);
      err.failure())
    return err;
  a.qrot = static_cast<float*>(qrot);
  a.part = static_cast<float*>(part);

  // Rotated queries in rows of QueryStride(nk) floats (the padding is zero: the output width).
  const WarpRotateArgs ra{{q.untyped_data(), qrot, DtypeOf(q.element_type()), kF32, P * rows, int(dim),
                           QueryStride(kr.n), kr.n, kr.kind, 1.0f / sqrtf(float(dim))},
                          false, k_params.typed_data()};
  if (ffi::Error err = LaunchWarpRotate(stream, ra, "attention_decode: rotating the queries"); err.failure()) return err;

  const dim3 grid(unsigned(a.splits), unsigned(P), unsigned(chunks));
  if (ffi::Error err = LaunchAfter(plan.kernel, grid, kTokens, plan.smem, stream, a, "attention_decode"); err.failure())
    return err;

  const MergeArgs ma{a.part, P * rows, int(rows), R, chunks, partials, vr.n, int(dim), vr.kind,
                     DtypeOf(q.element_type()), v_params.typed_data(), out->untyped_data()};
  return Launch(MergeRotateKernel, dim3(unsigned((P * rows + kRotateWarps - 1) / kRotateWarps)), kRotateWarps * 32,
                size_t(kRotateWarps) * vr.n * sizeof(float), stream, ma, "attention_decode merge");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(AttentionDecode, AttentionImpl,
                              CudaBind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("k_kind")
                                  .Attr<int64_t>("v_kind")
                                  .Attr<int64_t>("dim")
                                  .Attr<int64_t>("k_bits")
                                  .Attr<int64_t>("v_bits"));

}  // namespace cuda
}  // namespace rotorjax
