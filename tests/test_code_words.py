"""The index decoding and tile layout of the word-wise CUDA scores and attention_decode
(ffi/cuda/code_words.cuh), run on the CPU: IndexAddresses and GroupWindow are compiled as host code
and must give, for rows packed by the kernel header's rj_pack, the address base | 4·index of every
index at 2, 3 and 4 bits, both over a whole row and over each 8-index group (a wrong shift, mask or
byte selector breaks it); PairAddresses must give each index pair's offset in a pair table, over each
group and each 32-index window. WordRow's swizzle must permute each row's chunks and move a chunk by an
amount that depends on its number modulo 32 only (what StageWordRowsAsync assumes).

The tensor-core attention's token mapping (ffi/cuda/attention_words.cuh) is checked the same way: the
word where a softmax lane writes token u's probability (PWord) must be the word the B registers of the
lane (g, t) that takes u = TokenOf(t, s) read, and a warp's shared-memory reads of code words, its
windows (scores) and its value groups (attention), must be free of bank conflicts at 2, 3 and 4 bits
(the 3-bit rows are not swizzled; TokenOf<3> takes adjacent rows instead), as must its pair-table
lookups in either layout (PairCopy), whatever the indices."""

from __future__ import annotations

from cuda_host import host_source


def host_attention_code() -> str:
    """TokenOf and PWord from attention_words.cuh, as host C++."""
    return host_source("attention_words.cuh", ("// Token of an 8-token k-step", "template <int R, int BITS>\n__global__"))


def host_code() -> str:
    """WordRow, IndexOffset … IndexAddresses and GroupWindow from code_words.cuh, as host C++."""
    return host_source("code_words.cuh", ("constexpr int kWordN", "// A table of ≤ 16 centroids"),
                       ("// The 8 indices of coordinates", "}  // namespace\n"))


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
      // Pair tables: offsets of a lane's copy.
      const unsigned pbase = PairCopy<PairLoad::kAdjacent>(trial);
      const PairAddresses<BITS, 1> pairs(&v, pbase);
      for (int p = 0; p < 4; ++p)
        if (pairs[p] != (pbase | 128u * unsigned(idx[8 * g + 2 * p] | idx[8 * g + 2 * p + 1] << BITS))) {
          ++bad; printf("bits=%d trial=%d group %d pair %d\n", BITS, trial, g, p);
        }
    }
    for (int t = 0; t < 4; ++t) {  // a thread's window of coordinates [32t, 32t + 32), as the products read it
      const unsigned pbase = PairCopy<PairLoad::kPlanes>(t + trial);
      const PairAddresses<BITS, BITS> pairs(w + BITS * t, pbase);
      for (int p = 0; p < 16; ++p)
        if (pairs[p] != (pbase | 128u * unsigned(idx[32 * t + 2 * p] | idx[32 * t + 2 * p + 1] << BITS))) {
          ++bad; printf("bits=%d trial=%d window %d pair %d\n", BITS, trial, t, p);
        }
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


MAPPING = r"""
#include "rotorjax/kernel_math.h"
#include <cstdio>
#include <algorithm>
#include <map>
#include <set>

@CODE@

static unsigned rng = 11u;

// Most distinct 4-byte words of one bank in any phase of a warp access: lane l reads `width` bytes at
// address[l]; a phase takes 128 / width lanes (8 at 16 bytes, 16 at 8, the warp at 4).
static int Ways(const long (&address)[32], const bool (&active)[32], int width) {
  int worst = 1;
  for (int p0 = 0; p0 < 32; p0 += 128 / width) {
    std::map<int, std::set<long>> banks;
    for (int l = p0; l < p0 + 128 / width && l < 32; ++l)
      if (active[l])
        for (int b = 0; b < width; b += 4) banks[int((address[l] + b) / 4 % 32)].insert((address[l] + b) / 4);
    for (auto& kv : banks) worst = kv.second.size() > size_t(worst) ? int(kv.second.size()) : worst;
  }
  return worst;
}

template <int BITS>
int check() {
  using W = WordRow<BITS>;
  int bad = 0, score_ways = 1, value_ways = 1;
  for (int base = 0; base < 32; base += 16)  // scores: rows g and g + 8 of a 16-row m-tile, window t
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < (BITS == 3 ? 3 : 1); ++i) {  // 3 bits: three 4-byte reads
        long address[32];
        bool active[32];
        for (int l = 0; l < 32; ++l) {
          const int g = l / 4, t = l % 4, row = base + g + 8 * h;
          address[l] = row * W::kStride + W::WordOffset(row, BITS * t + i);
          active[l] = true;
        }
        const int ways = Ways(address, active, BITS == 4 ? 16 : BITS == 2 ? 8 : 4);
        score_ways = ways > score_ways ? ways : score_ways;
      }
  for (int ks = 0; ks < 4; ++ks)  // values: groups g and g + 8 of tokens TokenOf(t, s), word k then k + 1
    for (int s = 0; s < 2; ++s)
      for (int h = 0; h < 2; ++h)
        for (int second = 0; second < 2; ++second) {
          long address[32];
          bool active[32];
          for (int l = 0; l < 32; ++l) {
            const int g = l / 4, t = l % 4, row = 8 * ks + TokenOf<BITS>(t, s);
            const GroupWindow<BITS> win(g + 8 * h);
            address[l] = row * W::kStride + W::WordOffset(row, win.k + second);
            active[l] = !second || win.two;
          }
          const int ways = Ways(address, active, 4);
          value_ways = ways > value_ways ? ways : value_ways;
        }
  // Pair-table lookups of random pairs, each lane in its copy, conflict-free whatever the indices: side
  // by side one 8-byte read, in planes two 4-byte reads (the second plane 2^(2·BITS) · 128 bytes on).
  int pair_ways = 1;
  for (int trial = 0; trial < 600; ++trial) {
    long adjacent[32], plane[32];
    bool active[32];
    for (int l = 0; l < 32; ++l) {
      rng = rng * 1664525u + 1013904223u;
      const unsigned w = rng >> 8;
      const int p = trial % 4;
      // Tables at any 8-byte (4-byte) aligned address; planes: the first or the second.
      adjacent[l] = 0x1408 + PairAddresses<BITS, 1>(&w, PairCopy<PairLoad::kAdjacent>(l))[p];
      const long second = trial / 4 % 2 << (2 * BITS + 7);
      plane[l] = 0x1404 + second + PairAddresses<BITS, 1>(&w, PairCopy<PairLoad::kPlanes>(l))[p];
      active[l] = true;
    }
    const int ways = std::max(Ways(adjacent, active, 8), Ways(plane, active, 4));
    pair_ways = ways > pair_ways ? ways : pair_ways;
  }
  printf("bits=%d: score reads %d-way, value reads %d-way, pair lookups %d-way\n", BITS, score_ways, value_ways,
         pair_ways);
  if (score_ways != 1 || value_ways != 1 || pair_ways != 1) ++bad;
  int seen = 0;
  for (int t = 0; t < 4; ++t)
    for (int s = 0; s < 2; ++s) {
      const int u = TokenOf<BITS>(t, s);
      seen |= 1 << u;
      if (PWord<BITS>(u) != t + 4 * s) { ++bad; printf("token %d: P word %d, read at %d\n", u, PWord<BITS>(u), t + 4 * s); }
    }
  if (seen != 0xff) { ++bad; printf("TokenOf does not cover the 8 tokens of a k-step\n"); }
  return bad;
}

int main() {
  int bad = 0;
  bad += check<2>() + check<3>() + check<4>();
  printf("bad=%d\n", bad);
  return bad != 0;
}
"""


def test_attention_token_mapping_and_banks(run_cxx):
    run_cxx(MAPPING.replace("@CODE@", host_code() + "\n" + host_attention_code()))
