// Common to every rotorjax Metal kernel: the Metal standard library, the shared kernel maths, the
// argument block, and element loads/stores. Every kernel runs one thread per vector with the vector
// in thread-private arrays (tiles of lanes = 1), so no kernel needs threadgroup memory or barriers.
#ifndef ROTORJAX_METAL_KERNELS_RJ_METAL_H_
#define ROTORJAX_METAL_KERNELS_RJ_METAL_H_

#include <metal_stdlib>

#include "rotorjax/kernel_math.h"
#include "rotorjax_metal/args.h"

using namespace metal;

// Element i of a float32 or float16 array, as float.
inline float rj_metal_load(device const uchar* base, int dtype, int i) {
  return dtype == RJ_METAL_F16 ? float(((device const half*)base)[i]) : ((device const float*)base)[i];
}

// Stores v as element i of a float32 or float16 array (to half: round to nearest even).
inline void rj_metal_store(device uchar* base, int dtype, int i, float v) {
  if (dtype == RJ_METAL_F16) ((device half*)base)[i] = half(v);
  else ((device float*)base)[i] = v;
}

// Row `row` of a (rows, width) float32/float16 array into v[0, width), zeros in v[width, n).
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
