// Scores ⟨q, x̂⟩ = ‖x‖ · ⟨Π q, ŷ⟩ / divisor straight from the codes (rotorjax.quantizer.TurboQuant.scores),
// in two dispatches: rotorjax_rotate_queries (one thread per query: Π q, and S Π q with QJL), then
// rotorjax_scores (one thread per encoded key, looping over the rotated queries).
#include "rj_metal.h"
#include "rotorjax/kernel_math.h"

kernel void rotorjax_rotate_queries(device const uchar* q [[buffer(0)]],  // (queries, dim) f32 / f16 / bf16
                                    constant float* rot [[buffer(1)]],    // signs or block matrices
                                    constant float* qjl [[buffer(2)]],    // S (m, n); unread when m = 0
                                    device float* q_rot [[buffer(3)]],    // (queries, n)
                                    device float* q_proj [[buffer(4)]],   // (queries, m)
                                    constant rj_metal_args& a [[buffer(5)]],
                                    uint gid [[thread_position_in_grid]]) {
  if (gid >= uint(a.queries)) return;
  const int i = int(gid), n = a.n;
  float v[RJ_METAL_MAX_N];
  rj_metal_load_row(q, a.dtype, i, a.dim, n, v);
  rj_rotate(a.kind, v, n, 1, rot, 0);
  for (int c = 0; c < n; ++c) q_rot[i * n + c] = v[c];
  if (a.m > 0) {
    float p[RJ_METAL_MAX_N];
    rj_dense_matvec(v, p, 1, qjl, a.m, n, 0);
    for (int j = 0; j < a.m; ++j) q_proj[i * a.m + j] = p[j];
  }
}

kernel void rotorjax_scores(device const float* q_rot [[buffer(0)]],     // (queries, n)
                            device const float* q_proj [[buffer(1)]],    // (queries, m)
                            device const uchar* codes [[buffer(2)]],     // (rows, ⌈n·bits/8⌉)
                            device const float* norms [[buffer(3)]],     // (rows)
                            constant float* centroids [[buffer(4)]],     // 2^bits
                            device const uchar* qjl_bits [[buffer(5)]],  // (rows, ⌈m/8⌉)
                            device const float* qjl_norms [[buffer(6)]], // (rows)
                            device float* out [[buffer(7)]],             // (queries, rows)
                            constant rj_metal_args& a [[buffer(8)]],
                            uint gid [[thread_position_in_grid]]) {
  if (gid >= uint(a.rows)) return;
  const int key = int(gid), n = a.n, m = a.m;
  float y[RJ_METAL_MAX_N], signs[RJ_METAL_MAX_N], qv[RJ_METAL_MAX_N];
  int idx[RJ_METAL_MAX_N];
  uchar packed[RJ_METAL_MAX_N];
  const int nbytes = rj_packed_size(n, a.bits);
  rj_metal_bytes_in(codes + key * nbytes, nbytes, packed);
  rj_unpack(packed, n, 1, a.bits, idx);
  rj_dequantize(idx, n, centroids, y);
  if (m > 0) {
    const int qbytes = rj_packed_size(m, 1);
    rj_metal_bytes_in(qjl_bits + key * qbytes, qbytes, packed);
    rj_unpack(packed, m, 1, 1, idx);
    for (int j = 0; j < m; ++j) signs[j] = 2.0f * float(idx[j]) - 1.0f;
  }
  const float norm = norms[key], gamma = m > 0 ? qjl_norms[key] : 0.0f;
  for (int i = 0; i < a.queries; ++i) {
    float dot, sketch;
    // rj_tile_dot reads thread memory: copy the query row in (it is shared by all keys, so cached).
    for (int c = 0; c < n; ++c) qv[c] = q_rot[i * n + c];
    rj_tile_dot(qv, y, n, 1, &dot);
    if (m > 0) {
      for (int j = 0; j < m; ++j) qv[j] = q_proj[i * m + j];
      rj_tile_dot(qv, signs, m, 1, &sketch);
      dot += gamma * rj_qjl_scale(m) * sketch;
    }
    out[i * a.rows + key] = dot / a.divisor * norm;
  }
}
