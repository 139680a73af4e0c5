// scores on CUDA: ‖x‖ · ⟨Π q, ŷ⟩ straight from the codes. Queries are rotated once (a warp per
// query, warp_rotate.cuh, into scratch, with QJL also projected once), then one thread per encoded
// vector (two on the word-wise path with R ≥ 4) takes a block's R query rows against its packed row.
// Two targets: rotorjax_scores, every query against every code (as on CPU), and
// rotorjax_grouped_scores, batch b's queries (B, G, dim) against batch b's codes (B, T).
// WORDS (n = 128, bits 2/3/4, 16-byte aligned codes): rows staged and read as whole words
// (code_words.cuh), each block streaming consecutive tiles with the next one in flight; otherwise the
// generic byte-wise CodeDot, a tile per block.
#include "code_dot.cuh"
#include "code_words.cuh"
#include "warp_rotate.cuh"

namespace rotorjax {
namespace cuda {
namespace {

constexpr int kKeys = 128;  // threads per block, each taking KeysPerThread encoded vectors

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
  int tiles_per_block;  // consecutive key tiles of one (batch, row chunk); 1 off the word-wise path
  float inv_divisor, qjl_scale;  // 1 / divisor: one multiply per score, not a division
  float* out;  // (B, G, T)
};

// Keys per thread: 2 on the word-wise path with ≥ 4 query rows, where each broadcast query float4
// then feeds two keys' FMAs (shared-memory wavefronts per coordinate 2 → 1.5 at R = 4, issue −6 %);
// else 1, which keeps blocks small (occupancy hides the code loads).
template <int R, bool WORDS>
__host__ __device__ constexpr int KeysPerThread() { return WORDS && R >= 4 ? 2 : 1; }

template <int R, int BITS, bool WORDS>
__global__ void __launch_bounds__(kKeys) ScoresKernel(ScoresArgs a) {
  constexpr int KP = KeysPerThread<R, WORDS>(), kTile = kKeys * KP;
  static_assert(!WORDS || (BITS >= 2 && BITS <= 4), "the word-wise path takes compile-time bits 2, 3 or 4");
  const int bits = BITS > 0 ? BITS : a.bits, n = WORDS ? kWordN : a.n, nbytes = rj_packed_size(n, bits);
  const int qs = QueryStride(n), ms = QueryStride(a.m), cs = CodeTileStride(WORDS, n, bits);
  const int qbytes = rj_packed_size(a.m, 1), ss = ByteStride(qbytes);
  extern __shared__ __align__(16) float smem[];
  float* cen = WORDS ? CentroidTable::Place(smem) : smem;  // in a region of 256 floats
  float* q = smem + 256;
  float* qp = q + R * qs;
  unsigned char* ct = reinterpret_cast<unsigned char*>(qp + R * ms);  // WORDS: two tiles, one in flight
  unsigned char* st = ct + (WORDS ? 2 : 1) * kTile * cs;

  const long long b = blockIdx.z, first = (long long)blockIdx.x * a.tiles_per_block;
  const int r0 = blockIdx.y * R;
  const int count = int(min((long long)a.tiles_per_block, (a.T + kTile - 1) / kTile - first));
  // Starts staging tile i of the block's tiles into buffer i % 2 (WORDS; else the one buffer, count 1).
  const auto stage = [&](int i) {
    const long long t0 = (first + i) * kTile, row0 = b * a.T + t0;
    const int valid = int(min((long long)kTile, a.T - t0));
    unsigned char* tile = ct + (i & 1) * kTile * cs;
    if constexpr (WORDS) {
      StageWordRowsAsync<BITS>(a.codes + row0 * nbytes, valid, tile);
    } else {
      StageIn<U8>(a.codes + row0 * nbytes, (long long)valid * nbytes, nbytes, tile, cs);
      ZeroPad(tile, valid, cs, nbytes, GroupedBytes(n, bits));
    }
  };
  stage(0);
  for (int i = threadIdx.x; i < (1 << bits); i += blockDim.x) cen[i] = a.centroids[i];
  GridDependencyWait();  // the rotated queries (and QJL projections) come from the kernels before
  for (int i = threadIdx.x; i < R * qs; i += blockDim.x) {
    const int r = i / qs, c = i % qs;
    q[i] = (r0 + r < a.G && c < n) ? a.qrot[(b * a.G + r0 + r) * n + c] : 0.0f;
  }
  for (int i = threadIdx.x; i < R * ms; i += blockDim.x) {
    const int r = i / ms, c = i % ms;
    qp[i] = (r0 + r < a.G && c < a.m) ? a.qproj[(b * a.G + r0 + r) * a.m + c] : 0.0f;
  }

  const int t = threadIdx.x;
  for (int i = 0; i < count; ++i) {
    const long long t0 = (first + i) * kTile, row0 = b * a.T + t0;
    const int valid = int(min((long long)kTile, a.T - t0));
    if (a.m) StageIn<U8>(a.qjl_bits + row0 * qbytes, (long long)valid * qbytes, qbytes, st, ss);
    if constexpr (WORDS) WaitCopies();
    // Tile i (and on the first pass the queries) staged; every thread is done with tile i − 1, whose
    // buffer now takes tile i + 1.
    __syncthreads();
    if (WORDS && i + 1 < count) stage(i + 1);
    const unsigned char* tile = ct + (i & 1) * kTile * cs;

    // Thread t takes keys t + k·kKeys (coalesced norms and outputs for each k); a key past the tile
    // recomputes key t and is not stored.
    if (t < valid) {
      int key[KP];
#pragma unroll
      for (int k = 0; k < KP; ++k) key[k] = t + k * kKeys < valid ? t + k * kKeys : t;
      float scale[KP];  // ‖x‖ / divisor, loaded while the dot products run
#pragma unroll
      for (int k = 0; k < KP; ++k) scale[k] = a.norms[row0 + key[k]] * a.inv_divisor;
      float s[KP][R] = {};
      if constexpr (WORDS) {
        unsigned w[KP][WordRow<BITS>::kWords];
#pragma unroll
        for (int k = 0; k < KP; ++k) LoadWordRow<BITS>(tile, key[k], w[k]);
        WordDot<R, KP, BITS>(w, CentroidTable(cen), q, qs, s);
      } else {
        CodeDot<R, BITS>(tile + t * cs, n, bits, cen, q, qs, s[0]);
      }
#pragma unroll
      for (int k = 0; k < KP; ++k) {
        if (a.m) {  // QJL: + γ √(π/2)/m · ⟨S Π q, 2z − 1⟩
          float sk[R] = {};
          for (int j = 0; j < qbytes; ++j) {
            int z[8];
            rj_unpack(st + key[k] * ss + j, 8, 1, 1, z);
#pragma unroll
            for (int r = 0; r < R; ++r)
#pragma unroll
              for (int i = 0; i < 8; ++i) sk[r] += qp[r * ms + 8 * j + i] * (2.0f * float(z[i]) - 1.0f);
          }
          const float g = a.gamma[row0 + key[k]] * a.qjl_scale;
#pragma unroll
          for (int r = 0; r < R; ++r) s[k][r] += g * sk[r];
        }
        if (t + k * kKeys < valid) {
#pragma unroll
          for (int r = 0; r < R; ++r)
            if (r0 + r < a.G) a.out[(b * a.G + r0 + r) * a.T + t0 + key[k]] = s[k][r] * scale[k];
        }
      }
    }
    if (a.m) __syncthreads();  // the QJL tile is restaged next pass
  }
}

// One thread per query row: qproj = S · qrot (rj_dense_matvec on one vector).
__global__ void ProjectKernel(float* qrot, const float* s, int rows, int m, int n, float* qproj) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r < rows) rj_dense_matvec(qrot + (long long)r * n, qproj + (long long)r * m, 1, s, m, n, 0);
}

template <int R, int BITS, bool WORDS>
ffi::Error LaunchScores(cudaStream_t stream, long long B, ScoresArgs a) {
  const int cs = CodeTileStride(WORDS, a.n, a.bits), ss = ByteStride(rj_packed_size(a.m, 1));
  constexpr int kTile = kKeys * KeysPerThread<R, WORDS>();
  const size_t smem = (256 + R * QueryStride(a.n) + R * QueryStride(a.m)) * sizeof(float) +
                      kTile * ((WORDS ? 2 : 1) * cs + ss);
  const long long tiles = (a.T + kTile - 1) / kTile, chunks = (a.G + R - 1) / R;
  // Word-wise: each block streams consecutive tiles, one in flight while it computes on the other.
  a.tiles_per_block = 1;
  if (WORDS) {
    long long resident = 0;
    int splits = 1;
    if (ffi::Error err = ResidentBlocks(ScoresKernel<R, BITS, WORDS>, kKeys, smem, "scores", &resident); err.failure())
      return err;
    ChooseSplits(chunks * B, tiles, resident, &splits, &a.tiles_per_block);
  }
  const dim3 grid(unsigned((tiles + a.tiles_per_block - 1) / a.tiles_per_block), unsigned(chunks), unsigned(B));
  return LaunchAfter(ScoresKernel<R, BITS, WORDS>, grid, kKeys, smem, stream, a, "scores");
}

template <int R>
ffi::Error LaunchScoresBits(cudaStream_t stream, long long B, const ScoresArgs& a) {
  // Whole 16-byte chunks per row (WordShape), so every staged tile starts 16-byte aligned with the base.
  if (WordShape(a.n, a.bits) && reinterpret_cast<uintptr_t>(a.codes) % 16 == 0) {
    if (a.bits == 4) return LaunchScores<R, 4, true>(stream, B, a);
    if (a.bits == 3) return LaunchScores<R, 3, true>(stream, B, a);
    return LaunchScores<R, 2, true>(stream, B, a);
  }
  if (a.bits == 4) return LaunchScores<R, 4, false>(stream, B, a);
  if (a.bits == 3) return LaunchScores<R, 3, false>(stream, B, a);
  return LaunchScores<R, 0, false>(stream, B, a);
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
