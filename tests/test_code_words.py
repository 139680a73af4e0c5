"""The index decoding and tile layout of the word-wise CUDA scores and attention_decode
(ffi/cuda/code_words.cuh), run on the CPU: IndexAddresses and GroupWindow are compiled as host code
and must give, for rows packed by the kernel header's rj_pack, the address base | 4·index of every
index at 2, 3 and 4 bits, both over a whole row and over each 8-index group (a wrong shift, mask or
byte selector breaks it). WordRow's swizzle must permute each row's chunks, put 8 consecutive rows'
chunk c in distinct bank groups, and move a chunk by an amount that depends on its number modulo 32
only (what StageWordRowsAsync and the value threads' hoisted offsets assume)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def host_code() -> str:
    """WordRow, IndexOffset … IndexAddresses and GroupWindow from code_words.cuh, as host C++."""
    text = (ROOT / "ffi" / "cuda" / "code_words.cuh").read_text()
    parts = [text[text.index("constexpr int kWordN"):text.index("// Byte tile row stride")],
             text[text.index("// 4 · (index i) of a row held as words w"):text.index("// A table of ≤ 16 centroids")],
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

template <int BITS>
int check_layout() {
  using W = WordRow<BITS>;
  constexpr int C = W::kChunks;
  int bad = 0;
  for (int t = 0; t < 256; ++t) {
    int seen = 0;
    for (int c = 0; c < C; ++c) seen |= 1 << W::Chunk(t, c);
    if (seen != (1 << C) - 1) { ++bad; printf("bits=%d row %d: chunks not a permutation\n", BITS, t); }
    for (int k = 0; k < W::kWords; ++k)
      if (W::WordOffset(t, k) != W::WordOffset(t % 8, k)) { ++bad; printf("bits=%d row %d word %d\n", BITS, t, k); }
  }
  for (int t0 = 0; t0 < 256; t0 += 8)
    for (int c = 0; c < C; ++c) {
      int groups = 0;  // 16-byte bank groups (of 8) of rows t0 … t0 + 7, chunk c
      for (int t = t0; t < t0 + 8; ++t) groups |= 1 << ((t * C + W::Chunk(t, c)) % 8);
      if (groups != 0xff) { ++bad; printf("bits=%d rows %d+ chunk %d: bank conflict\n", BITS, t0, c); }
    }
  for (int ch = 0; ch < 4096; ++ch) {
    const auto move = [](int e) { return W::Chunk(e / C, e % C) - e % C; };
    if (move(ch) != move(ch % 32)) { ++bad; printf("bits=%d chunk %d moves unlike chunk %d\n", BITS, ch, ch % 32); }
  }
  return bad;
}

int main() {
  const int bad = check<2>() + check<3>() + check<4>() + check_layout<2>() + check_layout<3>() + check_layout<4>();
  printf("bad=%d\n", bad);
  return bad != 0;
}
"""


def test_index_addresses_match_the_packed_indices(run_cxx):
    run_cxx(PROGRAM.replace("@CODE@", host_code()))
