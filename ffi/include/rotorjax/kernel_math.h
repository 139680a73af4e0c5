/* rotorjax kernel maths: the one source of truth for every kernel (C++ CPU, CUDA, Metal).
 *
 * Plain C-style inline functions over pointers; no std::, no templates, no recursion, no allocation,
 * no 64-bit integers, no double. The pure-JAX code in rotorjax/ is the reference these functions
 * reproduce (rotations.py, clifford.py, packing.py, quantizer.py).
 *
 * TILES. Vector-valued functions work on a "tile" of `lanes` vectors stored coordinate-major:
 * coordinate c of vector l is v[c * lanes + l]. lanes = 1 is one plain contiguous vector (a GPU
 * thread per vector); the CPU kernels use lanes = 16 so the innermost loop over lanes vectorises
 * (SIMD across vectors: every operation below is the same for all lanes).
 *
 * ADDRESS SPACES (override any of these before including, e.g. for threadgroup memory on Metal):
 *   RJ_THREAD  working tiles (registers / thread-local arrays);
 *   RJ_PARAM   read-only parameters: block matrices, signs, boundaries, centroids, QJL matrix;
 *   RJ_DEVICE  input/output data in global memory (packed codes).
 * RJ_FN qualifies every function (__host__ __device__ under nvcc).
 *
 * MATRICES are row-major: a k×k block is m[r * k + c].
 */
#ifndef ROTORJAX_KERNEL_MATH_H_
#define ROTORJAX_KERNEL_MATH_H_

#if defined(__METAL_VERSION__)
#include <metal_stdlib>
#ifndef RJ_FN
#define RJ_FN inline
#endif
#ifndef RJ_THREAD
#define RJ_THREAD thread
#endif
#ifndef RJ_PARAM
#define RJ_PARAM constant
#endif
#ifndef RJ_DEVICE
#define RJ_DEVICE device
#endif
#define RJ_SQRT(x) metal::precise::sqrt(x)
#define RJ_COS(x) metal::precise::cos(x)
#define RJ_SIN(x) metal::precise::sin(x)
#define RJ_INF INFINITY
#elif defined(__CUDACC__)
#ifndef RJ_FN
#define RJ_FN __host__ __device__ inline
#endif
#define RJ_SQRT(x) sqrtf(x)
#define RJ_COS(x) cosf(x)
#define RJ_SIN(x) sinf(x)
#define RJ_INF __builtin_huge_valf() /* host and device */
/* Constant trip counts (fixed kind, width and bits in a specialised kernel) unroll fully, so a
 * thread's vector stays in registers instead of local memory. */
#define RJ_UNROLL _Pragma("unroll")
#else
#include <math.h>
#ifndef RJ_FN
#if defined(__GNUC__)
/* Forced inlining lets the compiler see constant `lanes`/`k` and vectorise the lane loops. */
#define RJ_FN inline __attribute__((always_inline))
#else
#define RJ_FN inline
#endif
#endif
#define RJ_SQRT(x) sqrtf(x)
#define RJ_COS(x) cosf(x)
#define RJ_SIN(x) sinf(x)
#define RJ_INF INFINITY
#endif

#ifndef RJ_UNROLL
#define RJ_UNROLL
#endif
/* On output tiles of functions that read parameters through other pointers: without it the CPU
 * compiler must assume a store may change the parameters and keeps gathers like c[idx[i]] scalar. */
#ifndef RJ_RESTRICT
#if defined(__METAL_VERSION__)
#define RJ_RESTRICT
#else
#define RJ_RESTRICT __restrict__
#endif
#endif
#ifndef RJ_THREAD
#define RJ_THREAD
#endif
#ifndef RJ_PARAM
#define RJ_PARAM const
#endif
#ifndef RJ_DEVICE
#define RJ_DEVICE
#endif

/* Rotation kinds as the kernels number them. RJ_KIND_NONE: the input is already rotated (the dense
 * "haar" rotation runs on the platform's matrix multiply, not here). */
#define RJ_KIND_NONE 0
#define RJ_KIND_HADAMARD 1
#define RJ_KIND_ROTOR 2
#define RJ_KIND_PLANAR 3
#define RJ_KIND_ISO 4
#define RJ_KIND_ROTOR_MIX 5

/* ------------------------------------------------------------------------------------------------
 * Integer helpers
 * ---------------------------------------------------------------------------------------------- */

/* Smallest power of two >= n (n >= 1). */
RJ_FN int rj_next_pow2(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

/* Largest power of two <= n (n >= 1). Bit smearing rather than a loop: a constant n then folds to a
 * constant before loops that depend on it are unrolled (the CUDA kernels' registers need that). */
RJ_FN int rj_largest_pow2(int n) {
  unsigned int u = (unsigned int)n;
  u |= u >> 1;
  u |= u >> 2;
  u |= u >> 4;
  u |= u >> 8;
  u |= u >> 16;
  return (int)(u - (u >> 1));
}

/* 1/sqrt(p) for p = 2^k, correctly rounded to float (exact powers of two times 1/sqrt(2)), so every
 * backend scales the Walsh–Hadamard transform identically. */
RJ_FN float rj_inv_sqrt_pow2(int p) {
  float s = 1.0f;
  int q = p;
  while (q >= 4) {
    s *= 0.5f;
    q >>= 2;
  }
  return q == 2 ? s * 0.70710678118654752f : s;
}

/* ------------------------------------------------------------------------------------------------
 * Block matrices from rotation parameters (the maths of rotorjax.clifford / rotorjax.rotations)
 * ---------------------------------------------------------------------------------------------- */

/* Cl(3,0) rotor r = [s, b12, b13, b23] → 3×3 matrix of v ↦ R v R̃ / ‖R‖² (homogeneous: any nonzero r
 * gives a rotation). In quaternion terms (w, x, y, z) = (s, -b23, b13, -b12). */
RJ_FN void rj_rotor_to_matrix(RJ_PARAM float* r, RJ_THREAD float* m) {
  const float w = r[0], x = -r[3], y = r[2], z = -r[1];
  const float n2 = w * w + x * x + y * y + z * z;
  m[0] = (w * w + x * x - y * y - z * z) / n2;
  m[1] = (2.0f * (x * y - w * z)) / n2;
  m[2] = (2.0f * (x * z + w * y)) / n2;
  m[3] = (2.0f * (x * y + w * z)) / n2;
  m[4] = (w * w - x * x + y * y - z * z) / n2;
  m[5] = (2.0f * (y * z - w * x)) / n2;
  m[6] = (2.0f * (x * z - w * y)) / n2;
  m[7] = (2.0f * (y * z + w * x)) / n2;
  m[8] = (w * w - x * x - y * y + z * z) / n2;
}

/* Givens angle θ → [[cos θ, -sin θ], [sin θ, cos θ]]. */
RJ_FN void rj_givens_matrix(float theta, RJ_THREAD float* m) {
  const float c = RJ_COS(theta), s = RJ_SIN(theta);
  m[0] = c;
  m[1] = -s;
  m[2] = s;
  m[3] = c;
}

/* Quaternion q = (w, x, y, z) → 4×4 matrix of p ↦ (q/‖q‖) p (left multiplication; orthogonal). */
RJ_FN void rj_quaternion_left_matrix(RJ_PARAM float* q, RJ_THREAD float* m) {
  const float nrm = RJ_SQRT(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  const float w = q[0] / nrm, x = q[1] / nrm, y = q[2] / nrm, z = q[3] / nrm;
  m[0] = w;  m[1] = -x; m[2] = -y;  m[3] = -z;
  m[4] = x;  m[5] = w;  m[6] = -z;  m[7] = y;
  m[8] = y;  m[9] = z;  m[10] = w;  m[11] = -x;
  m[12] = z; m[13] = -y; m[14] = x; m[15] = w;
}

/* Block size k of a kind's blocks (3 for rotor and rotor-mix, 2 planar, 4 iso; 0 otherwise). */
RJ_FN int rj_block_size(int kind) {
  return kind == RJ_KIND_PLANAR ? 2 : kind == RJ_KIND_ISO ? 4
         : (kind == RJ_KIND_ROTOR || kind == RJ_KIND_ROTOR_MIX) ? 3 : 0;
}

/* Floats of raw parameters per block: 4 for a rotor or quaternion, 1 for a Givens angle. */
RJ_FN int rj_params_per_block(int kind) { return kind == RJ_KIND_PLANAR ? 1 : 4; }

/* Coordinates a kind rotates for input dimension dim: next_pow2 for hadamard, max(dim, 3) for
 * rotor-mix, whole blocks for rotor/planar/iso, dim itself for RJ_KIND_NONE. */
RJ_FN int rj_padded_dim(int kind, int dim) {
  if (kind == RJ_KIND_HADAMARD) return rj_next_pow2(dim);
  if (kind == RJ_KIND_ROTOR_MIX) return dim < 3 ? 3 : dim;
  const int k = rj_block_size(kind);
  return k ? (dim + k - 1) / k * k : dim;
}

/* Raw parameters of `count` blocks → `count` row-major k×k matrices (k = rj_block_size(kind)).
 * For rotor-mix, count = stages · ⌈n/3⌉ rotors, stage-major. */
RJ_FN void rj_block_matrices(int kind, RJ_PARAM float* params, int count, RJ_THREAD float* mats) {
  const int k = rj_block_size(kind), pp = rj_params_per_block(kind);
  RJ_UNROLL
  for (int g = 0; g < count; ++g) {
    if (kind == RJ_KIND_PLANAR) rj_givens_matrix(params[g], mats + g * k * k);
    else if (kind == RJ_KIND_ISO) rj_quaternion_left_matrix(params + g * pp, mats + g * k * k);
    else rj_rotor_to_matrix(params + g * pp, mats + g * k * k);
  }
}

/* ------------------------------------------------------------------------------------------------
 * Linear maps on tiles
 * ---------------------------------------------------------------------------------------------- */

/* One k×k block (k ≤ 4) applied in place to coordinates [0, k) of the tile at v:
 * v ← m v, or v ← mᵀ v when `transpose` (the inverse of a rotation block). */
RJ_FN void rj_block_apply(RJ_THREAD float* v, int lanes, RJ_PARAM float* m, int k, int transpose) {
  float a[16];
  RJ_UNROLL
  for (int r = 0; r < k; ++r)
    RJ_UNROLL
    for (int c = 0; c < k; ++c) a[r * k + c] = transpose ? m[c * k + r] : m[r * k + c];
  RJ_UNROLL
  for (int l = 0; l < lanes; ++l) {
    float x[4], y[4];
    RJ_UNROLL
    for (int c = 0; c < k; ++c) x[c] = v[c * lanes + l];
    RJ_UNROLL
    for (int r = 0; r < k; ++r) {
      float acc = a[r * k] * x[0];
      RJ_UNROLL
      for (int c = 1; c < k; ++c) acc += a[r * k + c] * x[c];
      y[r] = acc;
    }
    RJ_UNROLL
    for (int r = 0; r < k; ++r) v[r * lanes + l] = y[r];
  }
}

/* Independent blocks on consecutive coordinates (rotor, planar, iso): block g acts on
 * [g·k, g·k + k) of a vector zero-padded to num_blocks·k. `inverse` applies the transposes. */
RJ_FN void rj_block_rotation(RJ_THREAD float* v, int lanes, RJ_PARAM float* mats, int num_blocks, int k,
                             int inverse) {
  RJ_UNROLL
  for (int g = 0; g < num_blocks; ++g) rj_block_apply(v + g * k * lanes, lanes, mats + g * k * k, k, inverse);
}

/* Butterfly q (of p/2) at stride h pairs coordinate j = (q / h)·2h + q % h with j + h. */
RJ_FN int rj_butterfly_index(int q, int h) { return ((q & ~(h - 1)) << 1) | (q & (h - 1)); }

/* Normalised Walsh–Hadamard transform in place over p = 2^j coordinates, times `scale`, Sylvester order:
 * y_i = p^{-1/2} Σ_j (-1)^{popcount(i & j)} x_j. Butterfly at stride h pairs (i, i + h) within each
 * block of 2h: (a, b) → (a + b, a − b), then a multiply by s = p^{-1/2}·scale. Orthogonal and its own
 * inverse. */
RJ_FN void rj_fwht_scaled(RJ_THREAD float* v, int p, int lanes, float scale) {
  const float s = rj_inv_sqrt_pow2(p) * scale;
#if defined(__CUDACC__)
  /* nvcc folds s into the last stride: t = b·s, (a·s + t, a·s − t), one FMUL and two FFMA per pair
   * against two FADD and two FMUL. */
  if (p == 1) {
    RJ_UNROLL
    for (int l = 0; l < lanes; ++l) v[l] *= s;
    return;
  }
  const int fold = 1;
#else
  /* The CPU compilers scale in a separate pass: the branch below in the inner loop made GCC 12's
   * transform 8× slower. */
  const int fold = 0;
#endif
  RJ_UNROLL
  for (int h = 1; h < p; h <<= 1) {
    const int last = fold && 2 * h == p;
    /* The same butterflies, scheduled per compiler. */
#if defined(__CUDACC__)
    /* One loop of constant trip count p/2 per stage, butterfly q pairing j = (q / h)·2h + q % h with
     * j + h: nvcc unrolls it fully and a thread's vector stays in registers (with the nested loops
     * below it leaves the inner loops rolled: 512 bytes of local memory per thread at p = 128). */
    RJ_UNROLL
    for (int q = 0; q < p / 2; ++q) {
      const int j = rj_butterfly_index(q, h);
#else
    /* Nested loops (trip counts p/2h and h): the CPU compiler sees contiguous, non-overlapping a/b
     * rows (the single loop above vectorised 4× slower with GCC 12). */
    for (int i = 0; i < p; i += 2 * h)
      for (int j = i; j < i + h; ++j) {
#endif
        RJ_THREAD float* a = v + j * lanes;
        RJ_THREAD float* b = v + (j + h) * lanes;
        RJ_UNROLL
        for (int l = 0; l < lanes; ++l) {
          const float x = a[l], y = b[l];
          if (last) {
            const float t = y * s;
            a[l] = x * s + t;
            b[l] = x * s - t;
          } else {
            a[l] = x + y;
            b[l] = x - y;
          }
        }
      }
  }
  if (!fold)
    RJ_UNROLL
    for (int i = 0; i < p * lanes; ++i) v[i] *= s;
}

/* The plain normalised transform (scale 1: the same multiply by p^{-1/2}). */
RJ_FN void rj_fwht(RJ_THREAD float* v, int p, int lanes) { rj_fwht_scaled(v, p, lanes, 1.0f); }

/* The "hadamard" rotation on n = next_pow2(dim) coordinates, times `scale`: forward y = H (s ⊙ x);
 * inverse x = s ⊙ (H y). */
RJ_FN void rj_hadamard_rotation(RJ_THREAD float* v, int n, int lanes, RJ_PARAM float* signs, int inverse, float scale) {
  if (!inverse)
    RJ_UNROLL
    for (int c = 0; c < n; ++c)
      RJ_UNROLL
      for (int l = 0; l < lanes; ++l) v[c * lanes + l] *= signs[c];
  rj_fwht_scaled(v, n, lanes, scale);
  if (inverse)
    RJ_UNROLL
    for (int c = 0; c < n; ++c)
      RJ_UNROLL
      for (int l = 0; l < lanes; ++l) v[c * lanes + l] *= signs[c];
}

/* Dense m×n matrix times each lane: out[j] = Σ_i S[j, i] in[i] (out = S in), or with `transpose`
 * out[i] = Σ_j S[j, i] in[j] (out = Sᵀ in, then in has m and out n coordinates). Used by QJL. */
RJ_FN void rj_dense_matvec(RJ_THREAD float* in, RJ_THREAD float* RJ_RESTRICT out, int lanes, RJ_PARAM float* s, int m,
                           int n, int transpose) {
  const int rows = transpose ? n : m, cols = transpose ? m : n;
  RJ_UNROLL
  for (int r = 0; r < rows * lanes; ++r) out[r] = 0.0f;
  RJ_UNROLL
  for (int r = 0; r < rows; ++r)
    RJ_UNROLL
    for (int c = 0; c < cols; ++c) {
      const float a = transpose ? s[c * n + r] : s[r * n + c];
      RJ_UNROLL
      for (int l = 0; l < lanes; ++l) out[r * lanes + l] += a * in[c * lanes + l];
    }
}

/* Inner products of one vector q (n coordinates, contiguous) with every lane of a tile:
 * out[l] = Σ_c q[c] · t[c, l]. */
RJ_FN void rj_tile_dot(RJ_THREAD const float* q, RJ_THREAD const float* t, int n, int lanes,
                        RJ_THREAD float* RJ_RESTRICT out) {
  RJ_UNROLL
  for (int l = 0; l < lanes; ++l) out[l] = 0.0f;
  RJ_UNROLL
  for (int c = 0; c < n; ++c)
    RJ_UNROLL
    for (int l = 0; l < lanes; ++l) out[l] += q[c] * t[c * lanes + l];
}

/* ------------------------------------------------------------------------------------------------
 * Rotor-mix: R_S H_S ⋯ R_1 H_1 R_0 on n = max(dim, 3) coordinates (no padding)
 * ---------------------------------------------------------------------------------------------- */

/* Walsh–Hadamard windows: P = rj_largest_pow2(n) wide; one window [0, P) if n = P, else two,
 * [0, P) and [n − P, n). There are windows + 1 rotor stages. */
RJ_FN int rj_rotor_mix_windows(int n) { return rj_largest_pow2(n) == n ? 1 : 2; }
RJ_FN int rj_rotor_mix_window_start(int window, int n) { return window == 0 ? 0 : n - rj_largest_pow2(n); }

/* A rotor stage has ⌈n/3⌉ 3×3 blocks; block g starts at min(3g, n − 3), so when 3 ∤ n the last
 * block overlaps the one before it and must be applied after it. */
RJ_FN int rj_rotor_stage_blocks(int n) { return (n + 2) / 3; }
RJ_FN int rj_rotor_stage_block_start(int g, int n) { return 3 * g < n - 3 ? 3 * g : n - 3; }

/* Number of k×k block matrices a kind uses on dim (0 for hadamard and RJ_KIND_NONE). */
RJ_FN int rj_num_blocks(int kind, int dim) {
  const int n = rj_padded_dim(kind, dim);
  if (kind == RJ_KIND_ROTOR_MIX) return (rj_rotor_mix_windows(n) + 1) * rj_rotor_stage_blocks(n);
  const int k = rj_block_size(kind);
  return k ? n / k : 0;
}

/* Floats of raw parameters a kind takes on dim: n signs for hadamard; one rotor, angle or quaternion
 * per block for rotor/planar/iso/rotor-mix; 0 for RJ_KIND_NONE. */
RJ_FN int rj_raw_param_count(int kind, int dim) {
  if (kind == RJ_KIND_HADAMARD) return rj_padded_dim(kind, dim);
  return rj_num_blocks(kind, dim) * rj_params_per_block(kind);
}

/* One rotor stage in place; blocks in order g = 0, 1, ... (forward) or reversed with transposed
 * blocks (`inverse`). mats: ⌈n/3⌉ row-major 3×3 matrices, `stride` floats apart (9 packed; a GPU
 * kernel pads its shared copy to 12, for 16-byte loads). */
RJ_FN void rj_rotor_stage_strided(RJ_THREAD float* v, int n, int lanes, RJ_PARAM float* mats, int stride, int inverse) {
  const int blocks = rj_rotor_stage_blocks(n);
  RJ_UNROLL
  for (int i = 0; i < blocks; ++i) {
    const int g = inverse ? blocks - 1 - i : i;
    rj_block_apply(v + rj_rotor_stage_block_start(g, n) * lanes, lanes, mats + stride * g, 3, inverse);
  }
}

RJ_FN void rj_rotor_stage(RJ_THREAD float* v, int n, int lanes, RJ_PARAM float* mats, int inverse) {
  rj_rotor_stage_strided(v, n, lanes, mats, 9, inverse);
}

/* Rotor-mix on n = 2^j coordinates (one window spans them all), times `scale` folded into the
 * Walsh–Hadamard normalisation: forward R_0, H, R_1; inverse R_1ᵀ, H, R_0ᵀ. Each stage's ⌈n/3⌉
 * matrices come through their own pointer and block stride, so that a GPU kernel may read one stage
 * from shared memory and the other from constant memory. */
RJ_FN void rj_rotor_mix_pow2(RJ_THREAD float* v, int n, int lanes, RJ_PARAM float* stage0, int stride0,
                             RJ_PARAM float* stage1, int stride1, int inverse, float scale) {
  rj_rotor_stage_strided(v, n, lanes, inverse ? stage1 : stage0, inverse ? stride1 : stride0, inverse);
  rj_fwht_scaled(v, n, lanes, scale);
  rj_rotor_stage_strided(v, n, lanes, inverse ? stage0 : stage1, inverse ? stride0 : stride1, inverse);
}

/* The whole rotor-mix rotation in place, times `scale`: rj_rotor_mix_pow2 when one window spans all n
 * coordinates, else a multiply at the end (a window's transform scales only its own coordinates).
 * mats: (windows + 1) stages × ⌈n/3⌉ matrices, stage-major. Forward: R_0, then for each window s:
 * H(window s), R_{s+1}. Inverse: the exact reverse order with transposed blocks (H is its own inverse). */
RJ_FN void rj_rotor_mix(RJ_THREAD float* v, int n, int lanes, RJ_PARAM float* mats, int inverse, float scale) {
  const int windows = rj_rotor_mix_windows(n), p = rj_largest_pow2(n), stage = 9 * rj_rotor_stage_blocks(n);
  if (windows == 1) {
    rj_rotor_mix_pow2(v, n, lanes, mats, 9, mats + stage, 9, inverse, scale);
    return;
  }
  if (!inverse) {
    rj_rotor_stage(v, n, lanes, mats, 0);
    RJ_UNROLL
    for (int s = 0; s < windows; ++s) {
      rj_fwht(v + rj_rotor_mix_window_start(s, n) * lanes, p, lanes);
      rj_rotor_stage(v, n, lanes, mats + (s + 1) * stage, 0);
    }
  } else {
    RJ_UNROLL
    for (int s = windows - 1; s >= 0; --s) {
      rj_rotor_stage(v, n, lanes, mats + (s + 1) * stage, 1);
      rj_fwht(v + rj_rotor_mix_window_start(s, n) * lanes, p, lanes);
    }
    rj_rotor_stage(v, n, lanes, mats, 1);
  }
  RJ_UNROLL
  for (int i = 0; i < n * lanes; ++i) v[i] *= scale;
}

/* Any kind in place on its n = padded_dim coordinates (zero-padded beyond dim by the caller), times
 * `scale`. params: signs for hadamard, block matrices (rj_block_matrices) for the block kinds and
 * rotor-mix; RJ_KIND_NONE leaves v unchanged but for the scale. The scale rides on the Walsh–Hadamard
 * normalisation where there is one, so a kernel that must scale anyway (by 1/‖x‖ or by ‖x‖) saves a
 * multiply per element; it rounds within an ulp of scaling before or after. */
RJ_FN void rj_rotate_scaled(int kind, RJ_THREAD float* v, int n, int lanes, RJ_PARAM float* params, int inverse,
                            float scale) {
  if (kind == RJ_KIND_HADAMARD) rj_hadamard_rotation(v, n, lanes, params, inverse, scale);
  else if (kind == RJ_KIND_ROTOR_MIX) rj_rotor_mix(v, n, lanes, params, inverse, scale);
  else {
    if (kind != RJ_KIND_NONE) {
      const int k = rj_block_size(kind);
      rj_block_rotation(v, lanes, params, n / k, k, inverse);
    }
    RJ_UNROLL
    for (int i = 0; i < n * lanes; ++i) v[i] *= scale;
  }
}

/* rj_rotate_scaled with scale 1 (bit-identical to no scaling: x · 1 = x, and compilers drop it). */
RJ_FN void rj_rotate(int kind, RJ_THREAD float* v, int n, int lanes, RJ_PARAM float* params, int inverse) {
  rj_rotate_scaled(kind, v, n, lanes, params, inverse, 1.0f);
}

/* ------------------------------------------------------------------------------------------------
 * Scalar quantization
 * ---------------------------------------------------------------------------------------------- */

/* Codebook index of y: the number of boundaries strictly less than y, for 2^bits − 1 ascending
 * boundaries (a branchless perfect binary search; equals jnp.searchsorted(bnd, y, side="left")). */
RJ_FN int rj_codebook_index(float y, RJ_PARAM float* bnd, int bits) {
  int pos = 0;
  RJ_UNROLL
  for (int h = 1 << (bits - 1); h > 0; h >>= 1) pos += bnd[pos + h - 1] < y ? h : 0;
  return pos;
}

/* rj_codebook_index of every element y[i], i < count (a tile is count = n · lanes elements). Up to
 * 4 bits the boundaries below y are counted directly against 15 boundaries padded with +∞ (a fixed
 * unrolled count with no data-dependent loads, so it vectorises; the same number by definition);
 * above, rj_codebook_index per element. */
RJ_FN void rj_quantize(RJ_THREAD float* y, RJ_THREAD int* RJ_RESTRICT idx, int count, RJ_PARAM float* bnd, int bits) {
  if (bits <= 4) {
    float b[15];
    RJ_UNROLL
    for (int j = 0; j < 15; ++j) b[j] = j < (1 << bits) - 1 ? bnd[j] : RJ_INF;
    RJ_UNROLL
    for (int i = 0; i < count; ++i) {
      const float v = y[i];
      int c = 0;
      RJ_UNROLL
      for (int j = 0; j < 15; ++j) c += b[j] < v ? 1 : 0;
      idx[i] = c;
    }
  } else {
    RJ_UNROLL
    for (int i = 0; i < count; ++i) idx[i] = rj_codebook_index(y[i], bnd, bits);
  }
}

/* Centroids of indices: y[i] = c[idx[i]], i < count. */
RJ_FN void rj_dequantize(RJ_THREAD int* idx, int count, RJ_PARAM float* centroids, RJ_THREAD float* RJ_RESTRICT y) {
  RJ_UNROLL
  for (int i = 0; i < count; ++i) y[i] = centroids[idx[i]];
}

/* ------------------------------------------------------------------------------------------------
 * Bit packing (rotorjax.packing): index i's bit j is stream bit i·bits + j; stream bit t is bit t % 8
 * of byte t / 8; n indices take ⌈n·bits/8⌉ bytes; the unused high bits of the last byte are zero.
 * Byte tiles are coordinate-major like float tiles: byte k of vector l is bytes[k * lanes + l]
 * (lanes = 1: the plain packed vector).
 * ---------------------------------------------------------------------------------------------- */

RJ_FN int rj_packed_size(int n, int bits) { return (n * bits + 7) / 8; }

/* Packs an index tile (n × lanes) into a byte tile (rj_packed_size(n, bits) × lanes). Byte k holds
 * the indices i whose bits [i·bits, i·bits + bits) meet [8k, 8k + 8), index i shifted by i·bits − 8k. */
RJ_FN void rj_pack(RJ_THREAD int* idx, int n, int lanes, int bits, RJ_THREAD unsigned char* RJ_RESTRICT bytes) {
  const int nbytes = rj_packed_size(n, bits);
  RJ_UNROLL
  for (int k = 0; k < nbytes; ++k) {
    const int first = (8 * k) / bits;
    const int last = (8 * k + 7) / bits < n - 1 ? (8 * k + 7) / bits : n - 1;
    RJ_UNROLL
    for (int l = 0; l < lanes; ++l) bytes[k * lanes + l] = 0;
    RJ_UNROLL
    for (int i = first; i <= last; ++i) {
      const int shift = i * bits - 8 * k;  /* the same for every lane: branch outside the lane loop */
      if (shift >= 0)
        RJ_UNROLL
        for (int l = 0; l < lanes; ++l) bytes[k * lanes + l] |= (unsigned char)((unsigned int)idx[i * lanes + l] << shift);
      else
        RJ_UNROLL
        for (int l = 0; l < lanes; ++l) bytes[k * lanes + l] |= (unsigned char)((unsigned int)idx[i * lanes + l] >> (-shift));
    }
  }
}

/* Unpacks a byte tile into an index tile: index i is bits [s, s + bits) of bytes k and k + 1
 * (t = i·bits, k = t / 8, s = t % 8; an index spans at most two bytes since bits ≤ 8). */
RJ_FN void rj_unpack(RJ_THREAD const unsigned char* bytes, int n, int lanes, int bits, RJ_THREAD int* RJ_RESTRICT idx) {
  const unsigned int mask = (1u << bits) - 1u;
  RJ_UNROLL
  for (int i = 0; i < n; ++i) {
    const int t = i * bits, k = t >> 3, s = t & 7;
    if (s + bits > 8) {
      RJ_UNROLL
      for (int l = 0; l < lanes; ++l)
        idx[i * lanes + l] = (int)((((unsigned int)bytes[k * lanes + l] >> s) |
                                    ((unsigned int)bytes[(k + 1) * lanes + l] << (8 - s))) & mask);
    } else {
      RJ_UNROLL
      for (int l = 0; l < lanes; ++l) idx[i * lanes + l] = (int)(((unsigned int)bytes[k * lanes + l] >> s) & mask);
    }
  }
}

/* Word view of the same stream, for kernels that move whole 32-bit words: stream bit t is bit t % 32
 * of little-endian word t / 32, so these words are exactly rj_pack's bytes. An index spans at most
 * two words (bits ≤ 8). With constant i and bits (unrolled loops) every shift is an immediate. */
RJ_FN int rj_packed_words(int n, int bits) { return (n * bits + 31) / 32; }

/* Puts index value q (< 2^bits) into position i of zero-initialised words. */
RJ_FN void rj_word_put(RJ_THREAD unsigned int* words, int i, int bits, unsigned int q) {
  const int t = i * bits, w = t >> 5, s = t & 31;
  /* + equals | on disjoint bit fields, and (q << s) + w is one shift-add instruction on GPUs. */
  words[w] += q << s;
  if (s + bits > 32) words[w + 1] += q >> (32 - s);
}

/* ------------------------------------------------------------------------------------------------
 * QJL (TurboQuant_prod): sketch z = [S r ≥ 0] of the residual r = y − c[idx]; decode adds
 * γ √(π/2)/m · Sᵀ(2z − 1) with γ = ‖r‖ and S an m×n Gaussian matrix.
 * ---------------------------------------------------------------------------------------------- */

/* √(π/2) / m, the QJL reconstruction scale (multiplied by γ per vector). */
RJ_FN float rj_qjl_scale(int m) { return 1.2533141373155003f / (float)m; }

/* Residual sketch of one tile: r = y − c[idx] (into r), gamma[l] = ‖r_l‖, proj = S r (m × n matrix S),
 * bit[j, l] = proj[j, l] ≥ 0 (into bits, an int tile ready for rj_pack with 1 bit). */
RJ_FN void rj_qjl_sketch(RJ_THREAD float* y, RJ_THREAD int* idx, int n, int lanes, RJ_PARAM float* centroids,
                         RJ_PARAM float* s, int m, RJ_THREAD float* r, RJ_THREAD float* proj,
                         RJ_THREAD int* bits, RJ_THREAD float* gamma) {
  RJ_UNROLL
  for (int l = 0; l < lanes; ++l) gamma[l] = 0.0f;
  RJ_UNROLL
  for (int c = 0; c < n; ++c)
    RJ_UNROLL
    for (int l = 0; l < lanes; ++l) {
      const float d = y[c * lanes + l] - centroids[idx[c * lanes + l]];
      r[c * lanes + l] = d;
      gamma[l] += d * d;
    }
  RJ_UNROLL
  for (int l = 0; l < lanes; ++l) gamma[l] = RJ_SQRT(gamma[l]);
  rj_dense_matvec(r, proj, lanes, s, m, n, 0);
  RJ_UNROLL
  for (int i = 0; i < m * lanes; ++i) bits[i] = proj[i] >= 0.0f ? 1 : 0;
}

/* Adds the QJL term γ_l √(π/2)/m · Sᵀ(2z − 1) to a tile y (n × lanes) from sketch bits z (int tile,
 * m × lanes) and residual norms gamma; signs (m × lanes) and proj (n × lanes) are scratch. */
RJ_FN void rj_qjl_correct(RJ_THREAD float* y, int n, int lanes, RJ_THREAD int* bits, RJ_PARAM float* s, int m,
                          RJ_THREAD float* gamma, RJ_THREAD float* signs, RJ_THREAD float* proj) {
  RJ_UNROLL
  for (int i = 0; i < m * lanes; ++i) signs[i] = 2.0f * (float)bits[i] - 1.0f;
  rj_dense_matvec(signs, proj, lanes, s, m, n, 1);
  const float scale = rj_qjl_scale(m);
  RJ_UNROLL
  for (int c = 0; c < n; ++c)
    RJ_UNROLL
    for (int l = 0; l < lanes; ++l) y[c * lanes + l] += gamma[l] * scale * proj[c * lanes + l];
}

#endif /* ROTORJAX_KERNEL_MATH_H_ */
