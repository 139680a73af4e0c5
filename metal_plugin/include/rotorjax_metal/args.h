/* The one argument block every rotorjax Metal kernel takes (as `constant rj_metal_args&`), shared by
 * the shaders, the Objective-C++ host and the CPU emulation harness, so all three agree on its layout
 * (plain 32-bit fields: the same in MSL and C++). */
#ifndef ROTORJAX_METAL_ARGS_H_
#define ROTORJAX_METAL_ARGS_H_

/* Element types of float inputs and outputs (x for encode and rotate, x̂ for decode, queries for
 * scores): the three the CPU kernels take. */
#define RJ_METAL_F32 0
#define RJ_METAL_F16 1
#define RJ_METAL_BF16 2

/* Largest rotated width n (and QJL rows m) a kernel accepts: its per-thread arrays are this long. */
#define RJ_METAL_MAX_N 1024

struct rj_metal_args {
  int kind;      /* RJ_KIND_* of rotorjax/kernel_math.h */
  int dim;       /* coordinates of the input / output vectors */
  int n;         /* rotated coordinates, rj_padded_dim(kind, dim) */
  int bits;      /* bits per codebook index */
  int m;         /* QJL sketch rows; 0 without QJL */
  int rows;      /* vectors encoded or decoded; for scores, the encoded keys */
  int queries;   /* scores only: the queries */
  int inverse;   /* rotate only: 1 for (Πᵀ y)[:dim], 0 for Π [x; 0] */
  int dtype;     /* RJ_METAL_F32, RJ_METAL_F16 or RJ_METAL_BF16 */
  int blocks;    /* block matrices built from the raw rotation parameters (rj_num_blocks) */
  float divisor; /* scores only: 1 − D to debias MSE-only scores, else 1 */
};

#endif /* ROTORJAX_METAL_ARGS_H_ */
