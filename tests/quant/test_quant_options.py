"""Typed quantization options: one dataclass per method, the same one-line errors from the CLI and a study YAML,
and unchanged stored configs (and so unchanged artifact keys) for equal settings."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from codequant.errors import CodequantError
from codequant.quant.base import QuantConfig
from codequant.quant.options import (
    AqlmOptions,
    GptqOptions,
    RtnOptions,
    cli_options,
    option_names,
    option_table,
    parse_assignments,
    parse_options,
)
from codequant.quant.registry import make_quantizer
from codequant.study import build_plan, load_config, parse_config

GPTQ_KEYS = (
    "zero_point, clip, clip_grid, clip_maxshrink, clip_norm, percdamp, blocksize, act_order, static_groups"
)
RTN_KEYS = "zero_point, clip, clip_grid, clip_maxshrink, clip_norm"


def study(method: str, options: dict) -> dict:
    return {
        "name": "t",
        "models": ["m"],
        "benchmarks": [{"name": "humaneval"}],
        "quantizations": [{"method": method, "bits": [4], "options": options}],
    }


def yaml_error(tmp_path, method: str, options: dict) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study(method, options)))
    with pytest.raises(CodequantError) as e:
        load_config(path)
    return str(e.value)


def cli_error(*args: str) -> str:
    code = "from codequant.cli import main; main()"
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-c", code, "quantize", "smollm2-135m", *args, "--out", f"{tmp}/o"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0].removeprefix("error: ")


def test_each_method_parses_to_its_typed_options():
    assert parse_options("rtn", {}) == RtnOptions()
    gptq = parse_options("gptq", {"act_order": True, "percdamp": "0.05", "blocksize": 64, "clip": None})
    assert gptq == GptqOptions(act_order=True, percdamp=0.05, blocksize=64) and gptq.clip == "minmax"
    aqlm = parse_options("aqlm", {"effort": "reference", "beam_size": "4", "kmeans_sample": "all"})
    assert aqlm == AqlmOptions(effort="reference", beam_size=4, kmeans_sample="all")
    assert aqlm.explicit() == {"beam_size": 4, "kmeans_sample": "all"}
    assert option_names("gptq") == GPTQ_KEYS.split(", ")


def test_a_misspelt_key_is_one_line_naming_it_the_closest_and_every_allowed_key():
    with pytest.raises(CodequantError) as e:
        parse_options("gptq", {"act_ordr": True})
    assert str(e.value) == (
        f"unknown gptq option 'act_ordr' (did you mean 'act_order'?); the gptq options are {GPTQ_KEYS}"
    )


def test_a_key_of_another_method_says_whose_it_is():
    with pytest.raises(
        CodequantError,
        match="unknown rtn option 'act_order': --act-order and --static-groups are "
        f"GPTQ options; the rtn options are {RTN_KEYS}$",
    ):
        parse_options("rtn", {"act_order": True})
    with pytest.raises(CodequantError, match="'clip': --clip is an RTN/GPTQ option"):
        parse_options("aqlm", {"clip": "mse"})
    with pytest.raises(CodequantError, match="'percdamp': percdamp is a GPTQ option"):
        parse_options("aqlm", {"percdamp": 0.1})


@pytest.mark.parametrize(
    "method, options, message",
    [
        ("gptq", {"act_order": "yes"}, "bad GPTQ option act_order: expected bool"),
        ("gptq", {"blocksize": 2.5}, "bad GPTQ option blocksize"),
        ("rtn", {"zero_point": "odd"}, "zero_point must be one of"),
        ("aqlm", {"effort": "slow"}, "unknown AQLM effort 'slow'"),
        ("aqlm", {"kmeans_sample": "some"}, "bad AQLM option kmeans_sample"),
        ("gptq", {"static_groups": True}, "--static-groups only applies with --act-order"),
        ("nope", {}, "unknown quantization method 'nope'"),
    ],
)
def test_bad_values_are_one_clear_line(method, options, message):
    with pytest.raises(CodequantError, match=message) as e:
        parse_options(method, options)
    assert "\n" not in str(e.value)


def test_quantizers_read_the_typed_options():
    q = make_quantizer(
        QuantConfig("gptq", bits=4, group_size=32, options={"act_order": True, "percdamp": 0.05})
    )
    assert q.options == GptqOptions(act_order=True, percdamp=0.05)
    assert q.describe()["act_order"] is True and q.describe()["percdamp"] == 0.05
    with pytest.raises(CodequantError, match="unknown rtn option 'clipp'"):
        make_quantizer(QuantConfig("rtn", bits=4, options={"clipp": "mse"}))


def test_a_study_yaml_with_a_misspelt_option_fails_with_one_line(tmp_path):
    msg = yaml_error(tmp_path, "gptq", {"act_ordr": True})
    assert "\n" not in msg and msg.startswith(f"{tmp_path / 'study.yaml'}: quantizations.0: ")
    assert msg.endswith(
        f"unknown gptq option 'act_ordr' (did you mean 'act_order'?); the gptq options are {GPTQ_KEYS}"
    )


def test_cli_and_yaml_refuse_the_same_options_with_the_same_line(tmp_path):
    """A misspelt key through `--option`, an incompatible one through its flag and through `--option`: the CLI's
    error is the study YAML's, word for word (after the YAML's location prefix)."""
    for method, options, args in [
        ("gptq", {"act_ordr": True}, ["--bits", "4", "--option", "act_ordr=true"]),
        ("rtn", {"act_order": True}, ["--bits", "4", "--act-order"]),
        ("rtn", {"act_order": True}, ["--bits", "4", "--option", "act_order=true"]),
        ("aqlm", {"beam_size": 0}, ["--bits", "2", "--beam-size", "0"]),
    ]:
        expected = str(pytest.raises(CodequantError, parse_options, method, options).value)
        assert yaml_error(tmp_path, method, options).endswith(f"quantizations.0: {expected}")
        assert cli_error("--method", method, *args) == expected


def test_the_cli_stores_the_options_dict_it_always_stored():
    """Equal settings keep their quantize.json config and checkpoint fingerprint: gptq records act_order and
    static_groups, the default clip is left out."""
    assert cli_options("gptq", {}) == {"act_order": False, "static_groups": False}
    assert cli_options("gptq", {"act_order": True, "clip": "mse"}) == {
        "act_order": True,
        "static_groups": False,
        "clip": "mse",
    }
    assert cli_options("rtn", {"clip": "minmax"}) == {}
    assert cli_options("aqlm", {"effort": "reference"}) == {"effort": "reference"}
    assert parse_assignments(["act_order=true", "percdamp=0.05", "clip=mse"]) == {
        "act_order": True,
        "percdamp": 0.05,
        "clip": "mse",
    }
    with pytest.raises(CodequantError, match="--option takes KEY=VALUE"):
        parse_assignments(["act_order"])


def test_study_artifact_keys_are_unchanged_for_equal_settings(tmp_path):
    """The keys of these quantize steps before the options were typed (measured on the tree before the change):
    a study's cached quantizations stay valid."""
    data = study("gptq", {"act_order": True, "clip": "mse"})
    data["quantizations"].append(
        {"method": "aqlm", "bits": [2], "options": {"effort": "reference", "beam_size": 4}}
    )
    plan = build_plan(parse_config(data), tmp_path)
    keys = {s.name: s.key for s in plan.steps if s.kind == "quantize"}
    assert keys == {
        "quantize:m-gptq-4bit-code": "52ef4b1360135a16",
        "quantize:m-aqlm-2bit-code": "b7449233e5a63184",
    }


def markdown_table(method: str) -> str:
    rows = ["| option | default | flag | what it sets |", "|---|---|---|---|"]
    for key, default, flag, doc in option_table(method):
        rows.append(f"| `{key}` | {default} | {f'`{flag}`' if flag else ''} | {doc} |")
    return "\n".join(rows)


@pytest.mark.parametrize("method", ["rtn", "gptq", "aqlm"])
def test_docs_list_every_option_of_every_method(method):
    """docs/quantization.md's tables are the dataclasses' fields: a new or renamed option fails here until the doc
    holds the table printed in the message."""
    doc = (Path(__file__).parents[2] / "docs" / "quantization.md").read_text(encoding="utf-8")
    table = markdown_table(method)
    assert table in doc, f"docs/quantization.md must hold the {method} options table:\n{table}"


def test_token_tables_are_checked_the_same_from_the_cli_and_the_yaml(tmp_path):
    """`--embedding-bits 5` and a study's `tables: {embedding_bits: 5}` give the same line (TableSpec's); a
    misspelt key under `tables:` names itself."""
    data = study("rtn", {})
    data["quantizations"][0]["tables"] = {"embedding_bits": 5}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CodequantError) as e:
        load_config(path)
    expected = "embedding_bits must be one of 8, 6, 4 (or unset for fp), got 5"
    assert "\n" not in str(e.value) and str(e.value).endswith(expected)
    assert cli_error("--method", "rtn", "--bits", "4", "--embedding-bits", "5") == expected
    data["quantizations"][0]["tables"] = {"embeding_bits": 8}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CodequantError, match="embeding_bits"):
        load_config(path)


def test_token_tables_and_pv_tuning_reach_their_steps_and_leave_other_keys_alone(tmp_path):
    """Without `tables:` or PV-tuning the quantize and finetune keys are those of the tree before either existed
    (measured there); with them, the steps carry the settings (so another setting is another artifact)."""
    data = {
        "name": "t",
        "models": ["m"],
        "benchmarks": [{"name": "humaneval"}],
        "quantizations": [{"method": "aqlm", "bits": [2], "finetune": [False, True]}],
    }
    keys = {
        s.name: s.key
        for s in build_plan(parse_config(data), tmp_path).steps
        if s.kind in ("quantize", "finetune")
    }
    assert keys == {
        "quantize:m-aqlm-2bit-code": "b620ead6ea55efd4",
        "finetune:m-aqlm-2bit-code-ft": "fb9f73a2b6da14fb",
    }
    data["quantizations"][0]["tables"] = {"embedding_bits": 8, "head_bits": 8}
    data["finetune"] = {"pv_tuning": True, "pv_tau": 0.02}
    steps = {s.kind: s for s in build_plan(parse_config(data), tmp_path).steps}
    assert steps["quantize"].config["tables"] == {"embedding_bits": 8, "head_bits": 8, "group_size": 64}
    assert steps["finetune"].config["pv_tuning"] and steps["finetune"].config["pv_tau"] == 0.02
    assert steps["quantize"].key != keys["quantize:m-aqlm-2bit-code"]
    data["finetune"] = {"pv_tau": 2}
    with pytest.raises(CodequantError, match="pv_tau"):
        parse_config(data)
