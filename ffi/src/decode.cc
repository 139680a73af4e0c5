// decode: one pass per tile: unpack → centroids (+ QJL term) → scale by the norm → inverse rotation,
// written in the output dtype (rotorjax.quantizer.TurboQuant.decode).
#include "handlers.h"

namespace rotorjax {

// Args: codes u8 (..., ⌈n·bits/8⌉), norms f32 (...), rotation parameters, centroids (2^bits)
//       [, QJL matrix S (m, n), QJL bits u8 (..., ⌈m/8⌉), residual norms f32 (...)].
// Ret:  x̂ (..., dim) [f32|bf16|f16].
static ffi::Error DecodeImpl(ffi::Buffer<ffi::U8> codes, ffi::Buffer<ffi::F32> norms, ffi::Buffer<ffi::F32> params,
                             ffi::Buffer<ffi::F32> centroids, ffi::RemainingArgs qjl_args,
                             ffi::Result<ffi::AnyBuffer> out, int64_t kind, int64_t dim, int64_t bits) {
  Rotation rot;
  if (ffi::Error err = MakeRotation(kind, dim, params, &rot); err.failure()) return err;
  if (ffi::Error err = CheckBits(bits); err.failure()) return err;
  if (int64_t(centroids.element_count()) != (int64_t(1) << bits))
    return Invalid("decode: a " + std::to_string(bits) + "-bit codebook has " + std::to_string(1 << bits) +
                   " centroids, got " + std::to_string(centroids.element_count()));
  const int n = rot.n;
  int64_t rows = 0;
  if (ffi::Error err = CheckCodes("decode", codes, norms, n, int(bits), &rows); err.failure()) return err;
  QjlCodes q;
  if (ffi::Error err = ParseQjlCodes("decode", qjl_args, n, rows, &q); err.failure()) return err;
  const Shape2D o = Flatten(out->dimensions());
  if (o.cols != rot.dim || o.rows != rows)
    return Invalid("decode: output must have shape (..., " + std::to_string(rot.dim) + "), one row per code");
  const float* cen = centroids.typed_data();
  const uint8_t* code_ptr = codes.typed_data();
  const float* norm_ptr = norms.typed_data();
  const int64_t tiles = (rows + kLanes - 1) / kLanes;
  const bool ok = DispatchFloat(out->element_type(), [&](auto elem) {
    using Elem = decltype(elem);
    auto* dst = static_cast<typename Elem::Storage*>(out->untyped_data());
    ParallelTiles(tiles, int64_t(kLanes) * (n * 12 + 2 * q.m * n), [&](int64_t t0, int64_t t1) {
      std::vector<float> v(size_t(n) * kLanes), signs(size_t(q.m) * kLanes), proj(q.s ? size_t(n) * kLanes : 0);
      std::vector<int> idx(size_t(n) * kLanes), sketch(size_t(q.m) * kLanes);
      std::vector<uint8_t> bytes(size_t(std::max(rj_packed_size(n, int(bits)), rj_packed_size(q.m, 1))) * kLanes);
      float gamma[kLanes], norm[kLanes];
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t row0 = t * kLanes;
        const int valid = int(std::min<int64_t>(kLanes, rows - row0));
        UnpackTile(code_ptr, row0, valid, n, int(bits), idx.data(), q, sketch.data(), gamma, bytes.data());
        rj_dequantize(idx.data(), n * kLanes, cen, v.data());
        if (q.s) rj_qjl_correct(v.data(), n, kLanes, sketch.data(), q.s, q.m, gamma, signs.data(), proj.data());
        for (int l = 0; l < kLanes; ++l) norm[l] = l < valid ? norm_ptr[row0 + l] : 0.0f;
        for (int c = 0; c < n; ++c)
          for (int l = 0; l < kLanes; ++l) v[c * kLanes + l] *= norm[l];
        rj_rotate(rot.kind, v.data(), n, kLanes, rot.params.data(), 1);
        StoreTile<Elem>(v.data(), row0, valid, rot.dim, dst);
      }
    });
  });
  if (!ok) return Invalid("decode: output dtype must be float32, bfloat16 or float16");
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(Decode, DecodeImpl, bindings::Decode(ffi::Ffi::Bind()));

}  // namespace rotorjax
