// Python module of the CPU kernels: exposes each XLA FFI handler as a PyCapsule, keyed by the target
// name it is registered under (rotorjax/_ffi.py registers them for platform "cpu"; a CUDA module
// exports the same names for "CUDA").
#include <pybind11/pybind11.h>

#include "handlers.h"

namespace py = pybind11;

namespace {

template <typename T>
py::capsule Capsule(T* fn) {
  static_assert(std::is_invocable_r_v<XLA_FFI_Error*, T, XLA_FFI_CallFrame*>, "not an XLA FFI handler");
  return py::capsule(reinterpret_cast<void*>(fn));
}

}  // namespace

PYBIND11_MODULE(_rotorjax_cpu, m) {
  m.doc() = "rotorjax XLA FFI kernels for CPU";
  m.def("registrations", [] {
    py::dict d;
    d["rotorjax_rotate"] = Capsule(rotorjax::Rotate);
    d["rotorjax_encode"] = Capsule(rotorjax::Encode);
    d["rotorjax_decode"] = Capsule(rotorjax::Decode);
    d["rotorjax_scores"] = Capsule(rotorjax::Scores);
    return d;
  });
}
