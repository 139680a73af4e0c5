// decode on CUDA: one thread per vector, one pass: unpack → centroids (+ QJL term) → scale by the
// norm → inverse rotation. Two kernels: DecodeRowsKernel for the fast shapes (everything compile-time,
// a warp per 32-row tile) and DecodeKernel for every other shape and QJL (run-time sizes, block-wide
// staging through shared memory).
#include "code_words.cuh"  // IndexAddresses, CentroidTable
#include "warp_rows.cuh"

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

// Fast shapes (rotated width N = dim, BITS ≤ 4, no QJL) into output dtype E: a warp per 32-row tile
// (warp_rows.cuh), the slice rows wide enough for an output row. A lane reads its packed row as whole
// words and writes its output over it; the norm rides on the inverse rotation's Walsh–Hadamard scaling.
template <int KIND, int N, int BITS, typename E>
__global__ void __launch_bounds__(kFastWarps * kWarpRows, 3) DecodeRowsKernel(DecodeArgs a) {
  constexpr int kIn = N * BITS / 128, kOut = N * int(sizeof(typename E::S)) / 16, kStride = ChunkStride(kOut);
  extern __shared__ uint4 slices[];
  // ≤ 16 floats in distinct banks (any gather is conflict-free), 256-byte aligned for IndexAddresses.
  __shared__ __align__(256) float cen[1 << BITS];
  __shared__ __align__(16) float mats[FastRotation<KIND, N, true>::kShared];
  const auto prologue = [&] {
    FastRotation<KIND, N, true>::Copy(mats);
    for (int i = threadIdx.x; i < (1 << BITS); i += blockDim.x) cen[i] = a.centroids[i];
    __syncthreads();
  };
  const int lane = threadIdx.x % 32;
  uint4* slice = slices + threadIdx.x / 32 * kWarpRows * kStride;
  // The lane's norm, loaded first: it is needed only at the end of the rotation, and a load issued
  // there stalled the lane (ncu: long-scoreboard stalls 1.5 cycles per instruction issued).
  const long long row = ((long long)blockIdx.x * kFastWarps + threadIdx.x / 32) * kWarpRows + lane;
  const float norm = row < a.rows ? a.norms[row] : 0.0f;
  const uint4* codes = reinterpret_cast<const uint4*>(a.codes);
  WithWarpTile<kIn, kStride>(codes, a.rows, slice, prologue, [&](long long tile, int valid) {
    if (lane < valid) {
      unsigned int words[N * BITS / 32];
      RowToWords(slice + lane * kStride, words);
      const CentroidTable table(cen);
      const IndexAddresses<BITS, N * BITS / 32> ix(words, table.base);
      float v[N];
#pragma unroll
      for (int c = 0; c < N; ++c) v[c] = table(ix[c]);
      FastRotation<KIND, N, true>::Apply(v, mats, norm);
      FloatsToRow<E>(v, slice + lane * kStride);
    }
    WarpStoreRows<kOut, kStride>(slice, valid, static_cast<uint4*>(a.out) + tile * kWarpRows * kOut);
  });
}

template <int KIND, int N, int BITS>
ffi::Error LaunchDecodeRows(cudaStream_t stream, const DecodeArgs& a) {
  return WithDtype(a.dtype, [&](auto e) {
    using E = decltype(e);
    return LaunchFast(DecodeRowsKernel<KIND, N, BITS, E>, a.rows, N * int(sizeof(typename E::S)) / 16, stream, a, "decode");
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
