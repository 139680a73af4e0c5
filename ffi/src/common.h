// Shared pieces of the CPU handlers: argument validation, rotation set-up, tile load/store and the
// parallel loop over the batch. All maths comes from rotorjax/kernel_math.h.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "dtypes.h"
#include "rotorjax/kernel_math.h"
#include "xla/ffi/api/ffi.h"

namespace rotorjax {

namespace ffi = xla::ffi;

// Vectors per tile: the SIMD width the lane loops in kernel_math.h are compiled for.
constexpr int kLanes = 16;
// Largest dim accepted (tiles are kLanes × n floats per thread; indices are 32-bit).
constexpr int64_t kMaxDim = 1 << 20;

inline ffi::Error Invalid(const std::string& msg) { return ffi::Error::InvalidArgument("rotorjax: " + msg); }

// Product of all but the last dimension, and the last dimension.
struct Shape2D {
  int64_t rows;
  int64_t cols;
};

inline Shape2D Flatten(ffi::Span<const int64_t> dims) {
  Shape2D s{1, dims.size() == 0 ? 1 : dims.back()};
  for (size_t i = 0; i + 1 < dims.size(); ++i) s.rows *= dims[i];
  return s;
}

inline int64_t Count(ffi::Span<const int64_t> dims) {
  int64_t c = 1;
  for (int64_t d : dims) c *= d;
  return c;
}

// A rotation ready for rj_rotate: kind, input dim, rotated width n and its prepared parameters
// (signs, or block matrices built from the raw rotor/angle/quaternion parameters).
struct Rotation {
  int kind = RJ_KIND_NONE;
  int dim = 0;
  int n = 0;
  std::vector<float> params;
};

inline ffi::Error MakeRotation(int64_t kind, int64_t dim, ffi::Buffer<ffi::F32> raw, Rotation* rot) {
  if (kind < RJ_KIND_NONE || kind > RJ_KIND_ROTOR_MIX) return Invalid("unknown rotation kind " + std::to_string(kind));
  if (dim < 2 || dim > kMaxDim) return Invalid("dim must be in [2, 2^20], got " + std::to_string(dim));
  rot->kind = int(kind);
  rot->dim = int(dim);
  rot->n = rj_padded_dim(rot->kind, rot->dim);
  const int64_t expected = rj_raw_param_count(rot->kind, rot->dim);
  if (int64_t(raw.element_count()) != expected)
    return Invalid("rotation kind " + std::to_string(kind) + " on dim " + std::to_string(dim) + " takes " +
                   std::to_string(expected) + " parameters, got " + std::to_string(raw.element_count()));
  const float* p = raw.typed_data();
  if (rot->kind == RJ_KIND_HADAMARD) {
    rot->params.assign(p, p + expected);
  } else if (rot->kind != RJ_KIND_NONE) {
    const int blocks = rj_num_blocks(rot->kind, rot->dim), k = rj_block_size(rot->kind);
    rot->params.resize(size_t(blocks) * k * k);
    rj_block_matrices(rot->kind, p, blocks, rot->params.data());
  }
  return ffi::Error::Success();
}

inline ffi::Error CheckBits(int64_t bits) {
  if (bits < 1 || bits > 8) return Invalid("bits must be in 1..8, got " + std::to_string(bits));
  return ffi::Error::Success();
}

// Codebook of 2^bits centroids and 2^bits − 1 ascending boundaries.
inline ffi::Error CheckCodebook(int bits, ffi::Buffer<ffi::F32> centroids, ffi::Buffer<ffi::F32> boundaries) {
  const int64_t levels = int64_t(1) << bits;
  if (int64_t(centroids.element_count()) != levels || int64_t(boundaries.element_count()) != levels - 1)
    return Invalid("a " + std::to_string(bits) + "-bit codebook has " + std::to_string(levels) + " centroids and " +
                   std::to_string(levels - 1) + " boundaries, got " + std::to_string(centroids.element_count()) +
                   " and " + std::to_string(boundaries.element_count()));
  const float* b = boundaries.typed_data();
  for (int64_t i = 1; i < levels - 1; ++i)
    if (!(b[i - 1] <= b[i])) return Invalid("codebook boundaries must be ascending");
  return ffi::Error::Success();
}

// The QJL matrix S (m × n).
inline ffi::Error CheckQjlMatrix(ffi::AnyBuffer s, int n, int* m) {
  auto d = s.dimensions();
  if (s.element_type() != ffi::DataType::F32 || d.size() != 2 || d[1] != n || d[0] < 1)
    return Invalid("the QJL matrix must be float32 of shape (m, " + std::to_string(n) + ")");
  *m = int(d[0]);
  return ffi::Error::Success();
}

// Packed codes (rows, ⌈n·bits/8⌉) u8 with norms (rows) f32, as encode writes them.
inline ffi::Error CheckCodes(const char* op, ffi::Buffer<ffi::U8> codes, ffi::Buffer<ffi::F32> norms, int n, int bits,
                             int64_t* rows) {
  const Shape2D c = Flatten(codes.dimensions());
  const int nbytes = rj_packed_size(n, bits);
  if (codes.dimensions().size() == 0 || c.cols != nbytes || int64_t(norms.element_count()) != c.rows)
    return Invalid(std::string(op) + ": codes must have shape (..., " + std::to_string(nbytes) + ") for " +
                   std::to_string(n) + " coordinates of " + std::to_string(bits) + " bits, with one norm per vector");
  *rows = c.rows;
  return ffi::Error::Success();
}

// The optional QJL inputs of decode and scores: matrix S (m, n), sketch bits u8 (rows, ⌈m/8⌉),
// residual norms f32 (rows). Leaves qjl->s null when absent.
struct QjlCodes {
  const float* s = nullptr;
  int m = 0;
  const uint8_t* bits = nullptr;
  const float* gamma = nullptr;
};

inline ffi::Error ParseQjlCodes(const char* op, const ffi::RemainingArgs& args, int n, int64_t rows, QjlCodes* q) {
  if (args.size() == 0) return ffi::Error::Success();
  if (args.size() != 3) return Invalid(std::string(op) + ": QJL takes three extra inputs (matrix, bits, residual norms)");
  const ffi::AnyBuffer smat = args.get<ffi::AnyBuffer>(0).value();
  const ffi::AnyBuffer bits = args.get<ffi::AnyBuffer>(1).value();
  const ffi::AnyBuffer gamma = args.get<ffi::AnyBuffer>(2).value();
  if (ffi::Error err = CheckQjlMatrix(smat, n, &q->m); err.failure()) return err;
  if (bits.element_type() != ffi::DataType::U8 || int64_t(bits.element_count()) != rows * rj_packed_size(q->m, 1) ||
      gamma.element_type() != ffi::DataType::F32 || int64_t(gamma.element_count()) != rows)
    return Invalid(std::string(op) + ": QJL bits must be u8 (..., " + std::to_string(rj_packed_size(q->m, 1)) +
                   ") and residual norms f32 (...), one per vector");
  q->s = static_cast<const float*>(smat.untyped_data());
  q->bits = static_cast<const uint8_t*>(bits.untyped_data());
  q->gamma = static_cast<const float*>(gamma.untyped_data());
  return ffi::Error::Success();
}

// Rows [row0, row0 + valid) of packed bytes (rows, nbytes) ↔ a byte tile (nbytes × kLanes).
inline void LoadBytes(const uint8_t* in, int64_t row0, int valid, int nbytes, uint8_t* tile) {
  std::fill(tile, tile + size_t(nbytes) * kLanes, uint8_t(0));
  for (int l = 0; l < valid; ++l)
    for (int k = 0; k < nbytes; ++k) tile[k * kLanes + l] = in[(row0 + l) * nbytes + k];
}

inline void StoreBytes(const uint8_t* tile, int64_t row0, int valid, int nbytes, uint8_t* out) {
  for (int l = 0; l < valid; ++l)
    for (int k = 0; k < nbytes; ++k) out[(row0 + l) * nbytes + k] = tile[k * kLanes + l];
}

// Unpacks the codes of rows [row0, row0 + valid) into an index tile (lanes past `valid` get index 0),
// and with QJL their sketch bits and residual norms. bytes: scratch of the larger packed size.
inline void UnpackTile(const uint8_t* codes, int64_t row0, int valid, int n, int bits, int* idx, const QjlCodes& q,
                       int* sketch, float* gamma, uint8_t* bytes) {
  LoadBytes(codes, row0, valid, rj_packed_size(n, bits), bytes);
  rj_unpack(bytes, n, kLanes, bits, idx);
  if (!q.s) return;
  for (int l = 0; l < kLanes; ++l) gamma[l] = l < valid ? q.gamma[row0 + l] : 0.0f;
  LoadBytes(q.bits, row0, valid, rj_packed_size(q.m, 1), bytes);
  rj_unpack(bytes, q.m, kLanes, 1, sketch);
}

// Loads rows [row0, row0 + valid) of a (rows, width) array into a zeroed kLanes × n tile.
template <typename Elem>
void LoadTile(const typename Elem::Storage* x, int64_t row0, int valid, int width, int n, float* tile) {
  std::fill(tile, tile + size_t(n) * kLanes, 0.0f);
  for (int l = 0; l < valid; ++l) {
    const typename Elem::Storage* src = x + (row0 + l) * width;
    for (int c = 0; c < width; ++c) tile[c * kLanes + l] = Elem::Load(src[c]);
  }
}

// Stores the first `width` coordinates of the tile's first `valid` lanes.
template <typename Elem>
void StoreTile(const float* tile, int64_t row0, int valid, int width, typename Elem::Storage* y) {
  for (int l = 0; l < valid; ++l) {
    typename Elem::Storage* dst = y + (row0 + l) * width;
    for (int c = 0; c < width; ++c) dst[c] = Elem::Store(tile[c * kLanes + l]);
  }
}

// Threads for one call: ROTORJAX_NUM_THREADS if set, else the hardware's.
inline int NumThreads() {
  static const int n = [] {
    const char* env = std::getenv("ROTORJAX_NUM_THREADS");
    const int v = env ? std::atoi(env) : int(std::thread::hardware_concurrency());
    return std::max(1, v);
  }();
  return n;
}

// Runs fn(first_tile, end_tile) over [0, tiles) on up to NumThreads() threads (the caller's included).
// Threads take chunks of about 1/16 of their share from a shared counter, so a thread that the OS
// preempts (a busy machine) holds up only its current chunk. Small batches stay on the calling
// thread: starting a thread costs more than a few tiles of work.
template <typename Fn>
void ParallelTiles(int64_t tiles, int64_t work_per_tile, Fn&& fn) {
  constexpr int64_t kMinWorkPerThread = 1 << 18;
  const int64_t by_work = std::max<int64_t>(1, tiles * work_per_tile / kMinWorkPerThread);
  const int threads = int(std::min<int64_t>({NumThreads(), tiles, by_work}));
  if (threads <= 1) {
    fn(int64_t(0), tiles);
    return;
  }
  const int64_t chunk = std::max<int64_t>(1, tiles / (16 * int64_t(threads)));
  std::atomic<int64_t> next{0};
  auto worker = [&] {
    for (int64_t b = next.fetch_add(chunk); b < tiles; b = next.fetch_add(chunk)) fn(b, std::min(tiles, b + chunk));
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
}

}  // namespace rotorjax
