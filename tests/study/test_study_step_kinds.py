"""The registry of step kinds: the one list every other list of kinds derives from, and a new kind is one
module plus one registry entry (tests/study/lengths_kind.py, planned and run through a real study here)."""

import json

import lengths_kind
import pytest
import yaml
from test_study_runner import RECORDS, write_study

from codequant.errors import CodequantError
from codequant.study import StudyStore, build_plan, load_config, parse_config, run_study
from codequant.study.costs import MODEL_COSTS
from codequant.study.executors import resources_for
from codequant.study.kinds import STEP_KINDS, StepKind, StepKinds
from codequant.study.resources import Resources

BASE = {
    "name": "t",
    "models": ["m", "m2"],
    "benchmarks": [{"name": "humaneval"}],
    "perplexity": {},
    "inference": {},
    "quantizations": [{"method": "rtn", "bits": [4], "calibration": ["code"], "finetune": [False, True]}],
}
WITH_LENGTHS = STEP_KINDS.with_kind(lengths_kind.LENGTHS, after="evaluate")


def test_every_builtin_kind_is_one_module_that_plans_runs_and_ingests():
    assert STEP_KINDS.names == (
        "calibrate",
        "quantize",
        "finetune",
        "evaluate",
        "perplexity",
        "inference",
        "compare",
    )
    for kind in STEP_KINDS:
        module = kind.load()
        assert module.__name__ == kind.module and module.__name__.endswith("." + kind.name)
        assert all(callable(getattr(module, f)) for f in ("plan", "run", "ingest"))
    assert set(MODEL_COSTS) < set(STEP_KINDS.names)


def test_the_plan_lists_steps_in_the_registry_order():
    plan = build_plan(parse_config(BASE), ".")
    kinds = [s.kind for s in plan.steps]
    assert sorted(set(kinds), key=kinds.index) == list(STEP_KINDS.names)
    assert kinds == sorted(kinds, key=STEP_KINDS.order)
    assert plan.kinds is STEP_KINDS


def test_resources_and_yaml_keys_come_from_the_registry():
    assert resources_for("quantize") == STEP_KINDS["quantize"].resources
    assert resources_for("quantize", {"gpus": 2, "memory_gb": None}).gpus == 2
    assert resources_for("lengths", {"cpus": 3}, WITH_LENGTHS) == Resources(cpus=3, memory_gb=1)
    with pytest.raises(CodequantError, match="the kinds are calibrate, quantize, finetune"):
        parse_config({**BASE, "runner": {"resources": {"quantise": {"gpus": 1}}}})
    with pytest.raises(CodequantError, match="unknown step kind 'lengths'"):
        resources_for("lengths")


def test_registry_refuses_a_name_twice_and_places_a_new_kind():
    with pytest.raises(CodequantError, match="unique names"):
        StepKinds([*STEP_KINDS, StepKind("compare", "x", Resources())])
    assert WITH_LENGTHS.names[4] == "lengths" and WITH_LENGTHS.order("compare") == 7
    assert STEP_KINDS.with_kind(lengths_kind.LENGTHS).names[-1] == "lengths"
    assert "lengths" not in STEP_KINDS  # with_kind makes a new registry


def test_a_new_kind_is_planned_after_its_inputs_and_changes_no_other_step():
    config = parse_config(BASE)
    plain, extended = build_plan(config, "."), build_plan(config, ".", WITH_LENGTHS)
    others = [s for s in extended.steps if s.kind != "lengths"]
    assert [s.key for s in others] == [s.key for s in plain.steps]
    lengths = extended.of_kind("lengths")
    evaluations = plain.of_kind("evaluate")
    assert [s.deps for s in lengths] == [[e.key] for e in evaluations]  # per model: fp, rtn, rtn fine-tuned
    kinds = [s.kind for s in extended.steps]
    assert kinds.index("lengths") > max(i for i, k in enumerate(kinds) if k == "evaluate")
    assert kinds.index("lengths") < kinds.index("perplexity")


def test_a_study_runs_and_ingests_a_new_kind(tmp_path):
    """The canonical solutions of the 3-problem file (no model to load): evaluate, then the extra kind."""
    path = write_study(tmp_path, "unused", quantizations=[])
    data = yaml.safe_load(path.read_text())
    data["models"] = ["canonical"]
    path.write_text(yaml.safe_dump(data))
    study = tmp_path / "tiny"
    counts = run_study(load_config(path), study, base=tmp_path, log=lambda s: None, kinds=WITH_LENGTHS)
    assert counts["ran"] == 2 and counts["total"] == 2
    with StudyStore(study / "study.db") as store:
        (row,) = store.rows("SELECT * FROM completion_lengths")
        steps = {r["kind"]: r["status"] for r in store.rows("SELECT kind, status FROM steps")}
    canonical = [r["canonical_solution"] for r in RECORDS]
    assert row["completions"] == 3 and row["mean_chars"] == pytest.approx(sum(map(len, canonical)) / 3)
    assert steps == {"evaluate": "done", "lengths": "done"}
    assert [s["kind"] for s in json.loads((study / "plan.json").read_text())] == ["evaluate", "lengths"]
    again = run_study(load_config(path), study, base=tmp_path, log=lambda s: None, kinds=WITH_LENGTHS)
    assert again["ran"] == 0 and again["skipped"] == 2
