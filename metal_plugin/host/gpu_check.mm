// gpu_check: runs every rotorjax Metal kernel on this Mac's GPU and under the CPU emulation
// (emulation/emulate.cc, the build the Linux tests check against the pure-JAX reference) on the same
// random inputs, and compares: every kind and "none", odd and power-of-two dims, 1–8 bits, QJL, and
// float32 / float16 / bfloat16. Prints one line per case; exits 1 if any disagrees.
//   usage: rotorjax_metal_gpu_check path/to/rotorjax.metallib
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "emulate.h"
#include "rotorjax_metal.h"

namespace {

using rotorjax_metal::Buffer;

constexpr int kRows = 777, kQueries = 9;  // not multiples of the threadgroup width

int ElemBytes(int dtype) { return dtype == RJ_METAL_F32 ? 4 : 2; }

float ToFloat(const std::vector<uint8_t>& bytes, int dtype, size_t i) {
  if (dtype == RJ_METAL_F32) return reinterpret_cast<const float*>(bytes.data())[i];
  const uint16_t h = reinterpret_cast<const uint16_t*>(bytes.data())[i];
  if (dtype == RJ_METAL_F16) {
    __fp16 f;
    std::memcpy(&f, &h, 2);
    return float(f);
  }
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Random values stored in `dtype` (bfloat16 by truncation: any bit pattern is a valid value).
std::vector<uint8_t> Store(const std::vector<float>& v, int dtype) {
  std::vector<uint8_t> out(v.size() * ElemBytes(dtype));
  for (size_t i = 0; i < v.size(); ++i) {
    if (dtype == RJ_METAL_F32) {
      std::memcpy(&out[4 * i], &v[i], 4);
    } else if (dtype == RJ_METAL_F16) {
      const __fp16 h = __fp16(v[i]);
      std::memcpy(&out[2 * i], &h, 2);
    } else {
      uint32_t u;
      std::memcpy(&u, &v[i], 4);
      const uint16_t b = uint16_t(u >> 16);
      std::memcpy(&out[2 * i], &b, 2);
    }
  }
  return out;
}

// max |a − b| / max |b| over float views of two arrays of `count` elements.
float RelErr(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, int dtype, size_t count) {
  float num = 0.0f, den = 1e-30f;
  for (size_t i = 0; i < count; ++i) {
    num = std::max(num, std::fabs(ToFloat(a, dtype, i) - ToFloat(b, dtype, i)));
    den = std::max(den, std::fabs(ToFloat(b, dtype, i)));
  }
  return num / den;
}

struct Gpu {
  id<MTLDevice> device;
  id<MTLCommandQueue> queue;
  std::unique_ptr<rotorjax_metal::Kernels> kernels;
  std::vector<id<MTLBuffer>> live;

  Buffer Upload(const void* data, size_t bytes) {
    id<MTLBuffer> b = [device newBufferWithLength:std::max<size_t>(bytes, 4) options:MTLResourceStorageModeShared];
    if (data) std::memcpy([b contents], data, bytes);
    live.push_back(b);
    return Buffer{(__bridge void*)b, 0};
  }
  template <typename T>
  Buffer Upload(const std::vector<T>& v) { return Upload(v.data(), v.size() * sizeof(T)); }
  template <typename T>
  void Download(Buffer b, std::vector<T>* v) {
    std::memcpy(v->data(), [(__bridge id<MTLBuffer>)b.mtl_buffer contents], v->size() * sizeof(T));
  }
  template <typename Fn>
  bool Run(Fn&& encode) {
    id<MTLCommandBuffer> cb = [queue commandBuffer];
    encode((__bridge void*)cb);
    [cb commit];
    [cb waitUntilCompleted];
    if (cb.status != MTLCommandBufferStatusCompleted) {
      std::printf("  command buffer failed: %s\n", cb.error.localizedDescription.UTF8String);
      return false;
    }
    return true;
  }
};

bool Check(Gpu& gpu, int kind, int dim, int bits, int m, int dtype, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  // One argument block per op, as the FFI handlers make them.
  rj_metal_args rotate_args, encode_args, decode_args, scores_args;
  const int raw_count = rj_raw_param_count(kind, dim);
  for (std::string err : {
           rotorjax_metal::MakeArgs(rotorjax_metal::kRotate, kind, dim, 0, 0, kRows, 0, dtype, 1.0f, raw_count, 0,
                                    &rotate_args),
           rotorjax_metal::MakeArgs(rotorjax_metal::kEncode, kind, dim, bits, m, kRows, 0, dtype, 1.0f, raw_count, 0,
                                    &encode_args),
           rotorjax_metal::MakeArgs(rotorjax_metal::kDecode, kind, dim, bits, m, kRows, 0, dtype, 1.0f, raw_count, 0,
                                    &decode_args),
           rotorjax_metal::MakeArgs(rotorjax_metal::kScores, kind, dim, bits, m, kRows, kQueries, dtype, 0.75f,
                                    raw_count, 0, &scores_args)})
    if (!err.empty()) {
      std::printf("  bad case: %s\n", err.c_str());
      return false;
    }
  const int n = encode_args.n, nbytes = rj_packed_size(n, bits), qbytes = rj_packed_size(std::max(m, 1), 1);
  std::vector<float> raw(raw_count), x(size_t(kRows) * dim), q(size_t(kQueries) * dim), s(size_t(m) * n);
  for (float& v : raw) v = kind == RJ_KIND_HADAMARD ? (normal(rng) < 0 ? -1.0f : 1.0f) : normal(rng);
  for (float& v : x) v = normal(rng);
  for (float& v : q) v = normal(rng);
  for (float& v : s) v = normal(rng);
  for (int c = 0; c < dim; ++c) x[size_t(1) * dim + c] = 0.0f;  // a zero vector
  std::vector<float> bnd((1 << bits) - 1), cen(1 << bits);
  for (float& v : bnd) v = normal(rng) / std::sqrt(float(n));
  for (float& v : cen) v = normal(rng) / std::sqrt(float(n));
  std::sort(bnd.begin(), bnd.end());
  const std::vector<uint8_t> xs = Store(x, dtype), qs = Store(q, dtype);
  const float* sp = m ? s.data() : nullptr;
  bool ok = true;
  auto report = [&](const char* what, float e, float tol) {
    if (!(e <= tol)) {
      std::printf("  %s: relative error %g > %g\n", what, e, tol);
      ok = false;
    }
  };
  const float tol = dtype == RJ_METAL_F32 ? 1e-5f : dtype == RJ_METAL_F16 ? 2e-3f : 1.6e-2f;

  // rotate, both directions
  if (kind != RJ_KIND_NONE) {
    std::vector<uint8_t> emu(size_t(kRows) * n * ElemBytes(dtype)), got(emu.size());
    rj_emu_rotate(kind, dim, kRows, dtype, 0, xs.data(), raw.data(), raw_count, emu.data());
    Buffer bx = gpu.Upload(xs), bp = gpu.Upload(raw), by = gpu.Upload(nullptr, got.size());
    ok &= gpu.Run([&](void* cb) { gpu.kernels->EncodeRotate(cb, rotate_args, bx, bp, by); });
    gpu.Download(by, &got);
    report("rotate", RelErr(got, emu, dtype, size_t(kRows) * n), tol);
    std::vector<uint8_t> emu_back(xs.size()), back(xs.size());
    rj_emu_rotate(kind, dim, kRows, dtype, 1, emu.data(), raw.data(), raw_count, emu_back.data());
    rotate_args.inverse = 1;  // the same rotation backwards
    Buffer bb = gpu.Upload(nullptr, back.size()), be = gpu.Upload(emu);
    ok &= gpu.Run([&](void* cb) { gpu.kernels->EncodeRotate(cb, rotate_args, be, bp, bb); });
    gpu.Download(bb, &back);
    report("inverse rotate", RelErr(back, emu_back, dtype, size_t(kRows) * dim), tol);
  }

  // encode
  std::vector<uint8_t> codes(size_t(kRows) * nbytes), zbits(size_t(kRows) * qbytes), got_codes(codes.size()),
      got_z(zbits.size());
  std::vector<float> norms(kRows), gamma(kRows), got_norms(kRows), got_gamma(kRows);
  rj_emu_encode(kind, dim, bits, m, kRows, dtype, xs.data(), raw.data(), raw_count, bnd.data(), cen.data(), sp,
                codes.data(), norms.data(), zbits.data(), gamma.data());
  Buffer bx = gpu.Upload(xs), bp = gpu.Upload(raw), bb = gpu.Upload(bnd), bc = gpu.Upload(cen);
  Buffer bs = m ? gpu.Upload(s) : Buffer{}, bcodes = gpu.Upload(nullptr, codes.size()),
         bn = gpu.Upload(nullptr, norms.size() * 4), bz = m ? gpu.Upload(nullptr, zbits.size()) : Buffer{},
         bg = m ? gpu.Upload(nullptr, gamma.size() * 4) : Buffer{};
  ok &= gpu.Run([&](void* cb) { gpu.kernels->EncodeEncode(cb, encode_args, bx, bp, bb, bc, bs, bcodes, bn, bz, bg); });
  gpu.Download(bcodes, &got_codes);
  gpu.Download(bn, &got_norms);
  // Indices may differ only at boundary ties (the GPU may contract a·b + c into one rounding).
  size_t differ = 0;
  for (int r = 0; r < kRows; ++r)
    for (int i = 0; i < n; ++i) {
      const int bitpos = i * bits;
      auto index = [&](const std::vector<uint8_t>& c) {
        unsigned v = 0;
        for (int j = 0; j < bits; ++j)
          v |= ((c[size_t(r) * nbytes + (bitpos + j) / 8] >> ((bitpos + j) % 8)) & 1u) << j;
        return v;
      };
      differ += index(got_codes) != index(codes);
    }
  if (differ > size_t(kRows) * n / 1000) {
    std::printf("  encode: %zu of %d indices differ\n", differ, kRows * n);
    ok = false;
  }
  float e = 0.0f;
  for (int r = 0; r < kRows; ++r) e = std::max(e, std::fabs(got_norms[r] - norms[r]) / std::max(norms[r], 1e-30f));
  report("norms", e, 1e-5f);
  if (m) {
    gpu.Download(bz, &got_z);
    gpu.Download(bg, &got_gamma);
    size_t flips = 0;
    for (size_t i = 0; i < zbits.size(); ++i) flips += __builtin_popcount(unsigned(got_z[i] ^ zbits[i]));
    if (flips > size_t(kRows) * m / 1000) {
      std::printf("  encode: %zu of %d QJL bits differ\n", flips, kRows * m);
      ok = false;
    }
  }

  // decode and scores, both from the emulator's codes
  Buffer ec = gpu.Upload(codes), en = gpu.Upload(norms), ez = m ? gpu.Upload(zbits) : Buffer{},
         eg = m ? gpu.Upload(gamma) : Buffer{};
  std::vector<uint8_t> emu_out(size_t(kRows) * dim * ElemBytes(dtype)), got_out(emu_out.size());
  rj_emu_decode(kind, dim, bits, m, kRows, dtype, codes.data(), norms.data(), raw.data(), raw_count, cen.data(), sp,
                zbits.data(), gamma.data(), emu_out.data());
  Buffer bo = gpu.Upload(nullptr, got_out.size());
  ok &= gpu.Run([&](void* cb) { gpu.kernels->EncodeDecode(cb, decode_args, ec, en, bp, bc, bs, ez, eg, bo); });
  gpu.Download(bo, &got_out);
  report("decode", RelErr(got_out, emu_out, dtype, size_t(kRows) * dim), tol);

  std::vector<float> emu_scores(size_t(kQueries) * kRows), got_scores(emu_scores.size());
  rj_emu_scores(kind, dim, bits, m, kQueries, kRows, dtype, 0.75f, qs.data(), codes.data(), norms.data(), raw.data(),
                raw_count, cen.data(), sp, zbits.data(), gamma.data(), emu_scores.data());
  Buffer bq = gpu.Upload(qs), bsc = gpu.Upload(nullptr, got_scores.size() * 4);
  ok &= gpu.Run([&](void* cb) { gpu.kernels->EncodeScores(cb, scores_args, bq, ec, en, bp, bc, bs, ez, eg, bsc); });
  gpu.Download(bsc, &got_scores);
  std::vector<uint8_t> gs(got_scores.size() * 4), es(gs.size());
  std::memcpy(gs.data(), got_scores.data(), gs.size());
  std::memcpy(es.data(), emu_scores.data(), es.size());
  report("scores", RelErr(gs, es, RJ_METAL_F32, got_scores.size()), 1e-5f);
  gpu.live.clear();
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  @autoreleasepool {
    if (argc != 2) {
      std::fprintf(stderr, "usage: %s path/to/rotorjax.metallib\n", argv[0]);
      return 2;
    }
    Gpu gpu;
    gpu.device = MTLCreateSystemDefaultDevice();
    if (!gpu.device) {
      std::fprintf(stderr, "no Metal device\n");
      return 2;
    }
    gpu.queue = [gpu.device newCommandQueue];
    std::string error;
    gpu.kernels = rotorjax_metal::Kernels::Load((__bridge void*)gpu.device, argv[1], &error);
    if (!gpu.kernels) {
      std::fprintf(stderr, "%s\n", error.c_str());
      return 2;
    }
    std::printf("device: %s\n", gpu.device.name.UTF8String);
    std::mt19937 rng(0);
    int failed = 0, cases = 0;
    const int dims[] = {5, 7, 80, 127, 128};
    for (int kind = RJ_KIND_NONE; kind <= RJ_KIND_ROTOR_MIX; ++kind)
      for (int dim : dims)
        for (int dtype : {RJ_METAL_F32, RJ_METAL_F16, RJ_METAL_BF16}) {
          const int bits = 1 + (cases % 8), m = cases % 3 == 0 ? rj_padded_dim(kind, dim) : 0;
          const bool ok = Check(gpu, kind, dim, bits, m, dtype, rng);
          std::printf("%s kind=%d dim=%d bits=%d qjl_rows=%d dtype=%d\n", ok ? "ok  " : "FAIL", kind, dim, bits, m,
                      dtype);
          failed += !ok;
          ++cases;
        }
    std::printf("%d of %d cases agree with the CPU emulation\n", cases - failed, cases);
    return failed ? 1 : 0;
  }
}
