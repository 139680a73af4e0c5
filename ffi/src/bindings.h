// The FFI signatures of the targets that the CPU and CUDA modules share, written once so the two
// cannot drift apart. `bind` is ffi::Ffi::Bind() on the CPU; on CUDA it already carries the stream
// context (CudaBind() in ffi/cuda/cuda_common.cuh), which the handler then takes as its first argument.
// (Binding's builder methods take *this as an rvalue, hence std::move.)
#pragma once

#include <cstdint>
#include <utility>

#include "xla/ffi/api/ffi.h"

namespace rotorjax {
namespace bindings {

namespace ffi = xla::ffi;

// x (..., dim), prepared-from-raw rotation parameters → y (..., n), or back with `inverse`.
template <typename B>
auto Rotate(B bind) {
  return std::move(bind).template Arg<ffi::AnyBuffer>()
      .template Arg<ffi::Buffer<ffi::F32>>()
      .template Ret<ffi::AnyBuffer>()
      .template Attr<int64_t>("kind")
      .template Attr<int64_t>("dim")
      .template Attr<bool>("inverse");
}

// x, rotation parameters, boundaries, centroids [, QJL matrix] → codes, norms [, QJL bits, residual norms].
template <typename B>
auto Encode(B bind) {
  return std::move(bind).template Arg<ffi::AnyBuffer>()
      .template Arg<ffi::Buffer<ffi::F32>>()
      .template Arg<ffi::Buffer<ffi::F32>>()
      .template Arg<ffi::Buffer<ffi::F32>>()
      .RemainingArgs()
      .template Ret<ffi::Buffer<ffi::U8>>()
      .template Ret<ffi::Buffer<ffi::F32>>()
      .RemainingRets()
      .template Attr<int64_t>("kind")
      .template Attr<int64_t>("dim")
      .template Attr<int64_t>("bits");
}

// codes, norms, rotation parameters, centroids [, QJL matrix, bits, residual norms] → x̂ (..., dim).
template <typename B>
auto Decode(B bind) {
  return std::move(bind).template Arg<ffi::Buffer<ffi::U8>>()
      .template Arg<ffi::Buffer<ffi::F32>>()
      .template Arg<ffi::Buffer<ffi::F32>>()
      .template Arg<ffi::Buffer<ffi::F32>>()
      .RemainingArgs()
      .template Ret<ffi::AnyBuffer>()
      .template Attr<int64_t>("kind")
      .template Attr<int64_t>("dim")
      .template Attr<int64_t>("bits");
}

// queries, codes, norms, rotation parameters, centroids [, QJL operands] → scores (float32).
template <typename B>
auto Scores(B bind) {
  return std::move(bind).template Arg<ffi::AnyBuffer>()
      .template Arg<ffi::Buffer<ffi::U8>>()
      .template Arg<ffi::Buffer<ffi::F32>>()
      .template Arg<ffi::Buffer<ffi::F32>>()
      .template Arg<ffi::Buffer<ffi::F32>>()
      .RemainingArgs()
      .template Ret<ffi::Buffer<ffi::F32>>()
      .template Attr<int64_t>("kind")
      .template Attr<int64_t>("dim")
      .template Attr<int64_t>("bits")
      .template Attr<float>("divisor");
}

}  // namespace bindings
}  // namespace rotorjax
