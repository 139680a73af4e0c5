// decode on CUDA: one thread per vector, one pass: unpack → centroids (+ QJL term) → scale by the
// norm → inverse rotation. Two kernels: DecodeRowsKernel for the fast shapes (everything compile-time,
// a warp per 32-row tile) and DecodeKernel for every other shape and QJL (run-time sizes, block-wide
// staging through shared memory).
#include "code_words.cuh"  // IndexAddresses, CentroidTable
#include "split_rows.cuh"

namespace rotorjax {
namespace cuda {
namespace {

struct DecodeArgs {
  const unsigned char* codes;
  const float* norms;
  long long rows;
  int dim, n, kind, bits;
  const float* centroids;
  const float* s;  // QJL matrix (m, n), null without QJL
  int m;
  const unsigned char* qjl_bits;
  const float* gamma;
  void* out;
  int dtype;
};

// A role's output half, over its staged row. In float32, 8 bytes at a time: 16-byte stores need
// aligned register quads, and forming them made ptxas spill ~450 bytes at 96 registers.
template <typename E>
__device__ __forceinline__ void StoreHalf(const float (&v)[64], uint4* row) {
  if constexpr (sizeof(typename E::S) == 4) {
    const unsigned at = unsigned(__cvta_generic_to_shared(row));
#pragma unroll
    for (int k = 0; k < 64; k += 2)
      asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(at + 4 * k), "f"(v[k]), "f"(v[k + 1]) : "memory");
  } else {
    FloatsToRow<E>(v, row);
  }
}

// One role's half of a row (split_rows.cuh): its code words (groups role and 2 + role of the pair's
// staged code row: the swapped layout's coordinates) → its half of the output, over `mine`. The norm
// rides on the Walsh–Hadamard scaling.
template <int ROLE, int BITS, typename E>
__device__ __forceinline__ void DecodeHalf(const uint4* code_row, uint4* mine, float* swap_mine, const float* swap_theirs, const float* cen,
                                           const float* mats, float norm, Exchange x, int pair) {
  unsigned int words[2 * BITS];
  GetWords<BITS>(code_row, ROLE, words);
  GetWords<BITS>(code_row, 2 + ROLE, words + BITS);
  const CentroidTable table(cen);
  const IndexAddresses<BITS, 2 * BITS> ix(words, table.base);
  float v[64];
#pragma unroll
  for (int k = 0; k < 64; ++k) v[k] = table(ix[k]);
  SplitRotorStage<Layout::kSwapped, ROLE, true>::Apply(v, mats + kSplitBlocks * kPaddedBlock, x, pair);
  Stride64(v, 1.0f);
  SwapQuarters<ROLE>(v, swap_mine, swap_theirs, x.lane, pair);
  rj_fwht_butterflies(v, 64, 1);
  const float s = rj_inv_sqrt_pow2(kSplitN) * norm;
#pragma unroll
  for (int k = 0; k < 64; ++k) v[k] *= s;
  SplitRotorStage<Layout::kNatural, ROLE, true>::Apply(v, mats, x, pair);
  StoreHalf<E>(v, mine);
}

// Fast shapes (rotor-mix on 128 coordinates, BITS ≤ 4, no QJL) into output dtype E: a warp pair per
// 32-row tile (split_rows.cuh); each warp stores its half of every row.
template <int BITS, typename E>
__global__ void __launch_bounds__(kFastWarps * kWarpRows, kSplitMinBlocks) DecodeSplitKernel(DecodeArgs a) {
  constexpr int kHalf = kSplitN / 2 * int(sizeof(typename E::S)) / 16, kStride = SplitStride(kHalf);
  extern __shared__ uint4 slices[];
  // ≤ 16 floats in distinct banks (any gather is conflict-free), 256-byte aligned for IndexAddresses.
  __shared__ __align__(256) float cen[1 << BITS];
  __shared__ __align__(16) float mats[2 * kSplitBlocks * kPaddedBlock];
  __shared__ float trade[kFastWarps / 2][kExchangeSlots * kWarpRows];
  const SplitTile st(a.rows);
  const SplitSlices<kStride> sl(slices);
  // The lane's norm, loaded first: it is needed only at the end of the rotation, and a load issued
  // there stalled the lane (ncu: long-scoreboard stalls 1.5 cycles per instruction issued).
  const long long row = st.tile * kWarpRows + st.lane;
  const float norm = row < a.rows ? a.norms[row] : 0.0f;
  if (st.valid) LoadPairRowsAsync<BITS, kStride>(reinterpret_cast<const uint4*>(a.codes) + st.tile * kWarpRows * BITS, st, sl.codes);
  CopyPaddedStages(mats);
  for (int i = threadIdx.x; i < (1 << BITS); i += blockDim.x) cen[i] = a.centroids[i];
  __syncthreads();
  if (!st.valid) return;
  WaitCopies();
  PairSync(st.pair);
  const Exchange x{trade[st.pair], st.lane};
  const int r = st.lane * kStride;
  if (st.role == 0) DecodeHalf<0, BITS, E>(sl.codes + r, sl.mine + r, reinterpret_cast<float*>(sl.mine), reinterpret_cast<const float*>(sl.theirs), cen, mats, norm, x, st.pair);
  else DecodeHalf<1, BITS, E>(sl.codes + r, sl.mine + r, reinterpret_cast<float*>(sl.mine), reinterpret_cast<const float*>(sl.theirs), cen, mats, norm, x, st.pair);
  __syncwarp();
  // The warp's half rows, coalesced: 2 · kHalf chunks per output row.
  uint4* out = static_cast<uint4*>(a.out) + st.tile * kWarpRows * 2 * kHalf + st.role * kHalf;
#pragma unroll
  for (int j = 0; j < kHalf; ++j) {
    const int e = j * 32 + st.lane;
    if (e / kHalf < st.valid) __stcs(out + e / kHalf * 2 * kHalf + e % kHalf, sl.mine[e / kHalf * kStride + e % kHalf]);
  }
}

template <int KIND, int N, int BITS>
ffi::Error LaunchDecodeRows(cudaStream_t stream, const DecodeArgs& a) {
  static_assert(KIND == RJ_KIND_ROTOR_MIX && N == kSplitN, "the fast decode takes rotor-mix on 128 coordinates");
  return WithDtype(a.dtype, [&](auto e) {
    using E = decltype(e);
    constexpr int kHalf = kSplitN / 2 * int(sizeof(typename E::S)) / 16;
    return LaunchSplit(DecodeSplitKernel<BITS, E>, a.rows, SplitStride(kHalf), stream, a, "decode");
  });
}

// Any kind, width and bits, with or without QJL; sizes at run time (the vector in local memory).
template <bool QJL>
__global__ void __launch_bounds__(128) DecodeKernel(DecodeArgs a) {
  constexpr int kCap = kMaxN;
  const int kind = a.kind, n = a.n, bits = a.bits;
  const int dim = a.dim, nbytes = rj_packed_size(n, bits);
  const int os = FloatStride(dim), cs = ByteStride(nbytes);
  extern __shared__ __align__(16) float smem[];
  float* cen = smem;
  float* ot = cen + 256;
  unsigned char* ct = reinterpret_cast<unsigned char*>(ot + blockDim.x * os);

  const long long row0 = (long long)blockIdx.x * blockDim.x;
  const int valid = int(min((long long)blockDim.x, a.rows - row0));
  for (int i = threadIdx.x; i < (1 << bits); i += blockDim.x) cen[i] = a.centroids[i];
  StageIn<U8>(a.codes + row0 * nbytes, (long long)valid * nbytes, nbytes, ct, cs);
  __syncthreads();

  const int t = threadIdx.x;
  if (t < valid) {
    int idx[kCap];
    rj_unpack(ct + t * cs, n, 1, bits, idx);
    float v[kCap];
    rj_dequantize(idx, n, cen, v);
    if (QJL) {
      unsigned char sk_bytes[kMaxN / 8];
      int sketch[kMaxN];
      float signs[kMaxN], proj[kCap];
      const int qbytes = rj_packed_size(a.m, 1);
      for (int k = 0; k < qbytes; ++k) sk_bytes[k] = a.qjl_bits[(row0 + t) * qbytes + k];
      rj_unpack(sk_bytes, a.m, 1, 1, sketch);
      float gamma = a.gamma[row0 + t];
      rj_qjl_correct(v, n, 1, sketch, a.s, a.m, &gamma, signs, proj);
    }
    const float norm = a.norms[row0 + t];
#pragma unroll
    for (int c = 0; c < n; ++c) v[c] *= norm;
    rj_rotate(kind, v, n, 1, c_params, 1);
#pragma unroll
    for (int c = 0; c < dim; ++c) ot[t * os + c] = v[c];
  }
  __syncthreads();
  WithDtype(a.dtype, [&](auto e) {
    using E = decltype(e);
    StageOut<E>(ot, os, (long long)valid * dim, dim, static_cast<typename E::S*>(a.out) + row0 * dim);
  });
}

template <bool QJL>
ffi::Error LaunchDecode(cudaStream_t stream, const DecodeArgs& a) {
  const int threads = RowsPerBlock(a.dim);
  const size_t smem = 256 * sizeof(float) + size_t(threads) * FloatStride(a.dim) * sizeof(float) +
                      size_t(threads) * ByteStride(rj_packed_size(a.n, a.bits));
  const dim3 grid(unsigned((a.rows + threads - 1) / threads));
  return Launch(DecodeKernel<QJL>, grid, threads, smem, stream, a, "decode");
}

ffi::Error DecodeImpl(cudaStream_t stream, ffi::Buffer<ffi::U8> codes,
                      ffi::Buffer<ffi::F32> norms, ffi::Buffer<ffi::F32> params, ffi::Buffer<ffi::F32> centroids,
                      ffi::RemainingArgs qjl_args, ffi::Result<ffi::AnyBuffer> out, int64_t kind, int64_t dim,
                      int64_t bits) {
  StreamScratch scratch(stream);
  RotationShape rot;
  if (ffi::Error err = CheckRotation(kind, dim, params.element_count(), &rot); err.failure()) return err;
  if (ffi::Error err = CheckBits(bits); err.failure()) return err;
  if (int64_t(centroids.element_count()) != (int64_t(1) << bits))
    return Invalid("decode: a " + std::to_string(bits) + "-bit codebook has " + std::to_string(1 << bits) + " centroids");
  int64_t rows = 0;
  if (ffi::Error err = CheckCodes("decode", codes, norms, rot.n, int(bits), &rows); err.failure()) return err;
  QjlCodes q;
  if (ffi::Error err = ParseQjlCodes("decode", qjl_args, rot.n, rows, &q); err.failure()) return err;
  if (q.m > kMaxN) return Invalid("decode: CUDA kernels take QJL sketches of up to " + std::to_string(kMaxN) + " bits");
  const Shape2D o = Flatten(out->dimensions());
  if (o.cols != rot.dim || o.rows != rows)
    return Invalid("decode: output must have shape (..., " + std::to_string(rot.dim) + "), one row per code");
  if (!IsFloat(out->element_type())) return Invalid("decode: output dtype must be float32, bfloat16 or float16");
  if (rows == 0) return ffi::Error::Success();

  const DecodeArgs a{codes.typed_data(), norms.typed_data(), rows, rot.dim, rot.n, rot.kind, int(bits),
                     centroids.typed_data(), q.s, q.m, q.bits, q.gamma, out->untyped_data(),
                     DtypeOf(out->element_type())};
  void* buf = nullptr;
  if (ffi::Error err = scratch.Allocate(RotationScratchBytes(rot), &buf); err.failure()) return err;
  if (ffi::Error err = SetRotation(stream, rot, params.typed_data(), static_cast<float*>(buf)); err.failure())
    return err;
  if (q.s) return LaunchDecode<true>(stream, a);
  if (Aligned16(a.codes) && Aligned16(a.out)) {
#define RJ_FAST(K, N, B) \
    if (rot.kind == K && rot.n == N && rot.dim == N && bits == B) return LaunchDecodeRows<K, N, B>(stream, a);
    RJ_CUDA_FAST_SHAPES(RJ_FAST)
#undef RJ_FAST
  }
  return LaunchDecode<false>(stream, a);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(Decode, DecodeImpl, bindings::Decode(CudaBind()));

}  // namespace cuda
}  // namespace rotorjax
