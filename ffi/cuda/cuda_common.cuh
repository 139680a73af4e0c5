// Shared pieces of the CUDA handlers: the rotation in constant memory, block-cooperative staging of
// rows between global and shared memory (coalesced 16-byte accesses, dtype conversion on the way),
// and host-side validation. All maths comes from rotorjax/kernel_math.h (RJ_FN is __host__ __device__
// under nvcc), applied with lanes = 1: one thread per vector.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "bindings.h"  // ffi/src: the targets' FFI signatures, shared with the CPU module
#include "common.h"  // ffi/src: Invalid, Flatten, CheckBits, CheckCodes, ParseQjlCodes (shape checks only)
#include "rotorjax/kernel_math.h"
#include "xla/ffi/api/ffi.h"

namespace rotorjax {
namespace cuda {
// Internal linkage: each .cu is its own CUDA module with its own c_params, so nothing that touches
// them (SetRotation, the kernels' host stubs) may be merged across translation units by the linker.
namespace {

namespace ffi = xla::ffi;

// Widest rotated vector the CUDA kernels take: a thread's vector, indices and QJL scratch live in
// registers / local memory, sized for this at compile time.
constexpr int kMaxN = 512;
// Prepared rotation parameters (block matrices or Hadamard signs) in constant memory, where every
// thread of a warp reads the same element (sm_90 ptxas loads them into uniform registers for the
// multiply-adds; the fast encode/decode keep one rotor stage in shared memory: warp_rows.cuh). One copy
// per translation unit (each .cu is its own module), filled by SetRotation on the call's stream.
constexpr int kMaxParams = 16384;
static __constant__ float c_params[kMaxParams];

// Element types, numbered as the handlers pass them to kernels.
enum Dtype : int { kF32 = 0, kBF16 = 1, kF16 = 2 };

struct F32 {
  using S = float;
  __device__ static float Load(float x) { return x; }
  __device__ static float Store(float x) { return x; }
};
struct BF16 {
  using S = __nv_bfloat16;
  __device__ static float Load(S x) { return __bfloat162float(x); }
  __device__ static S Store(float x) { return __float2bfloat16_rn(x); }  // round to nearest even, as XLA
};
struct F16 {
  using S = __half;
  __device__ static float Load(S x) { return __half2float(x); }
  __device__ static S Store(float x) { return __float2half_rn(x); }
};
// Raw bytes (packed codes): staged without conversion.
struct U8 {
  using S = unsigned char;
  __device__ static unsigned char Load(S x) { return x; }
  __device__ static S Store(unsigned char x) { return x; }
};

// fn(E{}) for the element type numbered dtype, on either side: kernels stage rows with it, hosts pick
// a kernel instantiation (the check is off because fn is a host or a device lambda, never both).
#pragma nv_exec_check_disable
template <typename Fn>
__host__ __device__ __forceinline__ decltype(auto) WithDtype(int dtype, Fn&& fn) {
  if (dtype == kBF16) return fn(BF16{});
  if (dtype == kF16) return fn(F16{});
  return fn(F32{});
}

// cp.async, 16 bytes global → shared without passing through registers. CommitCopies closes the
// calling thread's copies into a group; WaitCopies<N> waits for all of its groups but the N most
// recent (a barrier must follow before other threads read what they copied).
__device__ __forceinline__ void CopyAsync16(void* shared, const void* global) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(unsigned(__cvta_generic_to_shared(shared))),
               "l"(global)
               : "memory");
}
__device__ __forceinline__ void CommitCopies() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N = 0>
__device__ __forceinline__ void WaitCopies() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

// Block-cooperative copy of `count` consecutive elements of a row-major (rows, width) array, starting
// at a row boundary of `src`, into a shared tile: element e goes to tile[(e / width) * stride + e % width].
// Whole 16-byte chunks when the source is 16-byte aligned (consecutive threads, consecutive chunks).
template <typename E, typename T>
__device__ void StageIn(const typename E::S* src, long long count, int width, T* tile, int stride) {
  using S = typename E::S;
  constexpr int kPer = 16 / sizeof(S);
  const bool aligned = (reinterpret_cast<uintptr_t>(src) & 15) == 0;
  const long long chunks = aligned ? count / kPer : 0;
#pragma unroll 4
  for (long long ch = threadIdx.x; ch < chunks; ch += blockDim.x) {
    const uint4 w = reinterpret_cast<const uint4*>(src)[ch];
    S vals[kPer];
    memcpy(vals, &w, 16);
    const long long e0 = ch * kPer;
    int r = int(e0 / width), c = int(e0 % width);
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      tile[r * stride + c] = T(E::Load(vals[j]));
      if (++c == width) c = 0, ++r;
    }
  }
  for (long long e = chunks * kPer + threadIdx.x; e < count; e += blockDim.x)
    tile[int(e / width) * stride + int(e % width)] = T(E::Load(src[e]));
}

// The reverse of StageIn: tile → `count` consecutive elements of dst.
template <typename E, typename T>
__device__ void StageOut(const T* tile, int stride, long long count, int width, typename E::S* dst) {
  using S = typename E::S;
  constexpr int kPer = 16 / sizeof(S);
  const bool aligned = (reinterpret_cast<uintptr_t>(dst) & 15) == 0;
  const long long chunks = aligned ? count / kPer : 0;
#pragma unroll 4
  for (long long ch = threadIdx.x; ch < chunks; ch += blockDim.x) {
    S vals[kPer];
    const long long e0 = ch * kPer;
    int r = int(e0 / width), c = int(e0 % width);
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      vals[j] = E::Store(tile[r * stride + c]);
      if (++c == width) c = 0, ++r;
    }
    uint4 w;
    memcpy(&w, vals, 16);
    reinterpret_cast<uint4*>(dst)[ch] = w;
  }
  for (long long e = chunks * kPer + threadIdx.x; e < count; e += blockDim.x)
    dst[e] = E::Store(tile[int(e / width) * stride + int(e % width)]);
}

// Row stride in 16-byte chunks of a shared tile read a row per thread with 16-byte loads: odd, so
// row r's chunk c lies in bank group (r + c) mod 8 and the 8 threads of each quarter-warp reading
// chunk c of 8 consecutive rows hit distinct banks.
__host__ __device__ constexpr int ChunkStride(int chunks) { return chunks | 1; }

// Row strides in shared memory: an odd number of 4-byte words, so that thread t reading word w of
// its own row (t * stride + w) hits bank (t * stride + w) % 32, distinct across a warp.
__host__ __device__ inline int FloatStride(int width) { return width | 1; }
__host__ __device__ inline int ByteStride(int nbytes) { return 4 * (((nbytes + 3) / 4) | 1); }

// Packed rows are read 8 indices at a time (8·bits bits = `bits` whole bytes), so byte tiles hold
// ⌈n/8⌉·bits bytes per row, the bytes past the packed size zero.
__host__ __device__ inline int GroupedBytes(int n, int bits) { return (n + 7) / 8 * bits; }

// ---- host side ------------------------------------------------------------------------------------

// Ffi::Bind() with the call's CUDA stream as the handler's first argument (bindings.h adds the rest).
inline auto CudaBind() { return ffi::Ffi::Bind().Ctx<ffi::PlatformStream<cudaStream_t>>(); }

inline ffi::Error CudaError(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return ffi::Error::Success();
  return ffi::Error::Internal(std::string("rotorjax CUDA: ") + what + ": " + cudaGetErrorString(err));
}

// The last launch's error (a bad configuration shows here, not at the <<<>>> site).
inline ffi::Error LaunchError(const char* what) { return CudaError(cudaGetLastError(), what); }

inline int DtypeOf(ffi::DataType t) {
  return t == ffi::DataType::BF16 ? kBF16 : t == ffi::DataType::F16 ? kF16 : kF32;
}
inline bool IsFloat(ffi::DataType t) {
  return t == ffi::DataType::F32 || t == ffi::DataType::BF16 || t == ffi::DataType::F16;
}

// A rotation as the kernels see it: kind, input dim, rotated width n (parameters go to c_params).
struct RotationShape {
  int kind = RJ_KIND_NONE;
  int dim = 0;
  int n = 0;
};

// Rows for a rotation kernel (rotate_kernel.cuh, warp_rotate.cuh): x (rows, in_w) in in_dtype → y
// (rows, out_w) in out_dtype, rotated over n coordinates.
struct RotateArgs {
  const void* x;
  void* y;
  int in_dtype, out_dtype;
  long long rows;
  int in_w, out_w, n, kind;
  float scale;  // multiplies the output (1, or attention's 1/√d folded into the query)
};

// Floats of prepared parameters: n signs for hadamard, k×k per block for the block kinds.
inline int PreparedCount(const RotationShape& rot) {
  const int k = rj_block_size(rot.kind);
  return rot.kind == RJ_KIND_HADAMARD ? rot.n : rj_num_blocks(rot.kind, rot.dim) * k * k;
}

// Validates kind / dim / parameter count and returns the shape; the kernels take n ≤ kMaxN.
inline ffi::Error CheckRotation(int64_t kind, int64_t dim, int64_t raw_count, RotationShape* rot) {
  if (kind < RJ_KIND_NONE || kind > RJ_KIND_ROTOR_MIX) return Invalid("unknown rotation kind " + std::to_string(kind));
  if (dim < 2 || dim > kMaxN) return Invalid("CUDA kernels take dim in [2, " + std::to_string(kMaxN) + "], got " + std::to_string(dim));
  rot->kind = int(kind);
  rot->dim = int(dim);
  rot->n = rj_padded_dim(rot->kind, rot->dim);
  if (rot->n > kMaxN)
    return Invalid("CUDA kernels take rotated widths up to " + std::to_string(kMaxN) + ", got " + std::to_string(rot->n));
  const int64_t expected = rj_raw_param_count(rot->kind, rot->dim);
  if (raw_count != expected)
    return Invalid("rotation kind " + std::to_string(kind) + " on dim " + std::to_string(dim) + " takes " +
                   std::to_string(expected) + " parameters, got " + std::to_string(raw_count));
  if (PreparedCount(*rot) > kMaxParams) return Invalid("rotation parameters exceed the CUDA constant buffer");
  return ffi::Error::Success();
}

// One thread per block matrix (or sign): the raw parameters → prepared parameters, in global scratch.
static __global__ void PrepareRotationKernel(int kind, int count, const float* raw, float* out) {
  const int g = blockIdx.x * blockDim.x + threadIdx.x;
  if (g >= count) return;
  if (kind == RJ_KIND_HADAMARD) {
    out[g] = raw[g];
  } else {
    const int k = rj_block_size(kind);
    rj_block_matrices(kind, raw + g * rj_params_per_block(kind), 1, out + g * k * k);
  }
}

// Bytes of device scratch SetRotation needs.
inline size_t RotationScratchBytes(const RotationShape& rot) {
  return size_t(PreparedCount(rot) > 0 ? PreparedCount(rot) : 1) * sizeof(float);
}

// The device address of this module's c_params on the current device, looked up once per device:
// cudaMemcpyToSymbolAsync resolves the symbol on every call (the H200 timeline showed ~20 µs between
// the preparing kernel and the copy).
inline ffi::Error ParamsAddress(float** out) {
  static std::atomic<float*> address[64];
  int device = 0;
  if (ffi::Error err = CudaError(cudaGetDevice(&device), "finding the device"); err.failure()) return err;
  if (device < 0 || device >= 64) return ffi::Error::Internal("rotorjax CUDA: device index out of range");
  float* p = address[device].load();
  if (!p) {
    void* found = nullptr;
    if (ffi::Error err = CudaError(cudaGetSymbolAddress(&found, c_params), "finding the rotation buffer"); err.failure())
      return err;
    p = static_cast<float*>(found);
    address[device].store(p);
  }
  *out = p;
  return ffi::Error::Success();
}

// Prepares `raw` into this module's c_params on the stream: every launch after it on the stream sees
// them, until the next SetRotation. scratch: RotationScratchBytes(rot) of device memory.
inline ffi::Error SetRotation(cudaStream_t stream, const RotationShape& rot, const float* raw, float* scratch) {
  if (rot.kind == RJ_KIND_NONE) return ffi::Error::Success();
  float* params = nullptr;
  if (ffi::Error err = ParamsAddress(&params); err.failure()) return err;
  const int items = rot.kind == RJ_KIND_HADAMARD ? rot.n : rj_num_blocks(rot.kind, rot.dim);
  PrepareRotationKernel<<<(items + 127) / 128, 128, 0, stream>>>(rot.kind, items, raw, scratch);
  if (ffi::Error err = LaunchError("preparing the rotation"); err.failure()) return err;
  return CudaError(cudaMemcpyAsync(params, scratch, size_t(PreparedCount(rot)) * sizeof(float), cudaMemcpyDeviceToDevice,
                                   stream),
                   "copying the rotation to constant memory");
}

// Device scratch for one call from CUDA's stream-ordered allocator: allocated and freed on the call's
// stream, so it lives exactly as long as the kernels queued in between. (XLA's FFI ScratchAllocator
// refused even 3 KB on jax 0.11.2 / H200: "could not allocate 3096 bytes of scratch".)
//
// The device's default pool would hand freed memory back to the driver at every synchronisation
// (release threshold 0), so each call's allocation would map memory afresh; keeping up to 256 MiB
// pooled makes it a sub-allocation. Set once per device, process-wide (XLA's own allocator does not
// use this pool).
inline void KeepPoolMemory(cudaStream_t stream) {
  static std::once_flag done[64];
  int device = 0;
  if (cudaStreamGetDevice(stream, &device) != cudaSuccess || device < 0 || device >= 64) return;
  std::call_once(done[device], [device] {
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, device) != cudaSuccess) return;
    uint64_t threshold = uint64_t(256) << 20;
    cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold);
  });
}

class StreamScratch {
 public:
  explicit StreamScratch(cudaStream_t stream) : stream_(stream) { KeepPoolMemory(stream); }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  ~StreamScratch() {
    for (void* p : ptrs_) cudaFreeAsync(p, stream_);
  }
  ffi::Error Allocate(size_t bytes, void** out) {
    if (ffi::Error err = CudaError(cudaMallocAsync(out, bytes, stream_), "allocating scratch"); err.failure()) return err;
    ptrs_.push_back(*out);
    return ffi::Error::Success();
  }

 private:
  cudaStream_t stream_;
  std::vector<void*> ptrs_;
};

}  // namespace
}  // namespace cuda
}  // namespace rotorjax

namespace rotorjax {
namespace cuda {
// Internal linkage: each .cu is its own CUDA module with its own c_params, so nothing that touches
// them (SetRotation, the kernels' host stubs) may be merged across translation units by the linker.
namespace {

// Threads (= vectors) per block of the one-thread-per-vector kernels: 128 for widths up to 160,
// else 32 so that a block's float tile stays well inside shared memory.
inline int RowsPerBlock(int width) { return width <= 160 ? 128 : 32; }

// Raises kernel's dynamic shared-memory limit to smem, once per (kernel, device, size): the attribute
// call is host time on every launch otherwise. Every size goes through it, not only those over the
// default 48 KB: that default bounds static plus dynamic memory, and some kernels hold their codebooks
// in static shared memory (up to 24 KB).
template <typename Kernel>
ffi::Error RaiseSmemLimit(Kernel kernel, size_t smem, const char* what) {
  if (smem == 0) return ffi::Error::Success();
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, size_t> raised;
  int device = 0;
  if (ffi::Error err = CudaError(cudaGetDevice(&device), what); err.failure()) return err;
  const std::pair<const void*, int> key{reinterpret_cast<const void*>(kernel), device};
  std::lock_guard<std::mutex> lock(mutex);
  if (raised[key] >= smem) return ffi::Error::Success();
  if (ffi::Error err = CudaError(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)), what);
      err.failure())
    return err;
  raised[key] = smem;
  return ffi::Error::Success();
}

// Launches kernel<<<grid, threads, smem, stream>>> (raising its dynamic shared-memory limit first).
template <typename Kernel, typename Args>
ffi::Error Launch(Kernel kernel, dim3 grid, int threads, size_t smem, cudaStream_t stream, const Args& args,
                  const char* what) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return ffi::Error::Success();
  if (ffi::Error err = RaiseSmemLimit(kernel, smem, what); err.failure()) return err;
  kernel<<<grid, threads, smem, stream>>>(args);
  return LaunchError(what);
}

// Launch as a programmatic dependent of the previous kernel on the stream (Hopper's programmatic
// dependent launch): kernel's blocks may start, and stage what does not depend on that kernel, while it
// is still running; they must execute GridDependencyWait() before reading its output. Used after the
// 7–8 µs query rotations, which the main kernels' first loads then overlap (on the H200, attention_decode
// 1–2 % faster, scores within run-to-run noise: docs/cuda_notes.md).
template <typename Kernel, typename Args>
ffi::Error LaunchAfter(Kernel kernel, dim3 grid, int threads, size_t smem, cudaStream_t stream, const Args& args,
                       const char* what) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return ffi::Error::Success();
  if (ffi::Error err = RaiseSmemLimit(kernel, smem, what); err.failure()) return err;
  cudaLaunchAttribute attr;
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = dim3(unsigned(threads));
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = &attr;
  config.numAttrs = 1;
  return CudaError(cudaLaunchKernelEx(&config, kernel, args), what);
}

// The maximum (sum) of x over the 32 lanes of a warp, in every lane (all lanes must call it).
template <typename T>
__device__ __forceinline__ T WarpMax(T x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = max(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float WarpSum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// In a kernel launched by LaunchAfter: waits until the kernel before it has finished and its writes
// are visible (a no-op when launched plainly).
__device__ __forceinline__ void GridDependencyWait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }

// In the kernel before one launched by LaunchAfter: lets the dependent grid launch now.
__device__ __forceinline__ void LaunchDependents() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }

// Blocks of `kernel` the whole GPU holds at once (SMs × resident blocks per SM, at least 1), for
// attention_decode's split choice (the kernel's dynamic shared-memory limit raised to smem first).
template <typename Kernel>
ffi::Error ResidentBlocks(Kernel kernel, int threads, size_t smem, const char* what, long long* out) {
  // The occupancy query is slow enough to show on the timeline of a 0.5 ms call: remember answers
  // per (kernel, device, threads, smem).
  using Key = std::tuple<const void*, int, int, size_t>;
  static std::mutex mutex;
  static std::map<Key, long long> known;
  int device = 0, sms = 0, per_sm = 0;
  if (ffi::Error err = CudaError(cudaGetDevice(&device), what); err.failure()) return err;
  const Key key{reinterpret_cast<const void*>(kernel), device, threads, smem};
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = known.find(key); it != known.end()) return *out = it->second, ffi::Error::Success();
  }
  if (ffi::Error err = CudaError(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), what); err.failure())
    return err;
  if (ffi::Error err = RaiseSmemLimit(kernel, smem, what); err.failure()) return err;
  if (ffi::Error err = CudaError(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem), what);
      err.failure())
    return err;
  *out = (long long)sms * per_sm > 0 ? (long long)sms * per_sm : 1;
  std::lock_guard<std::mutex> lock(mutex);
  known[key] = *out;
  return ffi::Error::Success();
}

// Splits of each of `items` independent work items (attention_decode: a (pair, row chunk); scores: a
// (batch, row chunk)) of `tiles` tiles: every block streams the same number of whole tiles and `slots`
// blocks run at once (SMs × resident blocks per SM), so over 1–8 waves pick the split count that
// leaves the fewest slot-tiles idle, counting each block's fixed work (prologue; attention's lane
// reduction, partials and their merge) as a quarter tile (ties: the fewest blocks).
inline void ChooseSplits(long long items, long long tiles, long long slots, int* splits, int* tiles_per_split) {
  constexpr double kBlockTiles = 0.25;
  double best = -1.0;
  for (long long waves = 1; waves <= 8; ++waves) {
    long long s = waves * slots / items;
    s = s < 1 ? 1 : (s > tiles ? tiles : s);
    const long long per = (tiles + s - 1) / s;
    s = (tiles + per - 1) / per;
    const long long rounds = (items * s + slots - 1) / slots;
    const double use = double(items * tiles) / (double(rounds) * double(slots) * (double(per) + kBlockTiles));
    if (use > best + 1e-9) best = use, *splits = int(s), *tiles_per_split = int(per);
  }
}

// Specialisations with everything compile-time (registers only, loops unrolled) for the shapes that
// matter most; every other shape runs the generic instantiation (runtime sizes, local memory).
// X(kind, n, bits): n is the rotated width, which must equal the input dim.
#define RJ_CUDA_FAST_SHAPES(X) \
  X(RJ_KIND_ROTOR_MIX, 128, 4) \
  X(RJ_KIND_ROTOR_MIX, 128, 3) \
  X(RJ_KIND_ROTOR_MIX, 128, 2)

}  // namespace
}  // namespace cuda
}  // namespace rotorjax
