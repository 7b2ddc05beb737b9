"""Saving, loading, checksum checks, and resolve_calibration's cache / directory / folder handling."""

from __future__ import annotations

import json

import pytest
import torch
from helpers_calibration import needs_jdk, write_source_folder

from codequant.calibration import CalibrationSet, build_calibration, load_calibration, resolve_calibration
from codequant.calibration.artifact import tokens_sha256
from codequant.errors import CodequantError


def test_save_load_roundtrip_and_corruption(tmp_path, tiny_tokenizer):
    folder = write_source_folder(tmp_path / "src")
    calib = build_calibration(
        "local", tiny_tokenizer, samples=5, seq_len=32, val_samples=2, sources=[str(folder)]
    )
    out = calib.save(tmp_path / "set")
    again = load_calibration(out)
    assert again.tokens.equal(calib.tokens) and again.manifest == json.loads(json.dumps(calib.manifest))
    assert again.train.shape == (3, 32) and again.val.equal(calib.tokens[3:])
    calib.save(out)  # overwriting an existing set is atomic and leaves no temporary folders
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set", "src"]
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["sha256"] = tokens_sha256(torch.zeros(1, 1, dtype=torch.long))
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CodequantError, match="sha256"):
        load_calibration(out)
    with pytest.raises(CodequantError, match="not a calibration set"):
        load_calibration(tmp_path / "src")


def test_validation_rows_are_the_tail():
    calib = CalibrationSet(torch.arange(12).view(6, 2), {"val_samples": 2})
    assert calib.train.equal(torch.arange(8).view(4, 2)) and calib.val.equal(torch.arange(8, 12).view(2, 2))
    assert CalibrationSet(torch.ones(3, 2, dtype=torch.long), {"val_samples": 0}).val.shape == (0, 2)


@needs_jdk
def test_resolve_kind_is_cached_and_dir_is_loaded(tmp_path, monkeypatch, tiny_tokenizer):
    monkeypatch.setenv("CODEQUANT_CACHE", str(tmp_path / "cache"))
    kw = {"samples": 6, "seq_len": 32, "seed": 2, "val_samples": 2}
    first = resolve_calibration("code", tiny_tokenizer, **kw)
    cached = list((tmp_path / "cache" / "calibration").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("code-")
    second = resolve_calibration("code", tiny_tokenizer, **kw)
    assert second.sha256 == first.sha256 and second.tokens.equal(first.tokens)
    resolve_calibration("code", tiny_tokenizer, **{**kw, "seed": 3})
    assert len(list((tmp_path / "cache" / "calibration").iterdir())) == 2
    loaded = resolve_calibration(str(cached[0]), tiny_tokenizer, **kw)
    assert loaded.sha256 == first.sha256


def test_resolve_folder_and_errors(tmp_path, monkeypatch, tiny_tokenizer):
    monkeypatch.setenv("CODEQUANT_CACHE", str(tmp_path / "cache"))
    folder = write_source_folder(tmp_path / "src")
    calib = resolve_calibration(str(folder), tiny_tokenizer, samples=4, seq_len=32, seed=0, val_samples=1)
    assert calib.manifest["kind"] == "local" and calib.tokens.shape == (4, 32)
    with pytest.raises(CodequantError, match="neither a kind"):
        resolve_calibration("nonsense", tiny_tokenizer, samples=4, seq_len=32, seed=0, val_samples=1)
