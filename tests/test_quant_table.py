"""The fast CUDA encode's codebook lookup (ffi/cuda/quant_table.cuh), run on the CPU: the cell table
(QuantCellOf), the cell address (QuantCellAddress) and the rule index = base + (boundary[base] < y)
must give, for every coordinate y, the number of boundaries strictly below y: on and around every
boundary (its float neighbours), over a sweep of [-1, 1] and at random, for the library's 2-, 3- and
4-bit codebooks at d = 128 and for hand-made ones. A codebook finer than the cells must be flagged
(the kernel then searches). PutIndex4 must pack 4 · index exactly as rj_word_put packs the index.
A wrong byte selector, boundary count or packing shift breaks it."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from cuda_host import host_source
from rotorjax import TurboQuant


def host_code() -> str:
    """BytePerm from code_words.cuh and the lookup of quant_table.cuh, as host C++."""
    return "\n".join([host_source("code_words.cuh", ("// __byte_perm (PRMT)", "// Shared-memory addresses base")),
                      host_source("quant_table.cuh", ("constexpr int kCells", "}  // namespace\n"))])


PROGRAM = r"""
#include "rotorjax/kernel_math.h"
#include <cmath>
#include <cstdio>
#include <cstring>

@CODE@

static unsigned rng = 11u;
static unsigned next() { rng = rng * 1664525u + 1013904223u; return rng >> 8; }

// The lookup as the kernel does it (TableIndex4), with the tables in host arrays.
static int bad = 0;
static void check_y(float y, const unsigned char* base4, const float* bounds, const float* bnd, int count) {
  const unsigned cell = QuantCellAddress(y, 0u);  // a table at address 0: the address is the cell
  if (cell >= unsigned(kCells)) { ++bad; return; }
  unsigned index4 = base4[cell];
  if (bounds[index4 / 4] < y) index4 += 4;
  unsigned want = 0;
  for (int i = 0; i < count; ++i) want += bnd[i] < y;
  if (index4 != 4 * want) {
    if (bad < 10) printf("y=%.9g cell=%u index=%u want=%u\n", y, cell, index4 / 4, want);
    ++bad;
  }
}

// One codebook: its table must be flagged ok exactly when expected, and then index every y right.
static void check_codebook(const float* bnd, int count, int expect_ok) {
  unsigned char base4[kCells];
  int ok = 1;
  for (int c = 0; c < kCells; ++c) {
    const QuantCell cell = QuantCellOf(c, bnd, count);
    base4[c] = (unsigned char)(4 * cell.base);
    ok &= cell.inside <= 1;
  }
  if (ok != expect_ok) {
    printf("codebook of %d boundaries: ok=%d, expected %d\n", count, ok, expect_ok);
    ++bad;
  }
  if (!ok) return;
  float bounds[kBounds];
  for (int i = 0; i < kBounds; ++i) bounds[i] = i < count ? bnd[i] : INFINITY;
  for (int i = 0; i < count; ++i) {
    float y = bnd[i], up = bnd[i], down = bnd[i];
    check_y(y, base4, bounds, bnd, count);
    for (int k = 0; k < 4; ++k) {
      up = nextafterf(up, INFINITY), down = nextafterf(down, -INFINITY);
      check_y(up, base4, bounds, bnd, count);
      check_y(down, base4, bounds, bnd, count);
    }
    check_y(bnd[i] + 1e-6f, base4, bounds, bnd, count);
    check_y(bnd[i] - 1e-6f, base4, bounds, bnd, count);
  }
  for (int k = 0; k <= 200000; ++k) check_y(-1.0f + 2.0f * k / 200000, base4, bounds, bnd, count);
  for (int k = 0; k < 200000; ++k) check_y(float(next()) / float(1u << 24) * 2.0f - 1.0f, base4, bounds, bnd, count);
}

// PutIndex4(4·index) against rj_word_put(index), over whole rows.
static void check_packing(int bits) {
  for (int trial = 0; trial < 200; ++trial) {
    unsigned a[16] = {}, b[16] = {};
    for (int i = 0; i < 128; ++i) {
      const unsigned q = trial == 0 ? (1u << bits) - 1 : next() % (1u << bits);
      rj_word_put(a, i, bits, q);
      PutIndex4(b, i, bits, 4 * q);
    }
    if (memcmp(a, b, sizeof a) != 0) {
      printf("packing differs at %d bits\n", bits);
      ++bad;
      return;
    }
  }
}

int main() {
@CODEBOOKS@
  for (int bits = 2; bits <= 4; ++bits) check_packing(bits);
  printf("bad=%d\n", bad);
  return bad != 0;
}
"""


def _codebooks() -> list[tuple[list[float], bool]]:
    """(boundaries, whether the table may take them): the library's codebooks at d = 128, the spread
    0.24 and 0.004 codebooks of tests/test_cuda.py, and a random one."""
    books = [([float(b) for b in TurboQuant(128, bits, "rotor-mix", key=jax.random.key(0)).boundaries], True)
             for bits in (2, 3, 4)]
    books += [([float(b) for b in np.linspace(-spread / 2, spread / 2, 15, dtype=np.float32)], spread > 0.1)
              for spread in (0.24, 0.004)]
    books.append(([float(b) for b in np.sort(np.random.default_rng(3).uniform(-0.9, 0.9, 7).astype(np.float32))], True))
    return books


def test_quant_table_lookup_and_packing(run_cxx):
    lines = []
    for n, (bnd, ok) in enumerate(_codebooks()):
        values = ", ".join(f"{np.float32(b).item()!r}f" for b in bnd)
        lines.append(f"  {{ const float bnd{n}[] = {{{values}}}; check_codebook(bnd{n}, {len(bnd)}, {int(ok)}); }}")
    run_cxx(PROGRAM.replace("@CODE@", host_code()).replace("@CODEBOOKS@", "\n".join(lines)))


@pytest.mark.parametrize("bits", (2, 3, 4))
def test_library_codebooks_fit_the_table(bits):
    """The fast encode must not fall back to its search for the codebooks the library makes at d = 128:
    adjacent boundaries lie more than two cells apart (widened cells are two cells wide)."""
    bnd = np.asarray(TurboQuant(128, bits, "rotor-mix", key=jax.random.key(0)).boundaries, np.float64)
    assert np.diff(bnd).min() > 2 * 2 * 1.0625 / 256
