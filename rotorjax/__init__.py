"""rotorjax: rotation-based vector quantization (TurboQuant, Clifford rotors) in JAX."""

from rotorjax import clifford, codebooks, inputs, metrics, packing, rotations
from rotorjax.calibrate import calibrate
from rotorjax.codebooks import lloyd_max
from rotorjax.quantizer import Codes, TurboQuant

__all__ = ["Codes", "TurboQuant", "calibrate", "clifford", "codebooks", "inputs", "lloyd_max", "metrics", "packing", "rotations"]
__version__ = "0.1.0"
