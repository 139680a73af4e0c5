// The rotorjax Metal kernels from the host: load the precompiled rotorjax.metallib on an MTLDevice and
// encode each op's dispatches into a command buffer. The interface is plain C++ (Metal objects pass
// as void*, bridged from id<MTLDevice> / id<MTLCommandBuffer> / id<MTLBuffer>, or metal-cpp's
// MTL::Device* / MTL::CommandBuffer* / MTL::Buffer*, which are the same objects), so C++ plugin code
// can call it; the implementation (rotorjax_metal.mm) is Objective-C++.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "rotorjax_metal/plan.h"

namespace rotorjax_metal {

// A device buffer operand: an MTLBuffer and a byte offset into it. A null buffer is an operand the
// op does not read (the QJL ones without QJL); a small dummy is bound in its place.
struct Buffer {
  void* mtl_buffer = nullptr;
  uint64_t offset = 0;
};

// Compute pipelines for every kernel of one metallib on one device, built once by Load. Each Encode*
// takes the argument block from MakeArgs (which checks the sizes; nothing can fail after it) and encodes
// its dispatches into `command_buffer` after whatever it holds (one compute encoder, dispatches in
// order). Scratch buffers (block matrices, rotated queries) are allocated per call and
// kept alive until the command buffer completes. Thread-safe after Load.
class Kernels {
 public:
  static std::unique_ptr<Kernels> Load(void* mtl_device, const std::string& metallib_path, std::string* error);
  ~Kernels();

  // x (rows, dim) → (rows, n), or with a.inverse (rows, n) → (rows, dim); a.dtype for both.
  void EncodeRotate(void* command_buffer, const rj_metal_args& a, Buffer x, Buffer raw, Buffer out) const;
  void EncodeEncode(void* command_buffer, const rj_metal_args& a, Buffer x, Buffer raw, Buffer boundaries,
                           Buffer centroids, Buffer qjl, Buffer codes, Buffer norms, Buffer qjl_bits,
                           Buffer qjl_norms) const;
  void EncodeDecode(void* command_buffer, const rj_metal_args& a, Buffer codes, Buffer norms, Buffer raw,
                           Buffer centroids, Buffer qjl, Buffer qjl_bits, Buffer qjl_norms, Buffer out) const;
  void EncodeScores(void* command_buffer, const rj_metal_args& a, Buffer q, Buffer codes, Buffer norms,
                           Buffer raw, Buffer centroids, Buffer qjl, Buffer qjl_bits, Buffer qjl_norms,
                           Buffer out) const;

 private:
  struct Impl;
  explicit Kernels(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rotorjax_metal
