"""Pretrained Llama-family models in Flax NNX, loaded from GGUF files (see ``download`` for fetching)."""

from rotorjax.models.gguf_loader import load_gguf, load_pretrained
from rotorjax.models.llama import Llama, LlamaConfig, generate
from rotorjax.models.tokenizer import Tokenizer

__all__ = ["Llama", "LlamaConfig", "Tokenizer", "generate", "load_gguf", "load_pretrained"]
