"""The dtype rule (codequant.models.dtype) and `load(..., dtype=)`: names are checked once, `auto` is the checkpoint's
own dtype on a GPU and float32 on the CPU, a GGUF's own dtype is float32, and a half-precision load stays half."""

from __future__ import annotations

import pytest
import torch

from codequant.errors import CodequantError
from codequant.models import load, load_dtype
from codequant.models.dtype import check_dtype, config_dtype, folder_dtype, model_dtype, resolve_dtype


@pytest.fixture(scope="module")
def fp16_dir(tmp_path_factory, tiny_llama_builder, tiny_tokenizer):
    """A tiny Llama saved in float16: its config.json says so, its tensors are so."""
    path = tmp_path_factory.mktemp("tiny-fp16")
    build = tiny_llama_builder(len(tiny_tokenizer)).to(torch.float16)
    build.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize(
    "name, canonical",
    [
        ("auto", "auto"),
        ("float16", "float16"),
        ("fp16", "float16"),
        ("BF16", "bfloat16"),
        ("torch.bfloat16", "bfloat16"),
        ("fp32", "float32"),
    ],
)
def test_names_and_aliases(name, canonical):
    assert check_dtype(name) == canonical


@pytest.mark.parametrize("bad", ["fp8", "int8", "float64", ""])
def test_unknown_dtype_is_one_clear_error(bad):
    with pytest.raises(CodequantError, match="unknown dtype .*auto, float32, float16, bfloat16"):
        check_dtype(bad)


def test_auto_is_the_checkpoint_dtype_on_a_gpu_and_float32_on_the_cpu():
    assert resolve_dtype("auto", "cpu", "bfloat16") == torch.float32
    assert resolve_dtype("auto", "cuda", "bfloat16") == torch.bfloat16
    assert resolve_dtype("auto", "cuda:1", None) == torch.float32  # a checkpoint that names none: float32
    assert resolve_dtype("float16", "cpu", "bfloat16") == torch.float16
    assert config_dtype({"torch_dtype": "bfloat16"}) == "bfloat16" and config_dtype({"dtype": "auto"}) is None


def test_folder_own_dtype_and_load(fp16_dir, tiny_llama_dir):
    assert folder_dtype(fp16_dir) == "float16" and folder_dtype(tiny_llama_dir) == "float32"
    # the resolution alone (no GPU needed): auto on a GPU keeps the checkpoint's float16
    assert load_dtype(str(fp16_dir), "auto", "cuda") == torch.float16
    auto = load(str(fp16_dir))  # on the CPU: float32
    assert auto.dtype == "float32" and {p.dtype for p in auto.model.parameters()} == {torch.float32}
    half = load(str(tiny_llama_dir), dtype="float16")
    assert half.dtype == "float16" and {p.dtype for p in half.model.parameters()} == {torch.float16}
    assert model_dtype(half.model) == torch.float16
    bf = load(str(fp16_dir), dtype="bf16")
    assert bf.dtype == "bfloat16" and {p.dtype for p in bf.model.parameters()} == {torch.bfloat16}
    with torch.no_grad():  # the half model runs on this CPU (slowly) and agrees with fp32 to fp16 precision
        x = torch.tensor([[1, 5, 9, 30, 2]])
        assert torch.allclose(
            half.model(x).logits.float(), load(str(tiny_llama_dir)).model(x).logits, atol=2e-2
        )


def test_gguf_own_dtype_is_what_the_converter_writes(tmp_path, tiny_llama, tiny_tokenizer):
    """An embedded/GGUF model is float32 in its converted folder: `auto` is float32 even on a GPU."""
    from tiny_gguf import write_tiny_gguf

    from codequant.models.loader import gguf_cache_folder

    gguf = write_tiny_gguf(tiny_llama, tiny_tokenizer, tmp_path / "tiny.gguf", chat_template=None)
    assert load_dtype(str(gguf), "auto", "cuda") == torch.float32
    loaded = load(str(gguf), dtype="float16")
    assert loaded.dtype == "float16" and folder_dtype(gguf_cache_folder(gguf)) == "float32"


def test_a_load_that_ignores_the_request_is_refused(tiny_llama_dir, monkeypatch):
    """The loader checks what it got: a half-precision request that came back float32 is an error, not a silent
    fp32 run filed as fp16."""
    import codequant.models.loader as loader

    real = loader._load_folder
    monkeypatch.setattr(loader, "_load_folder", lambda folder, dtype: real(folder, torch.float32))
    monkeypatch.setattr(loader, "_floating", lambda model: False)  # and no cast afterwards
    with pytest.raises(CodequantError, match="loaded in float32, not the float16 asked for"):
        load(str(tiny_llama_dir), dtype="float16")
