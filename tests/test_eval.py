"""The evaluation CLI on the real SmolLM2 model, in a short version (a few hundred tokens)."""

import json

import numpy as np
import pytest

from rotorjax.eval import __main__ as cli
from rotorjax.eval import core, report, wikitext
from rotorjax.models import download


@pytest.fixture(scope="module")
def model_path():
    try:
        return download.fetch()
    except download.DownloadError as e:
        pytest.skip(f"SmolLM2 GGUF not downloadable here: {e}")


def test_wikitext_clean_strips_markup():
    markup = ("'''Albedo''' {{Infobox|x={{nested}}}} is the [[diffuse reflection|reflectivity]] of a surface"
              "<ref>Some ref</ref> [[File:A.png|thumb|cap]] measured on a scale from 0 to 1, where 0 is a black "
              "body that absorbs all radiation and 1 is a body that reflects all of it, see [[Earth]].\n\n== Terms ==")
    assert wikitext.clean(markup) == []  # shorter than a prose paragraph
    paras = wikitext.clean(markup, min_chars=50)
    assert paras == ["Albedo is the reflectivity of a surface measured on a scale from 0 to 1, where 0 is a black "
                     "body that absorbs all radiation and 1 is a body that reflects all of it, see Earth."]
    assert len(wikitext.load()) > 300_000


def test_needle_prompt(model_path):
    import gguf

    from rotorjax.models.gguf_loader import read_tokenizer

    tok = read_tokenizer(gguf.GGUFReader(model_path))
    ids = core.needle_prompt(tok, core.FILLER * 50, 31337, 0.5, 300)
    assert ids.shape == (300,)
    text = tok.decode(ids)
    assert text.count("31337") == 2 and text.startswith(core.PREAMBLE) and text.endswith(core.QUESTION)
    assert 0.3 < text.index("31337") / len(text) < 0.7
    with pytest.raises(ValueError, match="depth"):
        core.needle_prompt(tok, core.FILLER, 1, 1.5, 100)
    with pytest.raises(ValueError, match="too short"):
        core.needle_prompt(tok, core.FILLER, 1, 0.5, 1000)


def test_cli_short_run(model_path, tmp_path, capsys):
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    cli.main(["--contexts", "192", "--bits", "4/4", "2/2", "--rotations", "rotor-mix", "--needle-length", "160",
              "--needle-depths", "0.5", "--out", str(out), "--plot", str(png)])
    res = json.loads(out.read_text())
    rows = {r["config"]: r for r in res["rows"]}
    dense, k4, k2 = rows["dense"], rows["K4V4 rotor-mix s4 r64"], rows["K2V2 rotor-mix s4 r64"]
    assert 5 < dense["ppl"] < 100 and dense["kl"] == pytest.approx(0, abs=1e-6)
    assert abs(k4["ppl"] / dense["ppl"] - 1) < 0.03 and 0 < k4["kl"] < k2["kl"]
    assert k2["bytes_per_token"] < k4["bytes_per_token"] < dense["bytes_per_token"]
    assert {(n["config"], n["haystack"]) for n in res["needle"]} == {
        (c, h) for c in ("dense", "K4V4 rotor-mix s4 r64") for h in ("filler", "wikipedia")}
    assert png.stat().st_size > 10_000
    assert "K2V2 rotor-mix s4 r64" in capsys.readouterr().out
    report.main([str(out)])
    md = capsys.readouterr().out
    assert "| 192 | K4V4 rotor-mix s4 r64 |" in md and "--contexts 192" in md


@pytest.mark.parametrize("argv", [["--bits", "4"], ["--contexts", "16"], ["--rotations", "nope"]])
def test_cli_bad_arguments(argv):
    with pytest.raises(SystemExit):
        cli.parse_args(argv)


def test_layerwise_forward_matches_model():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from rotorjax import kvcache
    from rotorjax.models import Llama, LlamaConfig

    cfg = LlamaConfig(vocab_size=300, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, ffn_dim=48, max_len=64)
    model = Llama(cfg, nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(0), (1, 10), 0, 300)
    spec = kvcache.QuantSpec(k_bits=3, v_bits=3, sinks=1, recent=2)
    for make in (lambda: kvcache.KVCache.dense(cfg, 1, 12), lambda: kvcache.KVCache.turboquant(cfg, 1, 12, spec)):
        np.testing.assert_allclose(core.forward(model, tokens, make()), model(tokens, make()), atol=1e-5)


def test_boundary_layers_config():
    from flax import nnx

    from rotorjax import kvcache
    from rotorjax.models import Llama, LlamaConfig

    cfg = LlamaConfig(vocab_size=50, dim=16, n_layers=3, n_heads=2, n_kv_heads=1, head_dim=8, ffn_dim=16, max_len=16)
    model = nnx.eval_shape(lambda: Llama(cfg, nnx.Rngs(0)))
    config = core.Config("x", kvcache.QuantSpec(k_bits=2, v_bits=3), boundary=1, boundary_bits=4)
    cache = core.make_cache(model, config, 8)
    assert [(c.kq.bits, c.vq.bits) for c in cache.layers] == [(4, 4), (2, 3), (4, 4)]
    assert isinstance(core.make_cache(model, core.Config("dense"), 8).layers[0], kvcache.DenseKVCache)
    assert "edge1@4" in cli.configs(cli.parse_args(["--bits", "2/2", "--rotations", "haar", "--boundary", "1"]))[1].name
