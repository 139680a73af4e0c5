// rotate / inverse_rotate on CUDA: y = Π [x; 0] (dim → n) or x = (Πᵀ y)[:dim] (n → dim), in the
// input dtype, computed in float32 (rotorjax.rotations.Rotation.apply / inverse).
#include "rotate_kernel.cuh"

namespace rotorjax {
namespace cuda {
namespace {

ffi::Error RotateImpl(cudaStream_t stream, ffi::AnyBuffer x,
                      ffi::Buffer<ffi::F32> params, ffi::Result<ffi::AnyBuffer> y, int64_t kind, int64_t dim,
                      bool inverse) {
  StreamScratch scratch(stream);
  RotationShape rot;
  if (ffi::Error err = CheckRotation(kind, dim, params.element_count(), &rot); err.failure()) return err;
  const Shape2D in = Flatten(x.dimensions()), out = Flatten(y->dimensions());
  const int in_w = inverse ? rot.n : rot.dim, out_w = inverse ? rot.dim : rot.n;
  if (!IsFloat(x.element_type())) return Invalid("rotate: input dtype must be float32, bfloat16 or float16");
  if (x.dimensions().size() == 0 || in.cols != in_w)
    return Invalid("rotate: input must have shape (..., " + std::to_string(in_w) + ")");
  if (out.cols != out_w || out.rows != in.rows || y->element_type() != x.element_type())
    return Invalid("rotate: output must have the input's dtype and shape (..., " + std::to_string(out_w) + ")");
  if (in.rows == 0) return ffi::Error::Success();
  void* buf = nullptr;
  if (ffi::Error err = scratch.Allocate(RotationScratchBytes(rot), &buf); err.failure()) return err;
  if (ffi::Error err = SetRotation(stream, rot, params.typed_data(), static_cast<float*>(buf)); err.failure())
    return err;
  const int dt = DtypeOf(x.element_type());
  const RotateArgs a{x.untyped_data(), y->untyped_data(), dt, dt, in.rows, in_w, out_w, rot.n, rot.kind, 1.0f};
  return inverse ? LaunchRotate<true>(stream, rot, a) : LaunchRotate<false>(stream, rot, a);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(Rotate, RotateImpl, bindings::Rotate(CudaBind()));

}  // namespace cuda
}  // namespace rotorjax
