"""Evaluation of compressed KV caches on a pretrained model: ``python -m rotorjax.eval --help``."""
