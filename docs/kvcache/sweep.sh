#!/bin/bash
# The sweep behind docs/kvcache.md, run in this order on the 2-core CPU machine.
set -x
cd /work/main
E="python -m rotorjax.eval"
$E --contexts 2048 --bits 4/4 --rotations rotor-mix --timing --needle-length 2048 --needle-depths 0.1 0.5 0.9 --needle-for "K4V4 rotor-mix s4 r64" --out docs/kvcache/accept_2k.json
$E --contexts 2048 --bits 2/2 3/3 4/4 4/3 --rotations haar hadamard rotor planar iso rotor-mix --needle-depths --out docs/kvcache/sweep_2k.json --plot docs/kvcache/sweep_2k.png
$E --contexts 1024 --bits 2/2 3/3 4/4 4/3 --rotations haar hadamard rotor planar iso rotor-mix --needle-depths --out docs/kvcache/sweep_1k.json
$E --contexts 4096 --bits 2/2 3/3 4/4 --rotations haar rotor-mix --needle-depths --out docs/kvcache/sweep_4k.json
$E --contexts 2048 --bits 4/4 2/2 --rotations haar rotor-mix --sinks-recent on off --center on off --needle-depths --out docs/kvcache/ablation_2k.json
$E --contexts 2048 --bits 3/3 2/2 --rotations rotor-mix --needle-length 2048 --needle-depths 0.1 0.5 0.9 --needle-for "K3V3 rotor-mix s4 r64" "K2V2 rotor-mix s4 r64" --out docs/kvcache/needle_low_bits_2k.json
