"""Byte-level BPE tokenizer rebuilt from a GGUF file's ``tokenizer.ggml.*`` metadata.

The GGUF stores the vocabulary (``tokens``), the merge list (``merges``, "left right" strings in rank
order) and a per-token type (3 = control, e.g. ``<|im_start|>``). ``tokenizer.ggml.pre`` names the
pre-tokenizer (how text is split into words before BPE runs inside each word); the splits here are the
ones the Hugging Face ``tokenizer.json`` of each model family uses. The BPE itself runs in the
``tokenizers`` library, so encoding matches the reference tokenizer byte for byte.
"""

from __future__ import annotations

import tokenizers
from tokenizers import decoders, models, pre_tokenizers

_CONTROL = 3

# GPT-2 style word split, applied by ByteLevel when use_regex=True.
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _pre_tokenizer(pre: str):
    if pre == "smollm":  # digits one by one, then the GPT-2 split
        return pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    if pre == "gpt2":
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "qwen2":
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(tokenizers.Regex(_QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    raise ValueError(f"unsupported tokenizer.ggml.pre {pre!r}; supported: 'smollm', 'gpt2', 'qwen2'")


class Tokenizer:
    """``encode(text) -> list[int]`` and ``decode(ids) -> str``; control tokens (``<|im_start|>`` …) in the
    text are matched whole. ``bos_id``/``eos_id`` come from the GGUF metadata."""

    def __init__(self, tokens: list[str], merges: list[str], token_types: list[int], pre: str,
                 bos_id: int | None = None, eos_id: int | None = None):
        if len(tokens) != len(token_types):
            raise ValueError(f"{len(tokens)} tokens but {len(token_types)} token types")
        vocab = {t: i for i, t in enumerate(tokens)}
        pairs = [tuple(m.split(" ")) for m in merges]
        bad = [m for m, p in zip(merges, pairs) if len(p) != 2]
        if bad:
            raise ValueError(f"malformed BPE merges (expected 'left right'): {bad[:3]}")
        tok = tokenizers.Tokenizer(models.BPE(vocab, pairs, fuse_unk=False, byte_fallback=False))
        tok.pre_tokenizer = _pre_tokenizer(pre)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                                for t, ty in zip(tokens, token_types) if ty == _CONTROL])
        self._tok = tok
        self.vocab_size = len(tokens)
        self.bos_id, self.eos_id = bos_id, eos_id

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)
