// Element types the kernels read and write: float32, bfloat16, float16, converted through float32 with
// round-to-nearest-even (the conversions XLA itself performs), portable bit manipulation only.
#pragma once

#include <cstdint>
#include <cstring>

#include "xla/ffi/api/ffi.h"

namespace rotorjax {

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct F32 {
  using Storage = float;
  static float Load(float x) { return x; }
  static float Store(float x) { return x; }
};

struct BF16 {
  using Storage = uint16_t;
  static float Load(uint16_t x) { return BitsFloat(uint32_t(x) << 16); }
  static uint16_t Store(float x) {
    const uint32_t u = FloatBits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
    return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
};

// IEEE half (F. Giesen's exact conversions; they rely on float addition rounding to nearest even).
struct F16 {
  using Storage = uint16_t;
  static float Load(uint16_t h) {
    const uint32_t shifted_exp = 0x7c00u << 13;
    uint32_t o = uint32_t(h & 0x7fffu) << 13;
    const uint32_t exp = shifted_exp & o;
    o += (127u - 15u) << 23;
    if (exp == shifted_exp) {
      o += (128u - 16u) << 23;  // Inf / NaN
    } else if (exp == 0) {      // zero / subnormal: renormalise
      o += 1u << 23;
      o = FloatBits(BitsFloat(o) - BitsFloat(113u << 23));
    }
    return BitsFloat(o | (uint32_t(h & 0x8000u) << 16));
  }
  static uint16_t Store(float x) {
    uint32_t f = FloatBits(x);
    const uint32_t sign = f & 0x80000000u;
    f ^= sign;
    uint32_t o;
    if (f >= ((127u + 16u) << 23)) {
      o = f > 0x7f800000u ? 0x7e00u : 0x7c00u;
    } else if (f < (113u << 23)) {  // subnormal half or zero: let float addition round
      const float magic = BitsFloat(((127u - 15u) + (23u - 10u) + 1u) << 23);
      o = FloatBits(BitsFloat(f) + magic) - FloatBits(magic);
    } else {
      const uint32_t mant_odd = (f >> 13) & 1u;
      f += ((15u - 127u) << 23) + 0xfffu;
      f += mant_odd;
      o = f >> 13;
    }
    return uint16_t(o | (sign >> 16));
  }
};

// Calls fn(Elem{}) for the element type of `dtype`; false when the dtype is not a supported float.
template <typename Fn>
bool DispatchFloat(xla::ffi::DataType dtype, Fn&& fn) {
  switch (dtype) {
    case xla::ffi::DataType::F32: fn(F32{}); return true;
    case xla::ffi::DataType::BF16: fn(BF16{}); return true;
    case xla::ffi::DataType::F16: fn(F16{}); return true;
    default: return false;
  }
}

}  // namespace rotorjax
