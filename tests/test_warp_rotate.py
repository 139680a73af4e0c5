"""The warp-cooperative rotation of the CUDA kernels (ffi/cuda/warp_rotate.cuh: scores and
attention_decode rotate their queries and attention's outputs with it), run on the CPU: the file's
device functions are compiled as host code, 32 threads stand in for the lanes of a warp and a barrier
for __syncwarp(), and the result must match the header's rj_rotate_scaled for every kind, both
directions, power-of-two and other widths (two Walsh–Hadamard windows, overlapping rotor blocks). A
step out of order, a missing barrier between dependent steps or a wrong parameter offset breaks it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def device_functions() -> str:
    """WarpBlocks … WarpRotate from warp_rotate.cuh, as host C++ for 32 threads."""
    text = (ROOT / "ffi" / "cuda" / "warp_rotate.cuh").read_text()
    start = text.index("// Blocks [first, last) of a block stage")
    end = text.index("// A warp per row:")
    code = text[start:end]
    code = code.replace("__device__ __forceinline__", "inline").replace("__device__", "inline")
    code = code.replace("threadIdx.x % 32", "rj_lane").replace("__syncwarp()", "rj_syncwarp()")
    assert not re.search(r"__\w+__|threadIdx|blockIdx", code), "CUDA left in the host version"
    return code


PROGRAM = r"""
#include "rotorjax/kernel_math.h"
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

static thread_local int rj_lane = 0;

// __syncwarp() for 32 threads: a reusable barrier.
static std::mutex mu;
static std::condition_variable cv;
static int waiting = 0, generation = 0;
static void rj_syncwarp() {
  std::unique_lock<std::mutex> lock(mu);
  const int gen = generation;
  if (++waiting == 32) {
    waiting = 0;
    ++generation;
    cv.notify_all();
  } else {
    cv.wait(lock, [&] { return generation != gen; });
  }
}

@DEVICE@

static unsigned rng = 2024u;
static float uniform() { rng = rng * 1664525u + 1013904223u; return (float)((rng >> 8) % 2000001) / 1000000.0f - 1.0f; }

int main() {
  int bad = 0;
  const int kinds[] = {RJ_KIND_HADAMARD, RJ_KIND_ROTOR, RJ_KIND_PLANAR, RJ_KIND_ISO, RJ_KIND_ROTOR_MIX, RJ_KIND_NONE};
  const int dims[] = {3, 37, 50, 64, 96, 128, 200};
  for (int kind : kinds)
    for (int dim : dims)
      for (int inverse = 0; inverse < 2; ++inverse) {
        const int n = rj_padded_dim(kind, dim), count = rj_raw_param_count(kind, dim);
        static float raw[8192], prepared[32768], want[512], got[512];
        for (int i = 0; i < count; ++i) raw[i] = kind == RJ_KIND_HADAMARD ? (uniform() < 0 ? -1.0f : 1.0f) : uniform();
        if (kind == RJ_KIND_HADAMARD) for (int i = 0; i < n; ++i) prepared[i] = raw[i];
        else if (kind != RJ_KIND_NONE) rj_block_matrices(kind, raw, rj_num_blocks(kind, dim), prepared);
        const float scale = 0.5f + 0.1f * uniform();
        for (int i = 0; i < n; ++i) want[i] = got[i] = i < dim ? uniform() : 0.0f;
        rj_rotate_scaled(kind, want, n, 1, prepared, inverse, scale);
        std::vector<std::thread> lanes;
        for (int l = 0; l < 32; ++l)
          lanes.emplace_back([&, l] { rj_lane = l; WarpRotate(kind, got, n, raw, inverse != 0, scale); });
        for (auto& t : lanes) t.join();
        double err = 0, ref = 0;
        for (int i = 0; i < n; ++i) { err += std::pow(got[i] - want[i], 2); ref += std::pow(want[i], 2); }
        if (!(err <= 1e-12 * ref)) { ++bad; printf("kind=%d dim=%d inverse=%d rel err^2=%g\n", kind, dim, inverse, err / ref); }
      }
  printf("bad=%d\n", bad);
  return bad != 0;
}
"""


def test_warp_rotation_matches_the_header_rotation(run_cxx):
    run_cxx(PROGRAM.replace("@DEVICE@", device_functions()), "-pthread")
