"""The index decoding of the word-wise CUDA scores and attention_decode (ffi/cuda/code_words.cuh),
run on the CPU: IndexAddresses and GroupWindow are compiled as host code and must give, for rows
packed by the kernel header's rj_pack, the address base | 4·index of every index at 2, 3 and 4 bits,
both over a whole row and over each 8-index group. A wrong shift, mask or byte selector breaks it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def host_code() -> str:
    """IndexOffset … IndexAddresses and GroupWindow from code_words.cuh, as host C++."""
    text = (ROOT / "ffi" / "cuda" / "code_words.cuh").read_text()
    parts = [text[text.index("// 4 · (index i) of a row held as words w"):text.index("// A table of ≤ 16 centroids")],
             text[text.index("// The 8 indices of coordinates"):text.index("}  // namespace\n")]]
    code = "\n".join(parts).replace("__host__ __device__ __forceinline__", "inline").replace("__host__ __device__", "")
    assert not re.search(r"__\w+__\s|threadIdx|blockIdx", code.replace("__CUDA_ARCH__", "")), "CUDA left in the host version"
    return code


PROGRAM = r"""
#include "rotorjax/kernel_math.h"
#include <cstdio>
#include <cstring>

@CODE@

static unsigned rng = 7u;
static unsigned next() { rng = rng * 1664525u + 1013904223u; return rng >> 8; }

template <int BITS>
int check() {
  constexpr int kWords = 128 * BITS / 32;
  int bad = 0;
  for (int trial = 0; trial < 300; ++trial) {
    int idx[128];
    for (int i = 0; i < 128; ++i) idx[i] = trial == 0 ? (1 << BITS) - 1 : trial == 1 ? 0 : int(next() % (1u << BITS));
    unsigned char bytes[64] = {};
    rj_pack(idx, 128, 1, BITS, bytes);
    unsigned w[kWords];
    std::memcpy(w, bytes, sizeof(w));  // little-endian words, as the GPU reads them
    const unsigned base = 0x3100u + 0x100u * (trial % 9);  // 256-byte aligned table addresses
    const IndexAddresses<BITS, kWords> row(w, base);
    for (int i = 0; i < 128; ++i)
      if (row[i] != (base | 4u * idx[i])) { ++bad; printf("bits=%d trial=%d index %d\n", BITS, trial, i); }
    for (int g = 0; g < 16; ++g) {
      const unsigned v = GroupWindow<BITS>(g)([&](int k) { return w[k]; });
      const IndexAddresses<BITS, 1> group(&v, base);
      for (int i = 0; i < 8; ++i)
        if (group[i] != (base | 4u * idx[8 * g + i])) { ++bad; printf("bits=%d trial=%d group %d index %d\n", BITS, trial, g, i); }
    }
  }
  return bad;
}

int main() {
  const int bad = check<2>() + check<3>() + check<4>();
  printf("bad=%d\n", bad);
  return bad != 0;
}
"""


def test_index_addresses_match_the_packed_indices(run_cxx):
    run_cxx(PROGRAM.replace("@CODE@", host_code()))
