"""Held-out code never overlaps calibration: by package and by file, for every kind and several seeds."""

from __future__ import annotations

import pytest
from helpers_calibration import needs_jdk, write_source_folder

from codequant.calibration import build_calibration, heldout_rows, heldout_tokens
from codequant.calibration.split import check_disjoint, is_heldout
from codequant.errors import CodequantError


@needs_jdk
@pytest.mark.parametrize("kind,seed", [("code", 0), ("code", 11), ("mixed", 4)])
def test_heldout_disjoint_from_calibration(kind, seed, tiny_tokenizer):
    calib = build_calibration(kind, tiny_tokenizer, samples=24, seq_len=48, val_samples=0, seed=seed)
    for language in ("python", "java"):
        tokens, files = heldout_rows(language, tiny_tokenizer, 3000)
        assert tokens.shape == (3000,) and files
        check_disjoint(calib.manifest["rows"], files)
        cal_keys = {r["split_key"] for r in calib.manifest["rows"]}
        assert not cal_keys & {f["split_key"] for f in files}


def test_check_disjoint_detects_overlap():
    row = {"source": "jdk", "file": "java.base/java/util/List.java", "split_key": "java:java.base/java/util"}
    other = {**row, "file": "java.base/java/util/Map.java"}
    with pytest.raises(CodequantError, match="overlaps"):
        check_disjoint([row], [other])  # same package, different file
    check_disjoint([row], [{**other, "split_key": "java:java.base/java/io"}])


def test_folder_heldout_units_are_never_drawn(tiny_tokenizer, tmp_path):
    folder = write_source_folder(tmp_path / "src", repos=40)
    tokens, files = heldout_rows("python", tiny_tokenizer, 200, sources=[str(folder)])
    held = {f["unit"] for f in files}
    assert held and all(u.startswith("repo") for u in held)
    from codequant.calibration.local import local_units

    usable = [u for u in local_units(str(folder)) if u.category == "python" and not is_heldout(u)]
    calib = build_calibration(
        "code", tiny_tokenizer, samples=2 * len(usable) - 1, seq_len=40, val_samples=0, sources=[str(folder)]
    )
    drawn = {r["unit"] for r in calib.manifest["rows"] if r["category"] == "python"}
    assert drawn == {u.id for u in usable} and not drawn & held  # every usable repo once, no held-out repo


def test_heldout_shapes_and_determinism(tiny_tokenizer):
    a = heldout_tokens("python", tiny_tokenizer, n_tokens=2000)
    b = heldout_tokens("python", tiny_tokenizer, n_tokens=2000)
    rows = heldout_tokens("python", tiny_tokenizer, samples=4, seq_len=500)
    assert (
        a.dtype.is_floating_point is False
        and a.equal(b)
        and rows.shape == (4, 500)
        and rows.flatten().equal(a)
    )
    with pytest.raises(CodequantError, match="python or java"):
        heldout_tokens("rust", tiny_tokenizer)
