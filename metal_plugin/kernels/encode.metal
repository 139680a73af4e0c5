// rotorjax_encode, one thread per vector: norm → normalise → rotate → quantize → pack, plus the QJL
// sketch bits and residual norm when a.m > 0 (rotorjax.quantizer.TurboQuant.encode).
#include "rj_metal.h"
#include "rotorjax/kernel_math.h"

kernel void rotorjax_encode(device const uchar* x [[buffer(0)]],       // (rows, dim) f32 / f16 / bf16
                            constant float* rot [[buffer(1)]],         // signs or block matrices
                            constant float* boundaries [[buffer(2)]],  // 2^bits − 1
                            constant float* centroids [[buffer(3)]],   // 2^bits
                            constant float* qjl [[buffer(4)]],         // S (m, n); unread when m = 0
                            device uchar* codes [[buffer(5)]],         // (rows, ⌈n·bits/8⌉)
                            device float* norms [[buffer(6)]],         // (rows)
                            device uchar* qjl_bits [[buffer(7)]],      // (rows, ⌈m/8⌉)
                            device float* qjl_norms [[buffer(8)]],     // (rows)
                            constant rj_metal_args& a [[buffer(9)]],
                            uint gid [[thread_position_in_grid]]) {
  if (gid >= uint(a.rows)) return;
  const int row = int(gid), n = a.n;
  float v[RJ_METAL_MAX_N];
  int idx[RJ_METAL_MAX_N];
  uchar packed[RJ_METAL_MAX_N];
  rj_metal_load_row(x, a.dtype, row, a.dim, n, v);
  float norm = 0.0f;
  for (int c = 0; c < a.dim; ++c) norm += v[c] * v[c];
  norm = precise::sqrt(norm);
  // Zero vectors keep norm 0 and encode the rotated zero vector, as the reference does.
  const float scale = norm > 0.0f ? norm : 1.0f;
  for (int c = 0; c < a.dim; ++c) v[c] /= scale;
  rj_rotate(a.kind, v, n, 1, rot, 0);
  rj_quantize(v, idx, n, boundaries, a.bits);
  const int nbytes = rj_packed_size(n, a.bits);
  rj_pack(idx, n, 1, a.bits, packed);
  rj_metal_bytes_out(packed, nbytes, codes + row * nbytes);
  norms[row] = norm;
  if (a.m > 0) {
    float r[RJ_METAL_MAX_N], proj[RJ_METAL_MAX_N];
    int sketch[RJ_METAL_MAX_N];
    float gamma;
    rj_qjl_sketch(v, idx, n, 1, centroids, qjl, a.m, r, proj, sketch, &gamma);
    const int qbytes = rj_packed_size(a.m, 1);
    rj_pack(sketch, a.m, 1, 1, packed);
    rj_metal_bytes_out(packed, qbytes, qjl_bits + row * qbytes);
    qjl_norms[row] = gamma;
  }
}
