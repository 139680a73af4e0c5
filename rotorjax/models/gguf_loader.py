"""Load a Llama-family model and its tokenizer from a GGUF file (llama.cpp's format).

Tensors are dequantized to float32 with ``gguf.quants.dequantize`` (a GGUF matrix is stored as
(out, in), so it is transposed into an ``nnx.Linear`` kernel, (in, out)). For ``llama``-arch files,
llama.cpp's converter permuted the rows of W_q and W_k of every head from the rotate-half layout
(row = half · D/2 + i) to the interleaved one (row = 2i + half); ``unpermute_rows`` restores it, as
transformers' GGUF loader does. ``qwen2``-arch files are stored in rotate-half order already and carry
q/k/v biases.
"""

from __future__ import annotations

import os

import gguf
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rotorjax.models.llama import Llama, LlamaConfig
from rotorjax.models.tokenizer import Tokenizer

ARCHS = ("llama", "qwen2")


def unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's ``permute``: rows (head, i, half) -> (head, half, i); ``w`` (rows, ...)."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise ValueError(f"cannot un-permute {rows} rows over {n_head} heads")
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field(reader: gguf.GGUFReader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        if default is None:
            raise ValueError(f"GGUF metadata lacks required key {key!r}")
        return default
    return f.contents()


def read_config(reader: gguf.GGUFReader) -> LlamaConfig:
    arch = _field(reader, "general.architecture")
    if arch not in ARCHS:
        raise ValueError(f"unsupported GGUF architecture {arch!r}; supported: {ARCHS}")
    scaling = reader.fields.get(f"{arch}.rope.scaling.type")
    if scaling is not None and scaling.contents() not in ("none", ""):
        raise ValueError(f"RoPE scaling {scaling.contents()!r} is not supported")
    g = lambda k, d=None: _field(reader, f"{arch}.{k}", d)
    dim, n_heads = int(g("embedding_length")), int(g("attention.head_count"))
    names = {t.name for t in reader.tensors}
    return LlamaConfig(
        vocab_size=len(reader.fields["tokenizer.ggml.tokens"].data),
        dim=dim,
        n_layers=int(g("block_count")),
        n_heads=n_heads,
        n_kv_heads=int(g("attention.head_count_kv", n_heads)),
        head_dim=int(g("attention.key_length", dim // n_heads)),
        ffn_dim=int(g("feed_forward_length")),
        rope_theta=float(g("rope.freq_base", 10000.0)),
        norm_eps=float(g("attention.layer_norm_rms_epsilon")),
        qkv_bias="blk.0.attn_q.bias" in names,
        tie_embeddings="output.weight" not in names,
        max_len=int(g("context_length", 8192)),
    )


def read_tokenizer(reader: gguf.GGUFReader) -> Tokenizer:
    model = _field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(f"only byte-level BPE ('gpt2') GGUF tokenizers are supported, got {model!r}")
    return Tokenizer(
        tokens=list(_field(reader, "tokenizer.ggml.tokens")),
        merges=list(_field(reader, "tokenizer.ggml.merges")),
        token_types=[int(t) for t in _field(reader, "tokenizer.ggml.token_type")],
        pre=_field(reader, "tokenizer.ggml.pre", "gpt2"),
        bos_id=reader.fields["tokenizer.ggml.bos_token_id"].contents() if "tokenizer.ggml.bos_token_id" in reader.fields else None,
        eos_id=reader.fields["tokenizer.ggml.eos_token_id"].contents() if "tokenizer.ggml.eos_token_id" in reader.fields else None,
    )


def _tensors(reader: gguf.GGUFReader) -> dict[str, np.ndarray]:
    out = {}
    for t in reader.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        out[t.name] = w.reshape(tuple(int(s) for s in reversed(t.shape)))
    return out


def load_gguf(path: str | os.PathLike) -> tuple[Llama, Tokenizer]:
    """Build the model (float32 parameters) and tokenizer stored in the GGUF file at ``path``."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no GGUF file at {path}")
    reader = gguf.GGUFReader(path)
    cfg = read_config(reader)
    arch = _field(reader, "general.architecture")
    w = _tensors(reader)
    model = nnx.eval_shape(lambda: Llama(cfg, nnx.Rngs(0)))

    def put(var, name, transform=lambda a: a):
        if name not in w:
            raise ValueError(f"GGUF lacks tensor {name!r}")
        a = transform(w.pop(name))
        if a.shape != var.shape:
            raise ValueError(f"tensor {name!r} has shape {a.shape}, model expects {var.shape}")
        var.set_value(jnp.asarray(a))

    qk_fix = {"q": cfg.n_heads, "k": cfg.n_kv_heads}
    put(model.embed.embedding, "token_embd.weight")
    put(model.norm.scale, "output_norm.weight")
    if model.lm_head is not None:
        put(model.lm_head.kernel, "output.weight", np.transpose)
    for i, layer in enumerate(model.layers):
        p = f"blk.{i}."
        put(layer.attn_norm.scale, p + "attn_norm.weight")
        put(layer.mlp_norm.scale, p + "ffn_norm.weight")
        for ours, theirs in (("q", "attn_q"), ("k", "attn_k"), ("v", "attn_v"), ("o", "attn_output")):
            lin = getattr(layer.attn, ours)
            fix = (lambda a, n=qk_fix[ours]: unpermute_rows(a, n)) if arch == "llama" and ours in qk_fix else (lambda a: a)
            put(lin.kernel, p + theirs + ".weight", lambda a, fix=fix: fix(a).T)
            if lin.bias is not None:
                put(lin.bias, p + theirs + ".bias", fix)
        for ours, theirs in (("gate", "ffn_gate"), ("up", "ffn_up"), ("down", "ffn_down")):
            put(getattr(layer.mlp, ours).kernel, p + theirs + ".weight", np.transpose)
    extra = sorted(k for k in w if k != "rope_freqs.weight")
    if extra:
        raise ValueError(f"GGUF has tensors this model does not use: {extra[:5]}")
    return model, read_tokenizer(reader)


def load_pretrained(name: str | None = None) -> tuple[Llama, Tokenizer]:
    """Fetch (if needed, into the user cache) and load a known model; see ``rotorjax.models.download``."""
    from rotorjax.models import download

    return load_gguf(download.fetch(name or download.DEFAULT_MODEL))
