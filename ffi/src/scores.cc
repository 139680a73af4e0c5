// scores: ⟨q, x̂⟩ straight from the codes, ‖x‖ · ⟨Π q, ŷ⟩ with ŷ = c[idx] (+ QJL term), for every query
// against every encoded vector; queries are rotated once (rotorjax.quantizer.TurboQuant.scores).
#include "handlers.h"

namespace rotorjax {

// Args: q (..Q, dim) [f32|bf16|f16], codes u8 (..K, ⌈n·bits/8⌉), norms f32 (..K), rotation parameters,
//       centroids (2^bits) [, QJL matrix S (m, n), QJL bits u8 (..K, ⌈m/8⌉), residual norms f32 (..K)].
// Ret:  scores f32 (..Q, ..K). Attr divisor: 1 − D to debias MSE-only scores, else 1.
static ffi::Error ScoresImpl(ffi::AnyBuffer q, ffi::Buffer<ffi::U8> codes, ffi::Buffer<ffi::F32> norms,
                             ffi::Buffer<ffi::F32> params, ffi::Buffer<ffi::F32> centroids,
                             ffi::RemainingArgs qjl_args, ffi::Result<ffi::Buffer<ffi::F32>> out, int64_t kind,
                             int64_t dim, int64_t bits, float divisor) {
  Rotation rot;
  if (ffi::Error err = MakeRotation(kind, dim, params, &rot); err.failure()) return err;
  if (ffi::Error err = CheckBits(bits); err.failure()) return err;
  if (int64_t(centroids.element_count()) != (int64_t(1) << bits))
    return Invalid("scores: a " + std::to_string(bits) + "-bit codebook has " + std::to_string(1 << bits) +
                   " centroids, got " + std::to_string(centroids.element_count()));
  if (!(divisor > 0.0f)) return Invalid("scores: divisor must be positive");
  const int n = rot.n;
  const Shape2D qs = Flatten(q.dimensions());
  if (q.dimensions().size() == 0 || qs.cols != rot.dim)
    return Invalid("scores: queries must have shape (..., " + std::to_string(rot.dim) + ")");
  int64_t keys = 0;
  if (ffi::Error err = CheckCodes("scores", codes, norms, n, int(bits), &keys); err.failure()) return err;
  QjlCodes qjl;
  if (ffi::Error err = ParseQjlCodes("scores", qjl_args, n, keys, &qjl); err.failure()) return err;
  if (int64_t(out->element_count()) != qs.rows * keys)
    return Invalid("scores: output must hold one score per (query, code) pair");

  // Rotated queries, one contiguous row each, and with QJL their projections S Π q.
  const int64_t nq = qs.rows;
  std::vector<float> qrot(size_t(nq) * n), qproj(size_t(nq) * qjl.m);
  const bool ok = DispatchFloat(q.element_type(), [&](auto elem) {
    using Elem = decltype(elem);
    const auto* src = static_cast<const typename Elem::Storage*>(q.untyped_data());
    std::vector<float> tile(size_t(n) * kLanes);
    for (int64_t row0 = 0; row0 < nq; row0 += kLanes) {
      const int valid = int(std::min<int64_t>(kLanes, nq - row0));
      LoadTile<Elem>(src, row0, valid, rot.dim, n, tile.data());
      rj_rotate(rot.kind, tile.data(), n, kLanes, rot.params.data(), 0);
      for (int l = 0; l < valid; ++l)
        for (int c = 0; c < n; ++c) qrot[(row0 + l) * n + c] = tile[c * kLanes + l];
    }
  });
  if (!ok) return Invalid("scores: query dtype must be float32, bfloat16 or float16");
  if (qjl.s)
    for (int64_t i = 0; i < nq; ++i) rj_dense_matvec(&qrot[i * n], &qproj[i * qjl.m], 1, qjl.s, qjl.m, n, 0);

  const float* cen = centroids.typed_data();
  const float* norm_ptr = norms.typed_data();
  float* dst = out->typed_data();
  const float qjl_scale = qjl.s ? rj_qjl_scale(qjl.m) : 0.0f;
  const int64_t tiles = (keys + kLanes - 1) / kLanes;
  ParallelTiles(tiles, int64_t(kLanes) * (n * 4 + nq * (n + qjl.m)), [&](int64_t t0, int64_t t1) {
    std::vector<float> y(size_t(n) * kLanes), signs(size_t(qjl.m) * kLanes);
    std::vector<int> idx(size_t(n) * kLanes), sketch(size_t(qjl.m) * kLanes);
    std::vector<uint8_t> bytes(size_t(std::max(rj_packed_size(n, int(bits)), rj_packed_size(qjl.m, 1))) * kLanes);
    float gamma[kLanes], dot[kLanes], sk[kLanes];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t row0 = t * kLanes;
      const int valid = int(std::min<int64_t>(kLanes, keys - row0));
      UnpackTile(codes.typed_data(), row0, valid, n, int(bits), idx.data(), qjl, sketch.data(), gamma, bytes.data());
      rj_dequantize(idx.data(), n * kLanes, cen, y.data());
      for (size_t i = 0; i < signs.size(); ++i) signs[i] = 2.0f * float(sketch[i]) - 1.0f;
      for (int64_t i = 0; i < nq; ++i) {
        rj_tile_dot(&qrot[i * n], y.data(), n, kLanes, dot);
        if (qjl.s) {
          rj_tile_dot(&qproj[i * qjl.m], signs.data(), qjl.m, kLanes, sk);
          for (int l = 0; l < kLanes; ++l) dot[l] += gamma[l] * qjl_scale * sk[l];
        }
        for (int l = 0; l < valid; ++l) dst[i * keys + row0 + l] = dot[l] / divisor * norm_ptr[row0 + l];
      }
    }
  });
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(Scores, ScoresImpl, bindings::Scores(ffi::Ffi::Bind()));

}  // namespace rotorjax
