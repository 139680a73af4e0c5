// XLA FFI handlers rotorjax_rotate / _encode / _decode / _scores for metal-pjrt-plugin (platform
// "mtl"), with the same operands and attributes as the CPU module (ffi/src), so rotorjax._ffi's calls
// run unchanged on Metal. They are compiled into the plugin (its FFI registry is the plugin's own
// copy of XLA; see docs/metal.md for the build) and use its runtime: device pointers resolve to
// (MTLBuffer, offset), and the dispatches go into the stream's command buffer through
// rt::Stream::EncodeExternal, in order with XLA's own kernels.
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "metal_pjrt/ffi/metal_ffi.h"
#include "rotorjax_metal.h"
#include "xla/backends/gpu/ffi.h"
#include "xla/ffi/ffi.h"
#include "xla/ffi/ffi_api.h"

#ifndef ROTORJAX_METALLIB_PATH
#define ROTORJAX_METALLIB_PATH "rotorjax.metallib"
#endif

namespace rotorjax_metal {
namespace {

namespace xffi = ::xla::ffi;
namespace rt = ::metal_pjrt::rt;

absl::Status Invalid(const std::string& op, const std::string& msg) {
  return absl::InvalidArgumentError("rotorjax " + op + " (Metal): " + msg);
}

// The kernels for a runtime device, loaded on first use from $ROTORJAX_METALLIB or the build's path.
absl::StatusOr<const Kernels*> KernelsFor(rt::Device* device) {
  static absl::Mutex mu;
  static auto* loaded = new std::map<rt::Device*, std::unique_ptr<Kernels>>();
  absl::MutexLock lock(&mu);
  std::unique_ptr<Kernels>& k = (*loaded)[device];
  if (!k) {
    const char* env = std::getenv("ROTORJAX_METALLIB");
    std::string error;
    k = Kernels::Load(device->mtl(), env ? env : ROTORJAX_METALLIB_PATH, &error);
    if (!k) return absl::FailedPreconditionError("rotorjax: " + error);
  }
  return k.get();
}

// An operand's (MTLBuffer, offset); empty arrays (e.g. haar's parameters) bind the dummy.
absl::StatusOr<Buffer> Resolve(rt::Device* device, const xffi::AnyBuffer& b) {
  if (b.element_count() == 0) return Buffer{};
  absl::StatusOr<rt::BufferRef> ref = device->Resolve(b.untyped_data());
  if (!ref.ok()) return ref.status();
  return Buffer{static_cast<void*>(ref->buffer), ref->offset};
}

int DType(xla::PrimitiveType t) {
  return t == xla::F32 ? RJ_METAL_F32 : t == xla::F16 ? RJ_METAL_F16 : t == xla::BF16 ? RJ_METAL_BF16 : -1;
}

int64_t Rows(const xffi::AnyBuffer& b) {
  int64_t rows = 1;
  auto d = b.dimensions();
  for (size_t i = 0; i + 1 < d.size(); ++i) rows *= d[i];
  return rows;
}

int64_t Cols(const xffi::AnyBuffer& b) { return b.dimensions().empty() ? 0 : b.dimensions().back(); }

// Resolves every operand, then encodes `encode(command_buffer, kernels, buffers...)` on the stream.
template <typename Encode, typename... Bufs>
absl::Status Launch(stream_executor::Stream* stream, Encode encode, const Bufs&... operands) {
  absl::StatusOr<metal_pjrt::ffi::MetalContext> ctx = metal_pjrt::ffi::GetMetalContext(stream);
  if (!ctx.ok()) return ctx.status();
  absl::StatusOr<const Kernels*> kernels = KernelsFor(ctx->device);
  if (!kernels.ok()) return kernels.status();
  absl::Status status;
  auto resolve = [&](const xffi::AnyBuffer& b) {
    absl::StatusOr<Buffer> r = Resolve(ctx->device, b);
    if (!r.ok() && status.ok()) status = r.status();
    return r.ok() ? *r : Buffer{};
  };
  const auto buffers = std::make_tuple(resolve(operands)...);
  if (!status.ok()) return status;
  return ctx->stream->EncodeExternal(
      [&](void* cb) {
        std::apply([&](const auto&... b) { encode(cb, **kernels, b...); }, buffers);
        return absl::OkStatus();
      },
      /*flops=*/0);
}

// The optional QJL operands of decode and scores: (matrix S, bits, residual norms), or none (m = 0).
struct Qjl {
  int m = 0;
  xffi::AnyBuffer s, bits, gamma;
};

// Takes the operands; their shapes are checked by CheckQjl once the op's sizes are known.
absl::StatusOr<Qjl> TakeQjl(const std::string& op, xffi::RemainingArgs args, const xffi::AnyBuffer& placeholder) {
  Qjl q{0, placeholder, placeholder, placeholder};
  if (args.size() == 0) return q;
  if (args.size() != 3) return Invalid(op, "QJL takes three extra inputs (matrix, bits, residual norms)");
  auto a0 = args.get<xffi::AnyBuffer>(0), a1 = args.get<xffi::AnyBuffer>(1), a2 = args.get<xffi::AnyBuffer>(2);
  if (!a0.ok() || !a1.ok() || !a2.ok()) return Invalid(op, "QJL inputs must be arrays");
  q.s = *a0, q.bits = *a1, q.gamma = *a2;
  q.m = q.s.dimensions().size() == 2 ? int(q.s.dimensions()[0]) : -1;
  return q;
}

absl::Status CheckQjl(const std::string& op, const Qjl& q, const rj_metal_args& a) {
  if (q.m == 0) return absl::OkStatus();
  if (q.s.element_type() != xla::F32 || q.m < 1 || Cols(q.s) != a.n || q.bits.element_type() != xla::U8 ||
      int64_t(q.bits.element_count()) != int64_t(a.rows) * rj_packed_size(q.m, 1) ||
      q.gamma.element_type() != xla::F32 || int64_t(q.gamma.element_count()) != a.rows)
    return Invalid(op, "QJL inputs must be S f32 (m, n), bits u8 (..., ⌈m/8⌉), residual norms f32 (...)");
  return absl::OkStatus();
}

// The operands the CPU module binds as typed buffers (f32 parameters and norms, u8 codes) must have
// those element types here too.
absl::Status Types(const std::string& op,
                   std::initializer_list<std::pair<const xffi::AnyBuffer*, xla::PrimitiveType>> operands) {
  for (const auto& [buffer, type] : operands)
    if (buffer->element_type() != type) return Invalid(op, "parameters, norms and boundaries are f32, codes u8");
  return absl::OkStatus();
}

absl::Status Codebook(const std::string& op, int bits, const xffi::AnyBuffer& centroids) {
  if (centroids.element_type() != xla::F32 || int64_t(centroids.element_count()) != (int64_t(1) << bits))
    return Invalid(op, "a " + std::to_string(bits) + "-bit codebook has " + std::to_string(1 << bits) + " centroids");
  return absl::OkStatus();
}

absl::Status Rotate(stream_executor::Stream* stream, xffi::AnyBuffer x, xffi::AnyBuffer params,
                    xffi::Result<xffi::AnyBuffer> y, int64_t kind, int64_t dim, bool inverse) {
  rj_metal_args a;
  std::string err = MakeArgs(kRotate, int(kind), int(dim), 0, 0, Rows(x), 0, DType(x.element_type()), 1.0f,
                             params.element_count(), inverse, &a);
  if (!err.empty()) return Invalid("rotate", err);
  if (absl::Status st = Types("rotate", {{&params, xla::F32}}); !st.ok()) return st;
  const int in_width = inverse ? a.n : a.dim, out_width = inverse ? a.dim : a.n;
  if (Cols(x) != in_width || Cols(*y) != out_width || Rows(*y) != a.rows || y->element_type() != x.element_type())
    return Invalid("rotate", "shapes must be (..., " + std::to_string(in_width) + ") → (..., " +
                                 std::to_string(out_width) + ") in one dtype");
  return Launch(stream, [&](void* cb, const Kernels& k, Buffer bx, Buffer bp, Buffer by) {
    k.EncodeRotate(cb, a, bx, bp, by);
  }, x, params, *y);
}

absl::Status Encode(stream_executor::Stream* stream, xffi::AnyBuffer x, xffi::AnyBuffer params,
                    xffi::AnyBuffer boundaries, xffi::AnyBuffer centroids, xffi::RemainingArgs qjl_args,
                    xffi::Result<xffi::AnyBuffer> codes, xffi::Result<xffi::AnyBuffer> norms,
                    xffi::RemainingRets qjl_rets, int64_t kind, int64_t dim, int64_t bits) {
  if (qjl_args.size() > 1 || qjl_rets.size() != 2 * qjl_args.size())
    return Invalid("encode", "QJL takes one extra input (the matrix) and two extra outputs");
  xffi::AnyBuffer s = boundaries, qbits = boundaries, qnorms = boundaries;  // placeholders when m = 0
  int m = 0;
  if (qjl_args.size() == 1) {
    auto s0 = qjl_args.get<xffi::AnyBuffer>(0);
    auto r0 = qjl_rets.get<xffi::AnyBuffer>(0), r1 = qjl_rets.get<xffi::AnyBuffer>(1);
    if (!s0.ok() || !r0.ok() || !r1.ok()) return Invalid("encode", "QJL operands must be arrays");
    s = *s0, qbits = **r0, qnorms = **r1;
    m = s.dimensions().size() == 2 ? int(s.dimensions()[0]) : -1;
  }
  rj_metal_args a;
  std::string err = MakeArgs(kEncode, int(kind), int(dim), int(bits), m, Rows(x), 0, DType(x.element_type()), 1.0f,
                             params.element_count(), 0, &a);
  if (!err.empty()) return Invalid("encode", err);
  if (absl::Status st = Types("encode", {{&params, xla::F32}, {&boundaries, xla::F32}, {&(*codes), xla::U8},
                                         {&(*norms), xla::F32}});
      !st.ok())
    return st;
  if (absl::Status st = Codebook("encode", a.bits, centroids); !st.ok()) return st;
  if (Cols(x) != a.dim || Cols(*codes) != rj_packed_size(a.n, a.bits) || Rows(*codes) != a.rows ||
      int64_t(norms->element_count()) != a.rows || int64_t(boundaries.element_count()) != (int64_t(1) << bits) - 1)
    return Invalid("encode", "x (..., dim) → codes (..., ⌈n·bits/8⌉), norms (...), with 2^bits − 1 boundaries");
  if (m != 0 && (s.element_type() != xla::F32 || Cols(s) != a.n || qbits.element_type() != xla::U8 ||
                qnorms.element_type() != xla::F32 ||
                int64_t(qbits.element_count()) != int64_t(a.rows) * rj_packed_size(m, 1) ||
                int64_t(qnorms.element_count()) != a.rows))
    return Invalid("encode", "QJL: S (m, n) → bits (..., ⌈m/8⌉), residual norms (...)");
  const bool qjl = m > 0;
  return Launch(stream, [&](void* cb, const Kernels& k, Buffer bx, Buffer bp, Buffer bb, Buffer bc, Buffer bs,
                            Buffer bcodes, Buffer bn, Buffer bq, Buffer bg) {
    k.EncodeEncode(cb, a, bx, bp, bb, bc, qjl ? bs : Buffer{}, bcodes, bn, qjl ? bq : Buffer{}, qjl ? bg : Buffer{});
  }, x, params, boundaries, centroids, s, *codes, *norms, qbits, qnorms);
}

absl::Status Decode(stream_executor::Stream* stream, xffi::AnyBuffer codes, xffi::AnyBuffer norms,
                    xffi::AnyBuffer params, xffi::AnyBuffer centroids, xffi::RemainingArgs qjl_args,
                    xffi::Result<xffi::AnyBuffer> out, int64_t kind, int64_t dim, int64_t bits) {
  absl::StatusOr<Qjl> qjl = TakeQjl("decode", qjl_args, centroids);
  if (!qjl.ok()) return qjl.status();
  rj_metal_args a;
  std::string err = MakeArgs(kDecode, int(kind), int(dim), int(bits), qjl->m, Rows(codes), 0,
                             DType(out->element_type()), 1.0f, params.element_count(), 0, &a);
  if (!err.empty()) return Invalid("decode", err);
  if (absl::Status st = Types("decode", {{&params, xla::F32}, {&codes, xla::U8}, {&norms, xla::F32}}); !st.ok())
    return st;
  if (absl::Status st = CheckQjl("decode", *qjl, a); !st.ok()) return st;
  if (absl::Status st = Codebook("decode", a.bits, centroids); !st.ok()) return st;
  if (Cols(codes) != rj_packed_size(a.n, a.bits) || int64_t(norms.element_count()) != a.rows ||
      Cols(*out) != a.dim || Rows(*out) != a.rows)
    return Invalid("decode", "codes (..., ⌈n·bits/8⌉), norms (...) → (..., dim)");
  const bool with_qjl = a.m > 0;
  return Launch(stream, [&](void* cb, const Kernels& k, Buffer bcodes, Buffer bn, Buffer bp, Buffer bc, Buffer bs,
                            Buffer bq, Buffer bg, Buffer bo) {
    k.EncodeDecode(cb, a, bcodes, bn, bp, bc, with_qjl ? bs : Buffer{}, with_qjl ? bq : Buffer{},
                   with_qjl ? bg : Buffer{}, bo);
  }, codes, norms, params, centroids, qjl->s, qjl->bits, qjl->gamma, *out);
}

absl::Status Scores(stream_executor::Stream* stream, xffi::AnyBuffer q, xffi::AnyBuffer codes, xffi::AnyBuffer norms,
                    xffi::AnyBuffer params, xffi::AnyBuffer centroids, xffi::RemainingArgs qjl_args,
                    xffi::Result<xffi::AnyBuffer> out, int64_t kind, int64_t dim, int64_t bits, float divisor) {
  absl::StatusOr<Qjl> qjl = TakeQjl("scores", qjl_args, centroids);
  if (!qjl.ok()) return qjl.status();
  rj_metal_args a;
  std::string err = MakeArgs(kScores, int(kind), int(dim), int(bits), qjl->m, Rows(codes), Rows(q),
                             DType(q.element_type()), divisor, params.element_count(), 0, &a);
  if (!err.empty()) return Invalid("scores", err);
  if (absl::Status st = Types("scores", {{&params, xla::F32}, {&codes, xla::U8}, {&norms, xla::F32}}); !st.ok())
    return st;
  if (absl::Status st = CheckQjl("scores", *qjl, a); !st.ok()) return st;
  if (absl::Status st = Codebook("scores", a.bits, centroids); !st.ok()) return st;
  if (Cols(q) != a.dim || Cols(codes) != rj_packed_size(a.n, a.bits) || int64_t(norms.element_count()) != a.rows ||
      out->element_type() != xla::F32 || int64_t(out->element_count()) != int64_t(a.queries) * a.rows)
    return Invalid("scores", "q (..Q, dim), codes (..K, ⌈n·bits/8⌉), norms (..K) → f32 (..Q, ..K)");
  const bool with_qjl = a.m > 0;
  return Launch(stream, [&](void* cb, const Kernels& k, Buffer bq, Buffer bcodes, Buffer bn, Buffer bp, Buffer bc,
                            Buffer bs, Buffer bqb, Buffer bg, Buffer bo) {
    k.EncodeScores(cb, a, bq, bcodes, bn, bp, bc, with_qjl ? bs : Buffer{}, with_qjl ? bqb : Buffer{},
                   with_qjl ? bg : Buffer{}, bo);
  }, q, codes, norms, params, centroids, qjl->s, qjl->bits, qjl->gamma, *out);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER(kRotorjaxRotate, Rotate,
                       xffi::Ffi::Bind()
                           .Ctx<xffi::Stream>()
                           .Arg<xffi::AnyBuffer>()
                           .Arg<xffi::AnyBuffer>()
                           .Ret<xffi::AnyBuffer>()
                           .Attr<int64_t>("kind")
                           .Attr<int64_t>("dim")
                           .Attr<bool>("inverse"));
XLA_FFI_DEFINE_HANDLER(kRotorjaxEncode, Encode,
                       xffi::Ffi::Bind()
                           .Ctx<xffi::Stream>()
                           .Arg<xffi::AnyBuffer>()
                           .Arg<xffi::AnyBuffer>()
                           .Arg<xffi::AnyBuffer>()
                           .Arg<xffi::AnyBuffer>()
                           .RemainingArgs()
                           .Ret<xffi::AnyBuffer>()
                           .Ret<xffi::AnyBuffer>()
                           .RemainingRets()
                           .Attr<int64_t>("kind")
                           .Attr<int64_t>("dim")
                           .Attr<int64_t>("bits"));
XLA_FFI_DEFINE_HANDLER(kRotorjaxDecode, Decode,
                       xffi::Ffi::Bind()
                           .Ctx<xffi::Stream>()
                           .Arg<xffi::AnyBuffer>()
                           .Arg<xffi::AnyBuffer>()
                           .Arg<xffi::AnyBuffer>()
                           .Arg<xffi::AnyBuffer>()
                           .RemainingArgs()
                           .Ret<xffi::AnyBuffer>()
                           .Attr<int64_t>("kind")
                           .Attr<int64_t>("dim")
                           .Attr<int64_t>("bits"));
XLA_FFI_DEFINE_HANDLER(kRotorjaxScores, Scores,
                       xffi::Ffi::Bind()
                           .Ctx<xffi::Stream>()
                           .Arg<xffi::AnyBuffer>()
                           .Arg<xffi::AnyBuffer>()
                           .Arg<xffi::AnyBuffer>()
                           .Arg<xffi::AnyBuffer>()
                           .Arg<xffi::AnyBuffer>()
                           .RemainingArgs()
                           .Ret<xffi::AnyBuffer>()
                           .Attr<int64_t>("kind")
                           .Attr<int64_t>("dim")
                           .Attr<int64_t>("bits")
                           .Attr<float>("divisor"));

XLA_FFI_REGISTER_HANDLER(xffi::GetXlaFfiApi(), "rotorjax_rotate", "METAL", kRotorjaxRotate);
XLA_FFI_REGISTER_HANDLER(xffi::GetXlaFfiApi(), "rotorjax_encode", "METAL", kRotorjaxEncode);
XLA_FFI_REGISTER_HANDLER(xffi::GetXlaFfiApi(), "rotorjax_decode", "METAL", kRotorjaxDecode);
XLA_FFI_REGISTER_HANDLER(xffi::GetXlaFfiApi(), "rotorjax_scores", "METAL", kRotorjaxScores);

}  // namespace rotorjax_metal
