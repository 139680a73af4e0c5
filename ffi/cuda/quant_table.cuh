// The fast encode's codebook index (encode.cu), by table lookup. kCells cells span [-kSpan, kSpan] (a
// normalised rotated coordinate lies in [-1, 1]), and each cell widened by half a cell on either side
// holds at most one boundary. With base the number of boundaries below the widened cell, the only
// boundary that can lie between the cell's lower edge and y is boundary[base] (+∞ past the last), so
// the index of y (boundaries strictly below it) is base + (boundary[base] < y), exactly: a byte table
// of 4·base and a 16-float table of the boundaries, instead of a bits-step search. The byte table is
// 256 bytes, two words per bank, so the lanes' random lookups conflict at most 2-way, and the boundary
// table holds one float per bank. (An 8-byte (boundary, base) entry per cell took one load, but its
// random lookups cost 2.6 extra wavefronts each in bank conflicts; encode ran 3–6 % slower:
// docs/cuda_notes.md, session 8.) The table's `ok` is 0 when a widened cell would hold two boundaries
// (a codebook finer than the cells); the kernel then searches instead.
//
// Everything here but the kernel's loads is host code too: tests/test_quant_table.py checks the index
// rule against a direct count of the boundaries, and PutIndex4 against rj_word_put, on the CPU.
#pragma once

#include "code_words.cuh"  // BytePerm

namespace rotorjax {
namespace cuda {
// Internal linkage: see cuda_common.cuh.
namespace {

constexpr int kCells = 256;
constexpr float kSpan = 1.0625f;
constexpr int kBounds = 16;  // the boundary table: ≤ 15 boundaries, then +∞
struct QuantTable {
  unsigned char base4[kCells];  // 4 · base: the byte offset of boundary[base]
  int ok;
};

// Cell c of a table for `count` boundaries: its base, the number of boundaries below its widened
// range, and how many lie within that range. The first and last cells are open-ended.
struct QuantCell {
  int base, inside;
};
__host__ __device__ inline QuantCell QuantCellOf(int c, const float* bnd, int count) {
  const float w = 2.0f * kSpan / kCells;
  const float lo = c == 0 ? -RJ_INF : -kSpan + (c - 0.5f) * w;
  const float hi = c == kCells - 1 ? RJ_INF : -kSpan + (c + 1.5f) * w;
  QuantCell cell{0, 0};
  for (int i = 0; i < count; ++i) {
    if (bnd[i] < lo) ++cell.base;
    else if (bnd[i] <= hi) ++cell.inside;
  }
  return cell;
}

// The address of y's cell in a byte table at `cells` (256-byte aligned). One FMA takes 256 × y's
// position among the cells, (y + kSpan) / w, rounded to an integer in the low mantissa bits of a float
// in [2^23, 2^24), which puts the cell in bits 8…15; one byte permute puts that byte under the table's
// address. Rounding moves the position by at most 1/512 of a cell, inside the widening; the permute
// keeps any input (NaN, garbage) inside the table.
__host__ __device__ __forceinline__ unsigned QuantCellAddress(float y, unsigned cells) {
  constexpr float kScale = 256 * kCells / (2.0f * kSpan), kMagic = 12582912.0f;  // 1.5 · 2^23
  const float position = fmaf(y, kScale, 128 * kCells + kMagic);
  unsigned bits;
  memcpy(&bits, &position, sizeof bits);
  return BytePerm(bits, cells, 0x7651u);
}

// rj_word_put of index i given times 4 (q4): the field's shift absorbs the factor wherever the field
// starts at bit 2 of its word or above, so the factor costs nothing there.
__host__ __device__ __forceinline__ void PutIndex4(unsigned int* words, int i, int bits, unsigned int q4) {
  const int t = i * bits, w = t >> 5, s = t & 31;
  words[w] += s >= 2 ? q4 << (s - 2) : q4 >> (2 - s);
  if (s + bits > 32) words[w + 1] += q4 >> (34 - s);
}

}  // namespace
}  // namespace cuda
}  // namespace rotorjax
