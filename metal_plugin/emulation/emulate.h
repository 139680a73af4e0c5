// C ABI of the CPU emulation of the Metal kernels (emulate.cc): called from Python through ctypes
// (harness.py) and, on a Mac, by the GPU check (host/gpu_check.mm). Each entry runs one op over whole
// grids exactly as the host dispatches it and returns nullptr or an error message. Pointers follow
// the kernels' operand layout; the QJL ones may be null when m = 0.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

int rj_emu_padded_dim(int kind, int dim);
// rotorjax_metal::MakeArgs alone (op: rotorjax_metal::Op): the host's checks for any sizes, no buffers.
const char* rj_emu_check_args(int op, int kind, int dim, int bits, int m, long long rows, long long queries, int dtype,
                              float divisor, long long raw_count, int inverse);
const char* rj_emu_rotate(int kind, int dim, int rows, int dtype, int inverse, const void* x, const float* raw,
                          long long raw_count, void* out);
const char* rj_emu_encode(int kind, int dim, int bits, int m, int rows, int dtype, const void* x, const float* raw,
                          long long raw_count, const float* boundaries, const float* centroids, const float* qjl,
                          unsigned char* codes, float* norms, unsigned char* qjl_bits, float* qjl_norms);
const char* rj_emu_decode(int kind, int dim, int bits, int m, int rows, int dtype, const unsigned char* codes,
                          const float* norms, const float* raw, long long raw_count, const float* centroids,
                          const float* qjl, const unsigned char* qjl_bits, const float* qjl_norms, void* out);
const char* rj_emu_scores(int kind, int dim, int bits, int m, int queries, int rows, int dtype, float divisor,
                          const void* q, const unsigned char* codes, const float* norms, const float* raw,
                          long long raw_count, const float* centroids, const float* qjl,
                          const unsigned char* qjl_bits, const float* qjl_norms, float* out);

#ifdef __cplusplus
}
#endif
