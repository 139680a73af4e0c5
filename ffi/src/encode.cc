// encode: one pass per tile of vectors: norm → normalise → rotate → quantize → pack, plus the QJL
// sketch bits and residual norms when the QJL matrix is passed (rotorjax.quantizer.TurboQuant.encode).
#include "handlers.h"

namespace rotorjax {

// Args: x (..., dim) [f32|bf16|f16], rotation parameters, boundaries (2^bits − 1), centroids (2^bits)
//       [, QJL matrix S (m, n)].
// Rets: codes u8 (..., ⌈n·bits/8⌉), norms f32 (...) [, QJL bits u8 (..., ⌈m/8⌉), residual norms f32 (...)].
static ffi::Error EncodeImpl(ffi::AnyBuffer x, ffi::Buffer<ffi::F32> params, ffi::Buffer<ffi::F32> boundaries,
                             ffi::Buffer<ffi::F32> centroids, ffi::RemainingArgs qjl_args,
                             ffi::Result<ffi::Buffer<ffi::U8>> codes, ffi::Result<ffi::Buffer<ffi::F32>> norms,
                             ffi::RemainingRets qjl_rets, int64_t kind, int64_t dim, int64_t bits) {
  Rotation rot;
  if (ffi::Error err = MakeRotation(kind, dim, params, &rot); err.failure()) return err;
  if (ffi::Error err = CheckBits(bits); err.failure()) return err;
  if (ffi::Error err = CheckCodebook(int(bits), centroids, boundaries); err.failure()) return err;
  const Shape2D in = Flatten(x.dimensions());
  if (x.dimensions().size() == 0 || in.cols != rot.dim)
    return Invalid("encode: input must have shape (..., " + std::to_string(rot.dim) + ")");
  const int n = rot.n, nbytes = rj_packed_size(n, int(bits));
  const Shape2D out = Flatten(codes->dimensions());
  if (out.cols != nbytes || out.rows != in.rows || int64_t(norms->element_count()) != in.rows)
    return Invalid("encode: outputs must be codes (..., " + std::to_string(nbytes) + ") and norms (...)");
  if (qjl_args.size() != qjl_rets.size() / 2 || qjl_args.size() > 1 || qjl_rets.size() % 2)
    return Invalid("encode: QJL takes one extra input (the matrix) and two extra outputs");
  const bool qjl = qjl_args.size() == 1;
  int m = 0;
  float* qjl_norms = nullptr;
  uint8_t* qjl_bits = nullptr;
  const float* s = nullptr;
  if (qjl) {
    const ffi::AnyBuffer smat = qjl_args.get<ffi::AnyBuffer>(0).value();
    if (ffi::Error err = CheckQjlMatrix(smat, n, &m); err.failure()) return err;
    s = static_cast<const float*>(smat.untyped_data());
    auto bits_out = qjl_rets.get<ffi::AnyBuffer>(0).value();
    auto gamma_out = qjl_rets.get<ffi::AnyBuffer>(1).value();
    if (bits_out->element_type() != ffi::DataType::U8 ||
        int64_t(bits_out->element_count()) != in.rows * rj_packed_size(m, 1) ||
        gamma_out->element_type() != ffi::DataType::F32 || int64_t(gamma_out->element_count()) != in.rows)
      return Invalid("encode: QJL outputs must be bits u8 (..., " + std::to_string(rj_packed_size(m, 1)) +
                     ") and residual norms f32 (...)");
    qjl_bits = static_cast<uint8_t*>(bits_out->untyped_data());
    qjl_norms = static_cast<float*>(gamma_out->untyped_data());
  }
  const float* bnd = boundaries.typed_data();
  const float* cen = centroids.typed_data();
  uint8_t* code_ptr = codes->typed_data();
  float* norm_ptr = norms->typed_data();
  const int64_t tiles = (in.rows + kLanes - 1) / kLanes;
  const bool ok = DispatchFloat(x.element_type(), [&](auto elem) {
    using Elem = decltype(elem);
    const auto* src = static_cast<const typename Elem::Storage*>(x.untyped_data());
    ParallelTiles(tiles, int64_t(kLanes) * (n * (10 + int(bits)) + 2 * m * n), [&](int64_t t0, int64_t t1) {
      std::vector<float> v(size_t(n) * kLanes), r(qjl ? size_t(n) * kLanes : 0), proj(size_t(m) * kLanes);
      std::vector<int> idx(size_t(n) * kLanes), sketch(size_t(m) * kLanes);
      std::vector<uint8_t> bytes(size_t(std::max(nbytes, rj_packed_size(m, 1))) * kLanes);
      float norm[kLanes], gamma[kLanes];
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t row0 = t * kLanes;
        const int valid = int(std::min<int64_t>(kLanes, in.rows - row0));
        LoadTile<Elem>(src, row0, valid, rot.dim, n, v.data());
        for (int l = 0; l < kLanes; ++l) norm[l] = 0.0f;
        for (int c = 0; c < rot.dim; ++c)
          for (int l = 0; l < kLanes; ++l) norm[l] += v[c * kLanes + l] * v[c * kLanes + l];
        for (int l = 0; l < kLanes; ++l) norm[l] = sqrtf(norm[l]);
        for (int c = 0; c < rot.dim; ++c)
          for (int l = 0; l < kLanes; ++l) v[c * kLanes + l] /= norm[l] > 0.0f ? norm[l] : 1.0f;
        rj_rotate(rot.kind, v.data(), n, kLanes, rot.params.data(), 0);
        rj_quantize(v.data(), idx.data(), n * kLanes, bnd, int(bits));
        rj_pack(idx.data(), n, kLanes, int(bits), bytes.data());
        StoreBytes(bytes.data(), row0, valid, nbytes, code_ptr);
        for (int l = 0; l < valid; ++l) norm_ptr[row0 + l] = norm[l];
        if (qjl) {
          rj_qjl_sketch(v.data(), idx.data(), n, kLanes, cen, s, m, r.data(), proj.data(), sketch.data(), gamma);
          rj_pack(sketch.data(), m, kLanes, 1, bytes.data());
          StoreBytes(bytes.data(), row0, valid, rj_packed_size(m, 1), qjl_bits);
          for (int l = 0; l < valid; ++l) qjl_norms[row0 + l] = gamma[l];
        }
      }
    });
  });
  if (!ok) return Invalid("encode: input dtype must be float32, bfloat16 or float16");
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(Encode, EncodeImpl, bindings::Encode(ffi::Ffi::Bind()));

}  // namespace rotorjax
