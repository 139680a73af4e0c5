// scores on CUDA: ‖x‖ · ⟨Π q, ŷ⟩ straight from the codes. Queries are rotated once (a warp per
// query, warp_rotate.cuh, into scratch, with QJL also projected once), then a block takes R query rows
// against its tiles of packed rows.
// Two targets: rotorjax_scores, every query against every code (as on CPU), and
// rotorjax_grouped_scores, batch b's queries (B, G, dim) against batch b's codes (B, T).
// Word-wise (n = 128, bits 2/3/4, 16-byte aligned codes): ScoresWordsKernel, on the tensor cores;
// otherwise the generic byte-wise CodeDot, a tile per block, a thread per key.
#include "code_dot.cuh"
#include "code_mma.cuh"
#include "warp_rotate.cuh"

namespace rotorjax {
namespace cuda {
namespace {

constexpr int kKeys = 128;  // threads per block = keys per tile

struct ScoresArgs {
  const float* qrot;   // (B, G, n)
  const float* qproj;  // (B, G, m): S Π q, null without QJL
  const unsigned char* codes;
  const float* norms;
  const unsigned char* qjl_bits;
  const float* gamma;
  const float* centroids;
  long long T;
  int G, n, bits, m;
  int tiles_per_block;  // consecutive key tiles of one (batch, row chunk) (word-wise path)
  float inv_divisor, qjl_scale;  // 1 / divisor: one multiply per score, not a division
  float* out;  // (B, G, T)
};

// QJL correction of one key for R query rows: + γ √(π/2)/m · ⟨S Π q, 2z − 1⟩ (qp: R rows of stride ms).
template <int R>
__device__ __forceinline__ void AddQjl(const ScoresArgs& a, const float* qp, int ms, long long row, float (&s)[R]) {
  const int qbytes = rj_packed_size(a.m, 1);
  float sk[R] = {};
  for (int j = 0; j < qbytes; ++j) {
    int z[8];
    rj_unpack(a.qjl_bits + row * qbytes + j, 8, 1, 1, z);
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int i = 0; i < 8; ++i) sk[r] += qp[r * ms + 8 * j + i] * (2.0f * float(z[i]) - 1.0f);
  }
  const float g = a.gamma[row] * a.qjl_scale;
#pragma unroll
  for (int r = 0; r < R; ++r) s[r] += g * sk[r];
}

// The QJL projections of the block's R query rows into qp (zero past the rows and the sketch).
template <int R>
__device__ void StageQueryProjections(const ScoresArgs& a, long long b, int r0, int ms, float* qp) {
  for (int i = threadIdx.x; i < R * ms; i += blockDim.x) {
    const int r = i / ms, c = i % ms;
    qp[i] = (r0 + r < a.G && c < a.m) ? a.qproj[(b * a.G + r0 + r) * a.m + c] : 0.0f;
  }
}

// Generic path: a tile of kKeys keys per block, a thread per key, byte-wise CodeDot.
template <int R, int BITS>
__global__ void __launch_bounds__(kKeys) ScoresKernel(ScoresArgs a) {
  const int bits = BITS > 0 ? BITS : a.bits, n = a.n, nbytes = rj_packed_size(n, bits);
  const int qs = QueryStride(n), ms = QueryStride(a.m), cs = CodeTileStride(n, bits);
  extern __shared__ __align__(16) float smem[];
  float* cen = smem;
  float* q = smem + 256;
  float* qp = q + R * qs;
  unsigned char* ct = reinterpret_cast<unsigned char*>(qp + R * ms);

  const long long b = blockIdx.z, t0 = (long long)blockIdx.x * kKeys, row0 = b * a.T + t0;
  const int r0 = blockIdx.y * R, valid = int(min((long long)kKeys, a.T - t0));
  StageIn<U8>(a.codes + row0 * nbytes, (long long)valid * nbytes, nbytes, ct, cs);
  ZeroPad(ct, valid, cs, nbytes, GroupedBytes(n, bits));
  for (int i = threadIdx.x; i < (1 << bits); i += blockDim.x) cen[i] = a.centroids[i];
  GridDependencyWait();  // the rotated queries (and QJL projections) come from the kernels before
  for (int i = threadIdx.x; i < R * qs; i += blockDim.x) {
    const int r = i / qs, c = i % qs;
    q[i] = (r0 + r < a.G && c < n) ? a.qrot[(b * a.G + r0 + r) * n + c] : 0.0f;
  }
  StageQueryProjections<R>(a, b, r0, ms, qp);
  __syncthreads();

  const int t = threadIdx.x;
  if (t >= valid) return;
  float s[R] = {};
  CodeDot<R, BITS>(ct + t * cs, n, bits, cen, q, qs, s);
  if (a.m) AddQjl<R>(a, qp, ms, row0 + t, s);
  const float scale = a.norms[row0 + t] * a.inv_divisor;
#pragma unroll
  for (int r = 0; r < R; ++r)
    if (r0 + r < a.G) a.out[(b * a.G + r0 + r) * a.T + t0 + t] = s[r] * scale;
}

// Word-wise path (n = 128, bits 2/3/4, 16-byte aligned codes) on the tensor cores: each block
// streams `tiles_per_block` consecutive tiles of kKeys keys; each warp stages its own 32 code rows of
// a tile (the next two in flight), scores them (ScoreColumns, code_mma.cuh) and writes a key per lane.
template <int R, int BITS>
struct ScoresWordsLayout {
  static constexpr int kStages = 3;  // a warp's tile buffers
  static constexpr int kWarpBytes = ScoreShape<R>::kBytes + kStages * 32 * WordRow<BITS>::kStride;
  // The QJL projections, then the warps' score columns and tiles (the codebook is static).
  static size_t Smem(int m) { return R * QueryStride(m) * sizeof(float) + (kKeys / 32) * size_t(kWarpBytes); }
};

template <int R, int BITS>
__global__ void __launch_bounds__(kKeys, R <= 2 ? 6 : R <= 4 ? 4 : 2) ScoresWordsKernel(ScoresArgs a) {
  using S = ScoreShape<R>;
  using W = WordRow<BITS>;
  constexpr int kRows = 32 * W::kStride;  // bytes of a warp's tile
  constexpr int kStages = ScoresWordsLayout<R, BITS>::kStages;
  const int ms = QueryStride(a.m), lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __shared__ __align__(256) unsigned char table[KeyCodebook<BITS>::kBytes];
  extern __shared__ __align__(16) float smem[];
  float* qp = smem;
  unsigned char* region = reinterpret_cast<unsigned char*>(qp + R * ms) + warp * ScoresWordsLayout<R, BITS>::kWarpBytes;
  float* sc = reinterpret_cast<float*>(region);
  unsigned char* tiles = region + S::kBytes;  // kStages of them, two in flight

  const long long b = blockIdx.z, first = (long long)blockIdx.x * a.tiles_per_block;
  const int r0 = blockIdx.y * R;
  const int count = int(min((long long)a.tiles_per_block, (a.T + kKeys - 1) / kKeys - first));
  // This warp's first key, and the keys left from it (in 32 bits: the loop's bookkeeping is per tile).
  const long long key0 = first * kKeys + 32 * warp;
  const int left = int(min(a.T - key0, (long long)count * kKeys));
  const unsigned char* codes = a.codes + (b * a.T + key0) * W::kStride;
  const auto stage = [&](int i) {  // this warp's 32 rows of tile i into its buffer (none past count)
    const int rows = max(0, min(32, left - i * kKeys));
    StageWordRowsAsync<BITS>(codes + (long long)i * kKeys * W::kStride, rows, tiles + i % kStages * kRows, lane);
  };
  stage(0);
  stage(1);
  const int e = KeyCodebook<BITS>::Build(a.centroids, table);
  GridDependencyWait();  // the rotated queries (and QJL projections) come from the kernels before
  StageQueryProjections<R>(a, b, r0, ms, qp);
  const QueryOperands<R> q(a.qrot + (b * a.G + r0) * kWordN, a.G - r0, e);
  __syncthreads();
  const KeyCodebook<BITS> cen(table);

  const float* norms = a.norms + b * a.T + key0 + lane;
  float* out = a.out + (b * a.G + r0) * a.T + key0 + lane;
  for (int i = 0; i < count; ++i) {
    const int off = i * kKeys;  // this lane's key: key0 + lane + off
    const bool valid = lane < left - off;
    const float norm = valid ? norms[off] : 0.0f;  // used after the products
    WaitCopies<1>();
    __syncwarp();  // tile i here; every lane done with tile i − 1, whose buffer now takes tile i + 2
    stage(i + 2);
    ScoreColumns<R, BITS>(tiles + i % kStages * kRows, cen, q, sc);
    __syncwarp();
    float s[R];
#pragma unroll
    for (int r = 0; r < R; ++r) s[r] = (sc[r * S::kStride + lane] + sc[(R + r) * S::kStride + lane]) * q.unit[r];
    if (a.m && valid) AddQjl<R>(a, qp, ms, b * a.T + key0 + lane + off, s);
    if (valid)
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (r0 + r < a.G) out[r * a.T + off] = s[r] * (norm * a.inv_divisor);
  }
}

// One thread per query row: qproj = S · qrot (rj_dense_matvec on one vector).
__global__ void ProjectKernel(float* qrot, const float* s, int rows, int m, int n, float* qproj) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r < rows) rj_dense_matvec(qrot + (long long)r * n, qproj + (long long)r * m, 1, s, m, n, 0);
}

template <int R, int BITS>
ffi::Error LaunchScores(cudaStream_t stream, long long B, ScoresArgs a) {
  const size_t smem = (256 + R * QueryStride(a.n) + R * QueryStride(a.m)) * sizeof(float) +
                      size_t(kKeys) * CodeTileStride(a.n, a.bits);
  const dim3 grid(unsigned((a.T + kKeys - 1) / kKeys), unsigned((a.G + R - 1) / R), unsigned(B));
  return LaunchAfter(ScoresKernel<R, BITS>, grid, kKeys, smem, stream, a, "scores");
}

// Word-wise: each block streams consecutive tiles, split so that the blocks fill the GPU's slots.
template <int R, int BITS>
ffi::Error LaunchScoresWords(cudaStream_t stream, long long B, ScoresArgs a) {
  const size_t smem = ScoresWordsLayout<R, BITS>::Smem(a.m);
  const long long tiles = (a.T + kKeys - 1) / kKeys, chunks = (a.G + R - 1) / R;
  long long resident = 0;
  int splits = 1;
  if (ffi::Error err = ResidentBlocks(ScoresWordsKernel<R, BITS>, kKeys, smem, "scores", &resident); err.failure())
    return err;
  ChooseSplits(chunks * B, tiles, resident, &splits, &a.tiles_per_block);
  const dim3 grid(unsigned((tiles + a.tiles_per_block - 1) / a.tiles_per_block), unsigned(chunks), unsigned(B));
  return LaunchAfter(ScoresWordsKernel<R, BITS>, grid, kKeys, smem, stream, a, "scores");
}

template <int R>
ffi::Error LaunchScoresBits(cudaStream_t stream, long long B, const ScoresArgs& a) {
  // Whole 16-byte chunks per row (WordShape), so every staged tile starts 16-byte aligned with the base.
  if (WordShape(a.n, a.bits) && reinterpret_cast<uintptr_t>(a.codes) % 16 == 0) {
    if (a.bits == 4) return LaunchScoresWords<R, 4>(stream, B, a);
    if (a.bits == 3) return LaunchScoresWords<R, 3>(stream, B, a);
    return LaunchScoresWords<R, 2>(stream, B, a);
  }
  if (a.bits == 4) return LaunchScores<R, 4>(stream, B, a);
  if (a.bits == 3) return LaunchScores<R, 3>(stream, B, a);
  return LaunchScores<R, 0>(stream, B, a);
}

// grouped: q (B, G, dim), codes (B, T, nbytes), norms (B, T) → (B, G, T); else every query row
// against every code row (B = 1).
template <bool kGrouped>
ffi::Error ScoresImpl(cudaStream_t stream, ffi::AnyBuffer q, ffi::Buffer<ffi::U8> codes,
                      ffi::Buffer<ffi::F32> norms, ffi::Buffer<ffi::F32> params, ffi::Buffer<ffi::F32> centroids,
                      ffi::RemainingArgs qjl_args, ffi::Result<ffi::Buffer<ffi::F32>> out, int64_t kind, int64_t dim,
                      int64_t bits, float divisor) {
  StreamScratch scratch(stream);
  const char* op = kGrouped ? "grouped_scores" : "scores";
  RotationShape rot;
  if (ffi::Error err = CheckRotation(kind, dim, params.element_count(), &rot); err.failure()) return err;
  if (ffi::Error err = CheckBits(bits); err.failure()) return err;
  if (int64_t(centroids.element_count()) != (int64_t(1) << bits))
    return Invalid(std::string(op) + ": a " + std::to_string(bits) + "-bit codebook has " + std::to_string(1 << bits) + " centroids");
  if (!(divisor > 0.0f)) return Invalid(std::string(op) + ": divisor must be positive");
  if (!IsFloat(q.element_type())) return Invalid(std::string(op) + ": query dtype must be float32, bfloat16 or float16");
  const Shape2D qs = Flatten(q.dimensions());
  if (q.dimensions().size() == 0 || qs.cols != rot.dim)
    return Invalid(std::string(op) + ": queries must have shape (..., " + std::to_string(rot.dim) + ")");
  int64_t keys = 0;
  if (ffi::Error err = CheckCodes(op, codes, norms, rot.n, int(bits), &keys); err.failure()) return err;
  QjlCodes qjl;
  if (ffi::Error err = ParseQjlCodes(op, qjl_args, rot.n, keys, &qjl); err.failure()) return err;
  if (qjl.m > kMaxN) return Invalid(std::string(op) + ": CUDA kernels take QJL sketches of up to " + std::to_string(kMaxN) + " bits");
  int64_t B = 1;
  if (kGrouped) {
    auto qd = q.dimensions(), cd = codes.dimensions();
    if (qd.size() != 3 || cd.size() != 3 || qd[0] != cd[0])
      return Invalid("grouped_scores: queries (B, G, dim) and codes (B, T, bytes) must share B");
    B = qd[0];
  }
  const int64_t G = qs.rows / (B ? B : 1), T = keys / (B ? B : 1);
  if (int64_t(out->element_count()) != B * G * T)
    return Invalid(std::string(op) + ": output must hold one score per (query, code) pair");
  if (B * G * T == 0) return ffi::Error::Success();

  void* qrot = nullptr;
  void* qproj = nullptr;
  if (ffi::Error err = scratch.Allocate(size_t(qs.rows) * rot.n * sizeof(float), &qrot); err.failure()) return err;
  if (qjl.s)
    if (ffi::Error err = scratch.Allocate(size_t(qs.rows) * qjl.m * sizeof(float), &qproj); err.failure()) return err;
  const WarpRotateArgs ra{{q.untyped_data(), qrot, DtypeOf(q.element_type()), kF32, qs.rows, rot.dim, rot.n, rot.n,
                           rot.kind, 1.0f},
                          false, params.typed_data()};
  if (ffi::Error err = LaunchWarpRotate(stream, ra, "rotating the queries"); err.failure()) return err;
  if (qjl.s) {
    ProjectKernel<<<unsigned((qs.rows + 127) / 128), 128, 0, stream>>>(static_cast<float*>(qrot), qjl.s, int(qs.rows),
                                                                       qjl.m, rot.n, static_cast<float*>(qproj));
    if (ffi::Error err = LaunchError("projecting the queries"); err.failure()) return err;
  }
  const ScoresArgs a{static_cast<float*>(qrot), static_cast<float*>(qproj), codes.typed_data(), norms.typed_data(),
                     qjl.bits, qjl.gamma, centroids.typed_data(), T, int(G), rot.n, int(bits), qjl.m, 1, 1.0f / divisor,
                     qjl.s ? rj_qjl_scale(qjl.m) : 0.0f, out->typed_data()};
  switch (RowsPerChunk(int(G < 8 ? G : 8))) {
    case 1: return LaunchScoresBits<1>(stream, B, a);
    case 2: return LaunchScoresBits<2>(stream, B, a);
    case 4: return LaunchScoresBits<4>(stream, B, a);
    default: return LaunchScoresBits<8>(stream, B, a);
  }
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(Scores, ScoresImpl<false>, bindings::Scores(CudaBind()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(GroupedScores, ScoresImpl<true>, bindings::Scores(CudaBind()));

}  // namespace cuda
}  // namespace rotorjax
