// rotorjax_block_matrices: raw rotation parameters (rotors, Givens angles, quaternions) → row-major
// k×k block matrices, one thread per block, run once per call before the op kernels that read them.
#include "rj_metal.h"
#include "rotorjax/kernel_math.h"

kernel void rotorjax_block_matrices(constant float* raw [[buffer(0)]],
                                    device float* mats [[buffer(1)]],
                                    constant rj_metal_args& a [[buffer(2)]],
                                    uint g [[thread_position_in_grid]]) {
  if (g >= uint(a.blocks)) return;
  const int k = rj_block_size(a.kind);
  float m[16];
  rj_block_matrices(a.kind, raw + int(g) * rj_params_per_block(a.kind), 1, m);
  for (int i = 0; i < k * k; ++i) mats[int(g) * k * k + i] = m[i];
}
