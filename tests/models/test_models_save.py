"""codequant.models.save: an HF folder that load() reads back identically, written atomically."""

from __future__ import annotations

import pytest
import torch

from codequant.errors import CodequantError
from codequant.models import load, save


def test_save_then_load_round_trip(tmp_path, tiny_llama_dir, tiny_tokenizer):
    loaded = load(str(tiny_llama_dir))
    out = save(loaded, out_dir=tmp_path / "copy")
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    again = load(str(out))
    x = torch.tensor([tiny_tokenizer.encode("print(1)")])
    assert torch.equal(again.model(x).logits, loaded.model(x).logits)
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]  # no temp folders left


def test_save_refuses_a_non_empty_folder_unless_asked(tmp_path, tiny_llama, tiny_tokenizer):
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(CodequantError, match="not empty"):
        save(tiny_llama, tiny_tokenizer, out)
    save(tiny_llama, tiny_tokenizer, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_save_needs_a_transformers_model(tmp_path):
    with pytest.raises(CodequantError, match="needs a transformers model"):
        save(torch.nn.Linear(2, 2), None, tmp_path / "x")
