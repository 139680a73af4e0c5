// Python module of the CUDA kernels: each XLA FFI handler as a PyCapsule, keyed by target name
// (rotorjax/_ffi.py registers them for platform "CUDA"). The four CPU targets keep their names and
// operands; grouped_scores and attention_decode exist only here (pure JAX elsewhere).
#include <pybind11/pybind11.h>

#include "xla/ffi/api/ffi.h"

namespace rotorjax {
namespace cuda {
XLA_FFI_DECLARE_HANDLER_SYMBOL(Rotate);
XLA_FFI_DECLARE_HANDLER_SYMBOL(Encode);
XLA_FFI_DECLARE_HANDLER_SYMBOL(Decode);
XLA_FFI_DECLARE_HANDLER_SYMBOL(Scores);
XLA_FFI_DECLARE_HANDLER_SYMBOL(GroupedScores);
XLA_FFI_DECLARE_HANDLER_SYMBOL(AttentionDecode);
}  // namespace cuda
}  // namespace rotorjax

namespace py = pybind11;

PYBIND11_MODULE(_rotorjax_cuda, m) {
  m.doc() = "rotorjax XLA FFI kernels for CUDA";
  m.def("registrations", [] {
    namespace c = rotorjax::cuda;
    py::dict d;
    d["rotorjax_rotate"] = py::capsule(reinterpret_cast<void*>(c::Rotate));
    d["rotorjax_encode"] = py::capsule(reinterpret_cast<void*>(c::Encode));
    d["rotorjax_decode"] = py::capsule(reinterpret_cast<void*>(c::Decode));
    d["rotorjax_scores"] = py::capsule(reinterpret_cast<void*>(c::Scores));
    d["rotorjax_grouped_scores"] = py::capsule(reinterpret_cast<void*>(c::GroupedScores));
    d["rotorjax_attention_decode"] = py::capsule(reinterpret_cast<void*>(c::AttentionDecode));
    return d;
  });
}
