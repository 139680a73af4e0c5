// rotorjax_decode, one thread per vector: unpack → centroids (+ QJL term) → scale by the norm →
// inverse rotation, stored in the output dtype (rotorjax.quantizer.TurboQuant.decode).
#include "rj_metal.h"
#include "rotorjax/kernel_math.h"

kernel void rotorjax_decode(device const uchar* codes [[buffer(0)]],     // (rows, ⌈n·bits/8⌉)
                            device const float* norms [[buffer(1)]],     // (rows)
                            constant float* rot [[buffer(2)]],           // signs or block matrices
                            constant float* centroids [[buffer(3)]],     // 2^bits
                            constant float* qjl [[buffer(4)]],           // S (m, n); unread when m = 0
                            device const uchar* qjl_bits [[buffer(5)]],  // (rows, ⌈m/8⌉)
                            device const float* qjl_norms [[buffer(6)]], // (rows)
                            device uchar* out [[buffer(7)]],             // (rows, dim) f32 / f16 / bf16
                            constant rj_metal_args& a [[buffer(8)]],
                            uint gid [[thread_position_in_grid]]) {
  if (gid >= uint(a.rows)) return;
  const int row = int(gid), n = a.n;
  float v[RJ_METAL_MAX_N];
  int idx[RJ_METAL_MAX_N];
  uchar packed[RJ_METAL_MAX_N];
  const int nbytes = rj_packed_size(n, a.bits);
  rj_metal_bytes_in(codes + row * nbytes, nbytes, packed);
  rj_unpack(packed, n, 1, a.bits, idx);
  rj_dequantize(idx, n, centroids, v);
  if (a.m > 0) {
    float signs[RJ_METAL_MAX_N], proj[RJ_METAL_MAX_N];
    int sketch[RJ_METAL_MAX_N];
    float gamma = qjl_norms[row];
    const int qbytes = rj_packed_size(a.m, 1);
    rj_metal_bytes_in(qjl_bits + row * qbytes, qbytes, packed);
    rj_unpack(packed, a.m, 1, 1, sketch);
    rj_qjl_correct(v, n, 1, sketch, qjl, a.m, &gamma, signs, proj);
  }
  const float norm = norms[row];
  for (int c = 0; c < n; ++c) v[c] *= norm;
  rj_rotate(a.kind, v, n, 1, rot, 1);
  for (int c = 0; c < a.dim; ++c) rj_metal_store(out, a.dtype, row * a.dim + c, v[c]);
}
