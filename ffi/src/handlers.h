// The XLA FFI handlers of the CPU module (one per file) and the helpers they share.
#pragma once

#include "bindings.h"
#include "common.h"

namespace rotorjax {

XLA_FFI_DECLARE_HANDLER_SYMBOL(Rotate);
XLA_FFI_DECLARE_HANDLER_SYMBOL(Encode);
XLA_FFI_DECLARE_HANDLER_SYMBOL(Decode);
XLA_FFI_DECLARE_HANDLER_SYMBOL(Scores);

}  // namespace rotorjax
