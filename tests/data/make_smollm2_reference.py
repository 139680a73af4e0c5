"""Write smollm2_reference.npz: transformers' (PyTorch) logits for SmolLM2-135M-Instruct on one prompt.

Run where torch, transformers, accelerate and gguf are installed, after
``python -m rotorjax.models.download``:

    python tests/data/make_smollm2_reference.py

Stores the prompt, transformers' token ids, the log-sum-exp of every position's logits over the whole
vocabulary, and the logits of a fixed subset of 1024 token ids (the full (T, 49152) matrix would be 6 MB).
"""

import importlib.util
import pathlib
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

# download.py needs only the standard library; load it by path so this script runs without jax.
_spec = importlib.util.spec_from_file_location(
    "download", pathlib.Path(__file__).resolve().parents[2] / "rotorjax" / "models" / "download.py")
download = sys.modules["download"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(download)

PROMPT = ("The Eiffel Tower, completed in 1889 for the World's Fair, is 330 metres tall.\n"
          "Q: How tall is it?\nA:")

path = download.fetch()
tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
ids = tok(PROMPT, add_special_tokens=False).input_ids
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0].double().numpy()
vocab = np.random.default_rng(0).choice(logits.shape[1], 1024, replace=False)
vocab = np.unique(np.concatenate([vocab, logits.argmax(1)]))
np.savez_compressed(
    pathlib.Path(__file__).with_name("smollm2_reference.npz"),
    prompt=np.array(PROMPT),
    ids=np.array(ids, np.int32),
    vocab=vocab.astype(np.int32),
    logits=logits[:, vocab].astype(np.float32),
    logsumexp=np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1),
)
print(len(ids), "tokens; argmax", logits.argmax(1)[-5:])
