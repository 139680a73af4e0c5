"""Functions of the shared kernel header (ffi/include/rotorjax/kernel_math.h) that only the GPU kernels
call, checked on the CPU against the header's own reference functions: the word view of packing
(rj_word_put, used by the CUDA fast encode) must give exactly rj_pack's bytes, and rj_rotate_scaled
must equal rj_rotate followed by the scale. (The CUDA kernels read indices back from words with
code_words.cuh's IndexAddresses, checked by tests/test_code_words.py.)"""

from __future__ import annotations

PROGRAM = r"""
#include "rotorjax/kernel_math.h"
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

static unsigned rng = 12345u;
static unsigned next() { rng = rng * 1664525u + 1013904223u; return rng >> 8; }
static float uniform() { return (float)(next() % 2000001) / 1000000.0f - 1.0f; }

int main() {
  int bad = 0;
  const int dims[] = {1, 3, 7, 37, 64, 96, 128, 200};
  for (int bits = 1; bits <= 8; ++bits)
    for (int n : dims)
      for (int rep = 0; rep < 20; ++rep) {
        int idx[256];
        for (int i = 0; i < n; ++i) idx[i] = (int)(next() % (1u << bits));
        unsigned char bytes[256] = {0};
        rj_pack(idx, n, 1, bits, bytes);
        unsigned int words[64] = {0};
        for (int i = 0; i < n; ++i) rj_word_put(words, i, bits, (unsigned)idx[i]);
        if (memcmp(bytes, words, rj_packed_size(n, bits)) != 0) { ++bad; printf("put bits=%d n=%d\n", bits, n); }
        const unsigned char* wb = (const unsigned char*)words;
        for (int k = rj_packed_size(n, bits); k < 4 * rj_packed_words(n, bits); ++k)
          if (wb[k]) { ++bad; printf("padding bits=%d n=%d\n", bits, n); }
      }
  // rj_rotate_scaled(s) against rj_rotate then × s, every kind, odd and power-of-two widths.
  const int kinds[] = {RJ_KIND_HADAMARD, RJ_KIND_ROTOR, RJ_KIND_PLANAR, RJ_KIND_ISO, RJ_KIND_ROTOR_MIX, RJ_KIND_NONE};
  const int rdims[] = {37, 64, 96, 128};
  for (int kind : kinds)
    for (int dim : rdims)
      for (int inverse = 0; inverse < 2; ++inverse) {
        const int n = rj_padded_dim(kind, dim), count = rj_raw_param_count(kind, dim);
        static float raw[4096], prepared[16384], a[512], b[512];
        for (int i = 0; i < count; ++i) raw[i] = uniform();
        if (kind == RJ_KIND_HADAMARD) for (int i = 0; i < n; ++i) prepared[i] = raw[i] < 0 ? -1.0f : 1.0f;
        else if (kind != RJ_KIND_NONE) rj_block_matrices(kind, raw, rj_num_blocks(kind, dim), prepared);
        const float scale = 0.37f + uniform() * 0.1f;
        for (int i = 0; i < n; ++i) a[i] = b[i] = i < dim ? uniform() : 0.0f;
        rj_rotate(kind, a, n, 1, prepared, inverse);
        rj_rotate_scaled(kind, b, n, 1, prepared, inverse, scale);
        double err = 0, ref = 0;
        for (int i = 0; i < n; ++i) { err += std::pow(b[i] - a[i] * scale, 2); ref += std::pow(a[i] * scale, 2); }
        if (!(err <= 1e-12 * ref)) { ++bad; printf("scaled kind=%d dim=%d inverse=%d err=%g\n", kind, dim, inverse, err / ref); }
      }
  printf("bad=%d\n", bad);
  return bad != 0;
}
"""


def test_word_packing_and_scaled_rotation_match_the_reference_functions(run_cxx):
    run_cxx(PROGRAM, timeout=120)
