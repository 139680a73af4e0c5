// rotate / inverse_rotate: y = Π [x; 0] (dim → n) or x = (Πᵀ y)[:dim] (n → dim), in the input dtype,
// computed in float32 (rotorjax.rotations.Rotation.apply / inverse).
#include "handlers.h"

namespace rotorjax {

static ffi::Error RotateImpl(ffi::AnyBuffer x, ffi::Buffer<ffi::F32> params, ffi::Result<ffi::AnyBuffer> y,
                             int64_t kind, int64_t dim, bool inverse) {
  Rotation rot;
  if (ffi::Error err = MakeRotation(kind, dim, params, &rot); err.failure()) return err;
  const Shape2D in = Flatten(x.dimensions()), out = Flatten(y->dimensions());
  const int in_width = inverse ? rot.n : rot.dim, out_width = inverse ? rot.dim : rot.n;
  if (x.dimensions().size() == 0 || in.cols != in_width)
    return Invalid("rotate: input must have shape (..., " + std::to_string(in_width) + ")");
  if (out.cols != out_width || out.rows != in.rows || y->element_type() != x.element_type())
    return Invalid("rotate: output must have the input's dtype and shape (..., " + std::to_string(out_width) + ")");
  const int64_t tiles = (in.rows + kLanes - 1) / kLanes;
  const bool ok = DispatchFloat(x.element_type(), [&](auto elem) {
    using Elem = decltype(elem);
    using T = typename Elem::Storage;
    const T* src = static_cast<const T*>(x.untyped_data());
    T* dst = static_cast<T*>(y->untyped_data());
    ParallelTiles(tiles, int64_t(kLanes) * rot.n * 8, [&](int64_t t0, int64_t t1) {
      std::vector<float> tile(size_t(rot.n) * kLanes);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t row0 = t * kLanes;
        const int valid = int(std::min<int64_t>(kLanes, in.rows - row0));
        LoadTile<Elem>(src, row0, valid, in_width, rot.n, tile.data());
        rj_rotate(rot.kind, tile.data(), rot.n, kLanes, rot.params.data(), inverse);
        StoreTile<Elem>(tile.data(), row0, valid, out_width, dst);
      }
    });
  });
  if (!ok) return Invalid("rotate: input dtype must be float32, bfloat16 or float16");
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(Rotate, RotateImpl, bindings::Rotate(ffi::Ffi::Bind()));

}  // namespace rotorjax
