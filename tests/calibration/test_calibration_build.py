"""Recipe shares, determinism and validation rows of the built-in Random / Mixed / Code sets (tiny tokenizer)."""

from __future__ import annotations

import pytest
from helpers_calibration import needs_corpus, needs_jdk

from codequant.calibration import build_calibration
from codequant.errors import CodequantError

SIZES = {"samples": 16, "seq_len": 64, "val_samples": 4}
RECIPE = {
    "code": {"python": 0.5, "java": 0.5, "natural_language": 0.0},
    "mixed": {"python": 0.25, "java": 0.25, "natural_language": 0.5},
    "random": {"python": 0.0, "java": 0.0, "natural_language": 1.0},
}


def _skip_missing(kind: str):
    return {"code": needs_jdk, "mixed": needs_jdk, "random": needs_corpus}[kind]


@pytest.mark.parametrize("kind", [pytest.param(k, marks=_skip_missing(k)) for k in RECIPE])
def test_shares_match_recipe_in_train_and_val(kind, tiny_tokenizer):
    calib = build_calibration(kind, tiny_tokenizer, seed=0, **SIZES)
    m = calib.manifest
    assert calib.tokens.shape == (16, 64) and calib.train.shape == (12, 64) and calib.val.shape == (4, 64)
    for key, want in RECIPE[kind].items():
        assert abs(m["shares"][key] - want) <= 0.01, (key, m["shares"])
    val_rows = [r for r in m["rows"] if r["split"] == "val"]
    val_nl = sum(r["category"] == "natural_language" for r in val_rows) / len(val_rows)
    assert abs(val_nl - RECIPE[kind]["natural_language"]) <= 0.01
    assert m["token_counts"]["total"] == 16 * 64 and m["tokenizer"]["vocab_size"] == len(
        tiny_tokenizer.get_vocab()
    )
    # each row's tokens really are the tokenization of the file at its offset
    for r, row in zip(m["rows"], calib.tokens.tolist(), strict=True):
        assert r["tokens"] == 64 and len(row) == 64
    code_units = [(r["source"], r["unit"]) for r in m["rows"] if r["category"] != "natural_language"]
    assert len(code_units) == len(set(code_units)), "at most one file per package"


@needs_jdk
def test_code_rows_are_file_prefixes(tiny_tokenizer):
    from codequant.calibration.builtin import jdk_units, python_stdlib_units

    calib = build_calibration("code", tiny_tokenizer, samples=4, seq_len=64, val_samples=0, seed=3)
    units = {(u.source, u.id): u for u in python_stdlib_units() + jdk_units()}
    for r, row in zip(calib.manifest["rows"], calib.tokens.tolist(), strict=True):
        if r["source"] not in ("python-stdlib", "jdk"):
            continue
        doc = next(d for d in units[r["source"], r["unit"]].documents() if d.name == r["file"])
        ids = tiny_tokenizer(doc.read(), add_special_tokens=False)["input_ids"]
        assert r["token_offset"] == 0 and ids[:64] == row and len(ids) > 64


@needs_jdk
def test_same_seed_same_bytes_other_seed_other_data(tiny_tokenizer, tmp_path):
    a = build_calibration("mixed", tiny_tokenizer, seed=1, **SIZES)
    b = build_calibration("mixed", tiny_tokenizer, seed=1, **SIZES)
    c = build_calibration("mixed", tiny_tokenizer, seed=2, **SIZES)
    assert a.sha256 == b.sha256 and a.sha256 != c.sha256
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    for name in ("tokens.safetensors", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_bad_kind_and_sizes_are_user_errors(tiny_tokenizer):
    with pytest.raises(CodequantError, match="unknown calibration kind"):
        build_calibration("poetry", tiny_tokenizer)
    with pytest.raises(CodequantError, match="val_samples"):
        build_calibration("code", tiny_tokenizer, samples=4, val_samples=4)
