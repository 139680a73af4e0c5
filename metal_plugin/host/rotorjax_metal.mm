// Objective-C++ (ARC) side of rotorjax_metal.h: pipelines from the metallib, and each op as a
// sequence of dispatches on one serial compute encoder (a later dispatch sees an earlier one's writes).
#include "rotorjax_metal.h"

#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#include <initializer_list>
#include <map>

namespace rotorjax_metal {

struct Kernels::Impl {
  id<MTLDevice> device;
  std::map<std::string, id<MTLComputePipelineState>> pipelines;
  id<MTLBuffer> dummy;  // bound for operands an op does not read
};

Kernels::Kernels(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Kernels::~Kernels() = default;

std::unique_ptr<Kernels> Kernels::Load(void* mtl_device, const std::string& metallib_path, std::string* error) {
  @autoreleasepool {
    auto impl = std::make_unique<Impl>();
    impl->device = (__bridge id<MTLDevice>)mtl_device;
    NSError* err = nil;
    NSURL* url = [NSURL fileURLWithPath:[NSString stringWithUTF8String:metallib_path.c_str()]];
    id<MTLLibrary> library = [impl->device newLibraryWithURL:url error:&err];
    if (!library) {
      *error = "cannot load " + metallib_path + ": " + std::string(err.localizedDescription.UTF8String);
      return nullptr;
    }
    for (const char* name : {kBlockMatricesKernel, kRotateKernel, kEncodeKernel, kDecodeKernel, kRotateQueriesKernel,
                             kScoresKernel}) {
      id<MTLFunction> fn = [library newFunctionWithName:[NSString stringWithUTF8String:name]];
      id<MTLComputePipelineState> pso = fn ? [impl->device newComputePipelineStateWithFunction:fn error:&err] : nil;
      if (!pso) {
        *error = std::string("no pipeline for ") + name;
        if (err) *error += ": " + std::string(err.localizedDescription.UTF8String);
        return nullptr;
      }
      impl->pipelines[name] = pso;
    }
    impl->dummy = [impl->device newBufferWithLength:16 options:MTLResourceStorageModePrivate];
    return std::unique_ptr<Kernels>(new Kernels(std::move(impl)));
  }
}

namespace {

// One op's encoding: a compute encoder on the command buffer plus the scratch buffers it allocates,
// which a completion handler holds until the GPU is done with them.
class Encoding {
 public:
  Encoding(void* command_buffer, id<MTLDevice> device, id<MTLBuffer> dummy)
      : cb_((__bridge id<MTLCommandBuffer>)command_buffer), device_(device), dummy_(dummy),
        enc_([cb_ computeCommandEncoder]), scratch_([NSMutableArray array]) {}

  ~Encoding() {
    [enc_ endEncoding];
    NSArray* keep = scratch_;
    [cb_ addCompletedHandler:^(id<MTLCommandBuffer> done) {
      (void)done;
      (void)keep;
    }];
  }

  Buffer Scratch(int floats) {
    id<MTLBuffer> b = [device_ newBufferWithLength:NSUInteger(floats > 0 ? floats : 1) * sizeof(float)
                                           options:MTLResourceStorageModePrivate];
    [scratch_ addObject:b];
    return Buffer{(__bridge void*)b, 0};
  }

  // `threads` threads of `pso`, with buffers bound in order and the argument block after them.
  void Dispatch(id<MTLComputePipelineState> pso, std::initializer_list<Buffer> buffers, const rj_metal_args& a,
                int threads) {
    if (threads <= 0) return;
    [enc_ setComputePipelineState:pso];
    NSUInteger i = 0;
    for (const Buffer& b : buffers) {
      id<MTLBuffer> buf = b.mtl_buffer ? (__bridge id<MTLBuffer>)b.mtl_buffer : dummy_;
      [enc_ setBuffer:buf offset:(b.mtl_buffer ? b.offset : 0) atIndex:i++];
    }
    [enc_ setBytes:&a length:sizeof(a) atIndex:i];
    // Large per-thread arrays can lower a pipeline's thread limit below kThreadsPerGroup.
    const NSUInteger width = MIN(NSUInteger(kThreadsPerGroup), pso.maxTotalThreadsPerThreadgroup);
    [enc_ dispatchThreads:MTLSizeMake(NSUInteger(threads), 1, 1) threadsPerThreadgroup:MTLSizeMake(width, 1, 1)];
  }

 private:
  id<MTLCommandBuffer> cb_;
  id<MTLDevice> device_;
  id<MTLBuffer> dummy_;
  id<MTLComputeCommandEncoder> enc_;
  NSMutableArray<id<MTLBuffer>>* scratch_;
};

// The rotation operand of the op kernels: raw signs (hadamard) as passed, block matrices built from
// the raw parameters by kBlockMatricesKernel, or nothing (RJ_KIND_NONE).
Buffer Rotation(Encoding& e, const std::map<std::string, id<MTLComputePipelineState>>& pipelines,
                const rj_metal_args& a, Buffer raw) {
  if (a.kind == RJ_KIND_HADAMARD) return raw;
  if (a.blocks == 0) return Buffer{};
  Buffer mats = e.Scratch(RotationFloats(a));
  e.Dispatch(pipelines.at(kBlockMatricesKernel), {raw, mats}, a, a.blocks);
  return mats;
}

}  // namespace

void Kernels::EncodeRotate(void* cb, const rj_metal_args& a, Buffer x, Buffer raw, Buffer out) const {
  @autoreleasepool {
    Encoding e(cb, impl_->device, impl_->dummy);
    const Buffer rot = Rotation(e, impl_->pipelines, a, raw);
    e.Dispatch(impl_->pipelines.at(kRotateKernel), {x, rot, out}, a, a.rows);
  }
}

void Kernels::EncodeEncode(void* cb, const rj_metal_args& a, Buffer x, Buffer raw, Buffer boundaries,
                                  Buffer centroids, Buffer qjl, Buffer codes, Buffer norms, Buffer qjl_bits,
                                  Buffer qjl_norms) const {
  @autoreleasepool {
    Encoding e(cb, impl_->device, impl_->dummy);
    const Buffer rot = Rotation(e, impl_->pipelines, a, raw);
    e.Dispatch(impl_->pipelines.at(kEncodeKernel),
               {x, rot, boundaries, centroids, qjl, codes, norms, qjl_bits, qjl_norms}, a, a.rows);
  }
}

void Kernels::EncodeDecode(void* cb, const rj_metal_args& a, Buffer codes, Buffer norms, Buffer raw,
                                  Buffer centroids, Buffer qjl, Buffer qjl_bits, Buffer qjl_norms, Buffer out) const {
  @autoreleasepool {
    Encoding e(cb, impl_->device, impl_->dummy);
    const Buffer rot = Rotation(e, impl_->pipelines, a, raw);
    e.Dispatch(impl_->pipelines.at(kDecodeKernel), {codes, norms, rot, centroids, qjl, qjl_bits, qjl_norms, out}, a,
               a.rows);
  }
}

void Kernels::EncodeScores(void* cb, const rj_metal_args& a, Buffer q, Buffer codes, Buffer norms, Buffer raw,
                                  Buffer centroids, Buffer qjl, Buffer qjl_bits, Buffer qjl_norms,
                                  Buffer out) const {
  @autoreleasepool {
    Encoding e(cb, impl_->device, impl_->dummy);
    const Buffer rot = Rotation(e, impl_->pipelines, a, raw);
    const Buffer q_rot = e.Scratch(a.queries * a.n), q_proj = e.Scratch(a.queries * a.m);
    e.Dispatch(impl_->pipelines.at(kRotateQueriesKernel), {q, rot, qjl, q_rot, q_proj}, a, a.queries);
    e.Dispatch(impl_->pipelines.at(kScoresKernel), {q_rot, q_proj, codes, norms, centroids, qjl_bits, qjl_norms, out},
               a, a.rows);
  }
}

}  // namespace rotorjax_metal
