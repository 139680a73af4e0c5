// encode on CUDA: one thread per vector, one pass: norm → normalise → rotate → quantize → pack (+ the
// QJL sketch). Two kernels: EncodeRowsKernel for the fast shapes (everything compile-time, a warp per
// 32-row tile, a table lookup for the codebook index) and EncodeKernel for every other shape and QJL
// (run-time sizes, block-wide staging through shared memory).
#include "quant_table.cuh"
#include "warp_rows.cuh"

namespace rotorjax {
namespace cuda {
namespace {

struct EncodeArgs {
  const void* x;
  int dtype;
  long long rows;
  int dim, n, kind, bits;
  const float* boundaries;
  const float* centroids;
  const float* s;  // QJL matrix (m, n), null without QJL
  int m;
  unsigned char* codes;
  float* norms;
  unsigned char* qjl_bits;
  float* qjl_norms;
  const QuantTable* table;  // fast path: the codebook lookup table
};

// ---- fast path -----------------------------------------------------------------------------------

// One block of kCells threads, one per cell (quant_table.cuh).
__global__ void PrepareQuantTableKernel(const float* bnd, int count, QuantTable* table) {
  const QuantCell cell = QuantCellOf(threadIdx.x, bnd, count);
  table->base4[threadIdx.x] = (unsigned char)(4 * cell.base);
  const int crowded = __syncthreads_or(cell.inside > 1);
  if (threadIdx.x == 0) table->ok = !crowded;
}

// 4 × the index of y, from the byte table at `cells` (a 256-byte aligned shared address) and the
// boundary table at `bounds` (quant_table.cuh). The load of boundary[base] adds the byte offset 4·base
// to `bounds` for free.
__device__ __forceinline__ unsigned int TableIndex4(float y, unsigned cells, unsigned bounds) {
  unsigned index4;
  asm("ld.shared.u8 %0, [%1];" : "=r"(index4) : "r"(QuantCellAddress(y, cells)));
  float boundary;
  asm("ld.shared.f32 %0, [%1];" : "=f"(boundary) : "r"(bounds + index4));
  asm("{ .reg .pred p; setp.lt.f32 p, %1, %2; @p add.u32 %0, %0, 4; }" : "+r"(index4) : "f"(boundary), "f"(y));
  return index4;
}

// One lane's row: the staged input at `row` → its packed codes over the same place, and its norm.
// The vector, indices and packed words stay in registers; the normalisation rides on the rotation's
// Walsh–Hadamard scaling.
template <int KIND, int N, int BITS, typename E>
__device__ __forceinline__ void EncodeRow(uint4* row, const float* mats, unsigned cells, const float* bounds, bool table,
                                          float* norm_out) {
  float v[N];
  RowToFloats<E>(row, v);
  float part[4] = {};  // four partial sums: a shorter dependency chain
#pragma unroll
  for (int c = 0; c < N; ++c) part[c % 4] += v[c] * v[c];
  const float norm = sqrtf((part[0] + part[1]) + (part[2] + part[3]));
  FastRotation<KIND, N, false>::Apply(v, mats, 1.0f / (norm > 0.0f ? norm : 1.0f));
  unsigned int words[N * BITS / 32] = {};
  if (table) {
    const unsigned at = unsigned(__cvta_generic_to_shared(bounds));
#pragma unroll
    for (int c = 0; c < N; ++c) PutIndex4(words, c, BITS, TableIndex4(v[c], cells, at));
  } else {
#pragma unroll
    for (int c = 0; c < N; ++c) rj_word_put(words, c, BITS, unsigned(rj_codebook_index(v[c], bounds, BITS)));
  }
  WordsToRow(words, row);
  *norm_out = norm;
}

// Fast shapes (rotated width N = dim, BITS ≤ 4, no QJL) from input dtype E: a warp per 32-row tile
// (warp_rows.cuh).
template <int KIND, int N, int BITS, typename E>
__global__ void __launch_bounds__(kFastWarps * kWarpRows, 3) EncodeRowsKernel(EncodeArgs a) {
  constexpr int kIn = N * int(sizeof(typename E::S)) / 16, kStride = ChunkStride(kIn), kWords = N * BITS / 32;
  extern __shared__ uint4 slices[];
  __shared__ __align__(256) unsigned char cells[kCells];  // 256-byte aligned for TableIndex4's byte permute
  __shared__ float bounds[kBounds];
  __shared__ int ok;
  __shared__ __align__(16) float mats[FastRotation<KIND, N, false>::kShared];
  FastRotation<KIND, N, false>::Copy(mats);
  for (int i = threadIdx.x; i < kCells; i += blockDim.x) cells[i] = a.table->base4[i];
  for (int i = threadIdx.x; i < kBounds; i += blockDim.x) bounds[i] = i < (1 << BITS) - 1 ? a.boundaries[i] : INFINITY;
  if (threadIdx.x == 0) ok = a.table->ok;
  __syncthreads();

  const int lane = threadIdx.x % 32;
  uint4* slice = slices + threadIdx.x / 32 * kWarpRows * kStride;
  // The table is in shared memory before the tiles are requested (no prologue): requesting the tiles
  // first measured 6 % slower in float32 (docs/cuda_notes.md, session 3).
  WithWarpTile<kIn>(static_cast<const uint4*>(a.x), a.rows, slice, [] {}, [&](long long tile, int valid) {
    if (lane < valid) {
      EncodeRow<KIND, N, BITS, E>(slice + lane * kStride, mats, unsigned(__cvta_generic_to_shared(cells)), bounds, ok,
                                  a.norms + tile * kWarpRows + lane);
    }
    WarpStoreRows<kWords / 4, kStride>(slice, valid, reinterpret_cast<uint4*>(a.codes) + tile * kWarpRows * (kWords / 4));
  });
}

template <int KIND, int N, int BITS>
ffi::Error LaunchEncodeRows(cudaStream_t stream, EncodeArgs a, StreamScratch& scratch) {
  void* table = nullptr;
  if (ffi::Error err = scratch.Allocate(sizeof(QuantTable), &table); err.failure()) return err;
  PrepareQuantTableKernel<<<1, kCells, 0, stream>>>(a.boundaries, (1 << BITS) - 1, static_cast<QuantTable*>(table));
  if (ffi::Error err = LaunchError("preparing the codebook table"); err.failure()) return err;
  a.table = static_cast<const QuantTable*>(table);
  return WithDtype(a.dtype, [&](auto e) {
    using E = decltype(e);
    return LaunchFast(EncodeRowsKernel<KIND, N, BITS, E>, a.rows, N * int(sizeof(typename E::S)) / 16, stream, a, "encode");
  });
}

// ---- generic path ----------------------------------------------------------------------------------

// Any kind, width and bits, with or without QJL; sizes at run time (the vector in local memory).
template <bool QJL>
__global__ void __launch_bounds__(128) EncodeKernel(EncodeArgs a) {
  constexpr int kCap = kMaxN;
  const int kind = a.kind, n = a.n, bits = a.bits;
  const int dim = a.dim, nbytes = rj_packed_size(n, bits);
  const int xs = FloatStride(dim), cs = ByteStride(nbytes);
  extern __shared__ __align__(16) float smem[];
  float* bnd = smem;
  float* cen = bnd + 256;
  float* xt = cen + 256;
  unsigned char* ct = reinterpret_cast<unsigned char*>(xt + blockDim.x * xs);

  const long long row0 = (long long)blockIdx.x * blockDim.x;
  const int valid = int(min((long long)blockDim.x, a.rows - row0));
  for (int i = threadIdx.x; i < (1 << bits); i += blockDim.x) {
    cen[i] = a.centroids[i];
    if (i + 1 < (1 << bits)) bnd[i] = a.boundaries[i];
  }
  WithDtype(a.dtype, [&](auto e) {
    using E = decltype(e);
    StageIn<E>(static_cast<const typename E::S*>(a.x) + row0 * dim, (long long)valid * dim, dim, xt, xs);
  });
  __syncthreads();

  const int t = threadIdx.x;
  if (t < valid) {
    float v[kCap];
#pragma unroll
    for (int c = 0; c < n; ++c) v[c] = c < dim ? xt[t * xs + c] : 0.0f;
    float norm = 0.0f;
#pragma unroll
    for (int c = 0; c < dim; ++c) norm += v[c] * v[c];
    norm = sqrtf(norm);
    const float inv = 1.0f / (norm > 0.0f ? norm : 1.0f);  // one division; ≤ 1 ulp from x / ‖x‖
#pragma unroll
    for (int c = 0; c < dim; ++c) v[c] *= inv;
    rj_rotate(kind, v, n, 1, c_params, 0);
    int idx[kCap];
#pragma unroll
    for (int c = 0; c < n; ++c) idx[c] = rj_codebook_index(v[c], bnd, bits);
    unsigned char packed[kCap];
    rj_pack(idx, n, 1, bits, packed);
    unsigned char* row = ct + t * cs;
#pragma unroll
    for (int k = 0; k + 4 <= nbytes; k += 4)  // whole words (rows are word-aligned), then the tail
      *reinterpret_cast<unsigned int*>(row + k) =
          packed[k] | packed[k + 1] << 8 | packed[k + 2] << 16 | (unsigned int)packed[k + 3] << 24;
    for (int k = nbytes & ~3; k < nbytes; ++k) row[k] = packed[k];
    a.norms[row0 + t] = norm;
    if (QJL) {
      float r[kCap], proj[kMaxN], gamma;
      int sketch[kMaxN];
      rj_qjl_sketch(v, idx, n, 1, cen, a.s, a.m, r, proj, sketch, &gamma);
      const int qbytes = rj_packed_size(a.m, 1);
      rj_pack(sketch, a.m, 1, 1, packed);
      for (int k = 0; k < qbytes; ++k) a.qjl_bits[(row0 + t) * qbytes + k] = packed[k];
      a.qjl_norms[row0 + t] = gamma;
    }
  }
  __syncthreads();
  StageOut<U8>(ct, cs, (long long)valid * nbytes, nbytes, a.codes + row0 * nbytes);
}

template <bool QJL>
ffi::Error LaunchEncode(cudaStream_t stream, const EncodeArgs& a) {
  const int threads = RowsPerBlock(a.dim);
  const size_t smem = 512 * sizeof(float) + size_t(threads) * FloatStride(a.dim) * sizeof(float) +
                      size_t(threads) * ByteStride(rj_packed_size(a.n, a.bits));
  const dim3 grid(unsigned((a.rows + threads - 1) / threads));
  return Launch(EncodeKernel<QJL>, grid, threads, smem, stream, a, "encode");
}

ffi::Error EncodeImpl(cudaStream_t stream, ffi::AnyBuffer x,
                      ffi::Buffer<ffi::F32> params, ffi::Buffer<ffi::F32> boundaries, ffi::Buffer<ffi::F32> centroids,
                      ffi::RemainingArgs qjl_args, ffi::Result<ffi::Buffer<ffi::U8>> codes,
                      ffi::Result<ffi::Buffer<ffi::F32>> norms, ffi::RemainingRets qjl_rets, int64_t kind,
                      int64_t dim, int64_t bits) {
  StreamScratch scratch(stream);
  RotationShape rot;
  if (ffi::Error err = CheckRotation(kind, dim, params.element_count(), &rot); err.failure()) return err;
  if (ffi::Error err = CheckBits(bits); err.failure()) return err;
  const int64_t levels = int64_t(1) << bits;
  if (int64_t(centroids.element_count()) != levels || int64_t(boundaries.element_count()) != levels - 1)
    return Invalid("encode: a " + std::to_string(bits) + "-bit codebook has " + std::to_string(levels) +
                   " centroids and " + std::to_string(levels - 1) + " boundaries");
  if (!IsFloat(x.element_type())) return Invalid("encode: input dtype must be float32, bfloat16 or float16");
  const Shape2D in = Flatten(x.dimensions());
  if (x.dimensions().size() == 0 || in.cols != rot.dim)
    return Invalid("encode: input must have shape (..., " + std::to_string(rot.dim) + ")");
  const int nbytes = rj_packed_size(rot.n, int(bits));
  const Shape2D out = Flatten(codes->dimensions());
  if (out.cols != nbytes || out.rows != in.rows || int64_t(norms->element_count()) != in.rows)
    return Invalid("encode: outputs must be codes (..., " + std::to_string(nbytes) + ") and norms (...)");
  if (qjl_args.size() > 1 || qjl_rets.size() != 2 * qjl_args.size())
    return Invalid("encode: QJL takes one extra input (the matrix) and two extra outputs");

  EncodeArgs a{x.untyped_data(), DtypeOf(x.element_type()), in.rows, rot.dim, rot.n, rot.kind, int(bits),
               boundaries.typed_data(), centroids.typed_data(), nullptr, 0, codes->typed_data(),
               norms->typed_data(), nullptr, nullptr, nullptr};
  if (qjl_args.size() == 1) {
    const ffi::AnyBuffer smat = qjl_args.get<ffi::AnyBuffer>(0).value();
    if (ffi::Error err = CheckQjlMatrix(smat, rot.n, &a.m); err.failure()) return err;
    if (a.m > kMaxN) return Invalid("encode: CUDA kernels take QJL sketches of up to " + std::to_string(kMaxN) + " bits");
    auto bits_out = qjl_rets.get<ffi::AnyBuffer>(0).value();
    auto gamma_out = qjl_rets.get<ffi::AnyBuffer>(1).value();
    if (bits_out->element_type() != ffi::DataType::U8 ||
        int64_t(bits_out->element_count()) != in.rows * rj_packed_size(a.m, 1) ||
        gamma_out->element_type() != ffi::DataType::F32 || int64_t(gamma_out->element_count()) != in.rows)
      return Invalid("encode: QJL outputs must be bits u8 (..., " + std::to_string(rj_packed_size(a.m, 1)) +
                     ") and residual norms f32 (...)");
    a.s = static_cast<const float*>(smat.untyped_data());
    a.qjl_bits = static_cast<unsigned char*>(bits_out->untyped_data());
    a.qjl_norms = static_cast<float*>(gamma_out->untyped_data());
  }
  if (in.rows == 0) return ffi::Error::Success();
  void* buf = nullptr;
  if (ffi::Error err = scratch.Allocate(RotationScratchBytes(rot), &buf); err.failure()) return err;
  if (ffi::Error err = SetRotation(stream, rot, params.typed_data(), static_cast<float*>(buf)); err.failure())
    return err;
  if (a.s) return LaunchEncode<true>(stream, a);
  if (Aligned16(a.x) && Aligned16(a.codes)) {
#define RJ_FAST(K, N, B) \
    if (rot.kind == K && rot.n == N && rot.dim == N && bits == B) return LaunchEncodeRows<K, N, B>(stream, a, scratch);
    RJ_CUDA_FAST_SHAPES(RJ_FAST)
#undef RJ_FAST
  }
  return LaunchEncode<false>(stream, a);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(Encode, EncodeImpl, bindings::Encode(CudaBind()));

}  // namespace cuda
}  // namespace rotorjax
