// Common to every rotorjax Metal kernel: the Metal standard library, the shared kernel maths, the
// argument block, and element loads/stores. Every kernel runs one thread per vector with the vector
// in thread-private arrays (tiles of lanes = 1), so no kernel needs threadgroup memory or barriers.
#ifndef ROTORJAX_METAL_KERNELS_RJ_METAL_H_
#define ROTORJAX_METAL_KERNELS_RJ_METAL_H_

#include <metal_stdlib>

#include "rotorjax/kernel_math.h"
#include "rotorjax_metal/args.h"

using namespace metal;

// Element i of a float32, float16 or bfloat16 array, as float (bfloat16 is the high half of a float).
inline float rj_metal_load(device const uchar* base, int dtype, int i) {
  if (dtype == RJ_METAL_F16) return float(((device const half*)base)[i]);
  if (dtype == RJ_METAL_BF16) return as_type<float>(uint(((device const ushort*)base)[i]) << 16);
  return ((device const float*)base)[i];
}

// Stores v as element i of a float32, float16 or bfloat16 array, rounding to nearest even as XLA's
// conversions do (bfloat16 by bits: NaN stays a quiet NaN).
inline void rj_metal_store(device uchar* base, int dtype, int i, float v) {
  if (dtype == RJ_METAL_F16) {
    ((device half*)base)[i] = half(v);
  } else if (dtype == RJ_METAL_BF16) {
    const uint u = as_type<uint>(v);
    ((device ushort*)base)[i] = (u & 0x7fffffffu) > 0x7f800000u ? ushort((u >> 16) | 0x40u)
                                                                : ushort((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  } else {
    ((device float*)base)[i] = v;
  }
}

// Row `row` of a (rows, width) float array of `dtype` into v[0, width), zeros in v[width, n).
inline void rj_metal_load_row(device const uchar* x, int dtype, int row, int width, int n, thread float* v) {
  for (int c = 0; c < n; ++c) v[c] = c < width ? rj_metal_load(x, dtype, row * width + c) : 0.0f;
}

// Byte copies between a vector's slice of a packed device array and a thread-private byte tile (the
// header's rj_pack / rj_unpack work on thread memory).
inline void rj_metal_bytes_in(device const uchar* src, int count, thread uchar* dst) {
  for (int k = 0; k < count; ++k) dst[k] = src[k];
}
inline void rj_metal_bytes_out(thread const uchar* src, int count, device uchar* dst) {
  for (int k = 0; k < count; ++k) dst[k] = src[k];
}

#endif  // ROTORJAX_METAL_KERNELS_RJ_METAL_H_
