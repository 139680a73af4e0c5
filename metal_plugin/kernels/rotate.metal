// rotorjax_rotate, one thread per vector: Π [x; 0] (dim → n coordinates) or, with a.inverse,
// (Πᵀ y)[:dim] (n → dim), in the vectors' dtype (rotorjax.ops.rotate / inverse_rotate).
#include "rj_metal.h"
#include "rotorjax/kernel_math.h"

kernel void rotorjax_rotate(device const uchar* x [[buffer(0)]],  // (rows, dim), or (rows, n) inverse
                            constant float* rot [[buffer(1)]],    // signs or block matrices
                            device uchar* out [[buffer(2)]],      // (rows, n), or (rows, dim) inverse
                            constant rj_metal_args& a [[buffer(3)]],
                            uint gid [[thread_position_in_grid]]) {
  if (gid >= uint(a.rows)) return;
  const int row = int(gid), n = a.n, in_width = a.inverse ? n : a.dim, out_width = a.inverse ? a.dim : n;
  float v[RJ_METAL_MAX_N];
  rj_metal_load_row(x, a.dtype, row, in_width, n, v);
  rj_rotate(a.kind, v, n, 1, rot, a.inverse);
  for (int c = 0; c < out_width; ++c) rj_metal_store(out, a.dtype, row * out_width + c, v[c]);
}
