// Float32-accurate products on the tensor cores from float16 halves (the word-wise scores and
// attention_decode).
// A value x, first scaled by a power of two that puts the largest |x| of its set in [2^14, 2^15), is
// carried as x ≈ hi + lo with hi = f16(x) and lo = f16(x − hi): 22 significant bits. In an m16n8k16
// product a register holds two consecutive k-elements, so an A register can be a split value itself,
// (hi, lo) of one element, against a B register holding that element's partner twice, (b, b):
// the product sums hi·b + lo·b = x·b, and each k-step covers 8 elements. B's own two halves go into
// separate N columns, [b_hi | b_lo], summed after the product.
#pragma once

#include <cuda_fp16.h>

#include "cuda_common.cuh"

namespace rotorjax {
namespace cuda {
namespace {

// e with |x| < 2^e for the largest |x| of a set (maxabs), clamped to [−100, 129] so that 2^(15 − e)
// and 2^(e − 15) are normal floats; a set of zeros gets −100.
__device__ __forceinline__ int SplitExponent(float maxabs) {
  const int e = ((__float_as_int(maxabs) >> 23) & 0xff) - 126;  // maxabs = m · 2^e, m in [0.5, 1)
  return e < -100 ? -100 : e;
}

// 2^k for k in [−126, 127].
__device__ __forceinline__ float Pow2(int k) { return __int_as_float((127 + k) << 23); }

// x (already scaled) as a float16 pair: hi in the low half, lo in the high half.
__device__ __forceinline__ unsigned SplitHalves(float x) {
  const __half hi = __float2half_rn(x);
  const __half lo = __float2half_rn(x - __half2float(hi));
  return unsigned(__half_as_ushort(hi)) | unsigned(__half_as_ushort(lo)) << 16;
}

// A split value's hi (lo) half in both halves of a register: a B operand against split A registers.
__device__ __forceinline__ unsigned HighTwice(unsigned split) { return __byte_perm(split, 0u, 0x1010); }
__device__ __forceinline__ unsigned LowTwice(unsigned split) { return __byte_perm(split, 0u, 0x3232); }

// d += A·B for one m16n8k16 tile (float16 in, float32 accumulate). With g = lane / 4, t = lane % 4:
// a[0] holds A[g][2t, 2t+1], a[1] A[g+8][2t, 2t+1], a[2] A[g][2t+8, 2t+9], a[3] A[g+8][2t+8, 2t+9];
// b0 holds B[2t, 2t+1][g], b1 B[2t+8, 2t+9][g]; d holds D[g][2t, 2t+1], then D[g+8][2t, 2t+1].
__device__ __forceinline__ void Mma16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace
}  // namespace cuda
}  // namespace rotorjax
