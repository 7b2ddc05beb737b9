"""What every step kind shares: reading a finished artifact, the model a step runs, and the columns that name a
model version in study.db.

Every kind's `run` works inside `workdir` (the step's `.partial` folder) and returns a JSON-safe result that the
runner stores as `result.json` next to the artifact. Paths in results are relative to the artifact folder, so the
folder can be renamed into place (and the study moved) without breaking them. Its `ingest` turns that result into
study.db rows inside the runner's transaction, as upserts, so ingesting twice changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The model (torch) loads inside `load_model`: the study's planner and runner import the kinds without torch.
from codequant.study.plan import FP, Step

RESULT = "result.json"


def read_result(artifact: Path) -> dict[str, Any]:
    return json.loads((artifact / RESULT).read_text(encoding="utf-8"))


def model_spec(step: Step, inputs: dict[str, Path]) -> str:
    """The model an evaluate/perplexity step runs: the fp spec, or the folder its quantize/finetune input wrote."""
    if step.config.get("model"):
        return str(step.config["model"])
    (source,) = [inputs[k] for k in step.deps]
    return str(source / read_result(source)["model_path"])


def load_model(spec: str, device: str = "cpu", dtype: str = "auto"):
    import codequant.quant.export  # noqa: F401  registers the native checkpoint loader with codequant.models
    from codequant.devices import resolve_device
    from codequant.models import load

    loaded = load(spec, dtype=dtype, device=resolve_device(device))
    return loaded.model, loaded.tokenizer


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def version_columns(v: dict[str, Any]) -> dict[str, Any]:
    """The columns that say which model version a row is about (every table keyed by a version has them)."""
    return {
        "model": v["model"],
        "variant": v["label"],
        "method": v["method"],
        "bits": v["bits"],
        "calibration": v["calibration"],
        "finetuned": int(v["finetuned"]),
    }


def variant_key(step: Step) -> str:
    """The version a step measures: fp models by their spec (and their dtype when runner.dtype names one: an fp16
    baseline is another version than the fp32 one), quantized ones by the step that made them."""
    v = step.meta["variant"]
    dtype = step.config.get("dtype")
    return (f"fp:{v['spec']}" + (f"@{dtype}" if dtype else "")) if v["method"] == FP else step.deps[0]


def variant_row(key: str, v: dict[str, Any], model_path: str | None) -> dict[str, Any]:
    cols = version_columns(v)
    return {
        "key": key,
        "model": cols["model"],
        "label": cols["variant"],
        "method": cols["method"],
        "bits": cols["bits"],
        "calibration": cols["calibration"],
        "finetuned": cols["finetuned"],
        "model_path": model_path,
    }
