"""What each kind of step does, given its folder to work in and its inputs' finished artifacts.

Every function here works inside `workdir` (the step's `.partial` folder) and returns a JSON-safe result that
the runner stores as `result.json` next to the artifact. Paths in results are relative to the artifact folder, so
the folder can be renamed into place (and the study moved) without breaking them. Steps that can resume do so in
their `.partial` folder: quantization from its per-block checkpoint, evaluation from its samples.jsonl.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codequant.errors import CodequantError
from codequant.study.plan import Step

RESULT = "result.json"


def read_result(artifact: Path) -> dict[str, Any]:
    return json.loads((artifact / RESULT).read_text(encoding="utf-8"))


def model_spec(step: Step, inputs: dict[str, Path]) -> str:
    """The model an evaluate/perplexity step runs: the fp spec, or the folder its quantize/finetune input wrote."""
    if step.config.get("model"):
        return str(step.config["model"])
    (source,) = [inputs[k] for k in step.deps]
    return str(source / read_result(source)["model_path"])


def _load(spec: str):
    from codequant.models import load

    loaded = load(spec)
    return loaded.model, loaded.tokenizer


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def run_calibrate(step: Step, workdir: Path, inputs: dict[str, Path], settings: dict[str, Any]) -> dict[str, Any]:
    """Draw the calibration set once, so that a bad corpus fails before any quantization, and record it."""
    from codequant.calibration import resolve_calibration

    cfg = step.config
    _, tokenizer = _load_tokenizer_only(cfg["model"])
    calib = resolve_calibration(cfg["kind"], tokenizer, samples=cfg["samples"], seq_len=cfg["seq_len"],
                                seed=cfg["seed"], val_samples=cfg["val_samples"])
    calib.save(workdir / "set")
    tokens = getattr(calib, "tokens", None)
    return {**{k: cfg[k] for k in ("kind", "samples", "seq_len", "val_samples", "seed")}, "set": "set",
            "shape": list(tokens.shape) if tokens is not None else None,
            "manifest": _json_safe(getattr(calib, "manifest", None))}


def _load_tokenizer_only(spec: str):
    """The tokenizer of a model spec; loads the model too, because `codequant.models.load` owns spec resolution."""
    return _load(spec)


def run_quantize(step: Step, workdir: Path, inputs: dict[str, Path], settings: dict[str, Any]) -> dict[str, Any]:
    from codequant.quant.run import build_config, quantize_to_dir

    cfg = step.config
    (calib_dir,) = [inputs[k] for k in step.deps]
    cal = read_result(calib_dir)
    qc = build_config(cfg["method"], bits=cfg["bits"], preset=cfg["preset"], group_size=cfg["group_size"],
                      seed=cal["seed"], options=cfg["options"])
    # AQLM also in the `aqlm` package's format: the inference step times its kernels (the codes, not fp weights).
    formats = ["dequantized", "codequant"] + (["aqlm"] if cfg["method"] == "aqlm" else [])
    result = quantize_to_dir(cfg["model"], qc, workdir, calibration=str(calib_dir / cal["set"]), samples=cal["samples"],
                             seq_len=cal["seq_len"], val_samples=cal["val_samples"],
                             formats=formats, batch_size=cfg["batch_size"], progress=True)
    if not result.get("complete", True):
        raise CodequantError(f"quantization {step.label} stopped before the last block; rerun the study to resume")
    acc = result.get("accounting", {})
    return {"model_path": ".", "codequant_path": "codequant",  # quantize_to_dir writes the HF export at OUT
            "file_bytes": _dir_bytes(workdir / "codequant"), "accounting": _json_safe(acc),
            "timings": _json_safe(result.get("timings", {})), "resolved": _json_safe(result.get("resolved")),
            "errors": quant_errors(result)}


def quant_errors(result: dict[str, Any]) -> dict[str, Any]:
    """What a quantization cost in output error, in-sample and on the held-out calibration rows: the mean over
    layers of the relative output error and the last block's relative output MSE (after the errors of every
    block before it have propagated)."""
    layers, blocks = result.get("layers") or [], result.get("blocks") or []

    def mean(key: str) -> float | None:
        values = [r[key] for r in layers if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    last = blocks[-1] if blocks else {}
    return {"layer_error": mean("rel_output_error"), "layer_error_heldout": mean("rel_output_error_heldout"),
            "block_mse": last.get("rel_output_mse"), "block_mse_heldout": last.get("rel_output_mse_heldout"),
            "val_rows": (result.get("calibration") or {}).get("val_samples")}


def run_finetune(step: Step, workdir: Path, inputs: dict[str, Path], settings: dict[str, Any]) -> dict[str, Any]:
    """End-to-end distillation of a quantized model from its fp teacher (codequant.finetune.run)."""
    from codequant.finetune.run import finetune
    from codequant.finetune.trainer import FinetuneConfig

    qdir, cdir = (inputs[k] for k in step.deps)
    qres, cal = read_result(qdir), read_result(cdir)
    cfg = step.config
    ftc = FinetuneConfig(epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"], patience=cfg["patience"],
                         seed=cal["seed"])
    out = finetune(qdir, step.meta["teacher"], workdir / "model", calibration=str(cdir / cal["set"]),
                   samples=cal["samples"], seq_len=cal["seq_len"], val_samples=cal["val_samples"], seed=cal["seed"],
                   config=ftc, progress=True)
    return {"model_path": "model", "codequant_path": "model/codequant",
            "file_bytes": _dir_bytes(workdir / "model" / "codequant") or qres.get("file_bytes"),
            "accounting": qres.get("accounting"), "finetune": _json_safe(out)}


def run_evaluate(step: Step, workdir: Path, inputs: dict[str, Path], settings: dict[str, Any]) -> dict[str, Any]:
    from codequant.evaluation import evaluate
    from codequant.models import footprint

    cfg = step.config
    spec = model_spec(step, inputs)
    model = tokenizer = None
    fp = None
    if step.config.get("model") != "canonical":
        model, tokenizer = _load(spec)
        fp = footprint(model).to_dict()
    summary = evaluate(spec, cfg["benchmark"], samples=cfg["samples"], temperature=cfg["temperature"],
                       top_p=cfg["top_p"], max_new_tokens=cfg["max_new_tokens"], limit=cfg["limit"],
                       prompt_style=cfg["prompt_style"], data=cfg["data"], out_dir=workdir,
                       batch_size=cfg["batch_size"], seed=cfg["seed"], workers=settings.get("workers"),
                       model=model, tokenizer=tokenizer, progress=True)
    return {"samples": "samples.jsonl", "footprint": _json_safe(fp),
            **{k: summary.get(k) for k in ("problems", "completions", "passed", "pass@1", "status_counts", "run")}}


def run_perplexity(step: Step, workdir: Path, inputs: dict[str, Path], settings: dict[str, Any]) -> dict[str, Any]:
    from codequant.calibration import heldout_tokens
    from codequant.metrics.perplexity import perplexity

    cfg = step.config
    model, tokenizer = _load(model_spec(step, inputs))
    out = {}
    for language in cfg["languages"]:
        tokens = heldout_tokens(language, tokenizer, n_tokens=cfg["tokens"])
        value = perplexity(model, tokens, seq_len=cfg["seq_len"])
        ppl = value["ppl"] if isinstance(value, dict) else float(value)
        n = value.get("tokens", tokens.numel()) if isinstance(value, dict) else tokens.numel()
        out[language] = {"perplexity": float(ppl), "tokens": int(n)}
    return {"perplexities": out}


def run_inference(step: Step, workdir: Path, inputs: dict[str, Path], settings: dict[str, Any]) -> dict[str, Any]:
    """Time the version the evaluations ran (fp, or the dequantized export) and, with `kernels`, its AQLM codes
    through the `aqlm` kernels; each backend in a fresh process so that its peak RSS is its own."""
    from codequant.metrics.inference import InferenceSettings, backends, measure_isolated

    cfg = step.config
    spec = model_spec(step, inputs)
    options = InferenceSettings(cfg["prompt_tokens"], cfg["new_tokens"], tuple(cfg["batches"]), 0, cfg["device"])
    todo = [("fp" if cfg.get("model") else "dequantized", spec)]
    if not cfg.get("model") and cfg["kernels"]:
        todo += [(name, path) for name, path in backends(spec) if name == "aqlm-kernels"]
    measured = [measure_isolated(path, options, backend) for backend, path in todo]
    failed = [m for m in measured if "error" in m]
    if failed:
        raise CodequantError(f"inference of {failed[0]['spec']} ({failed[0]['backend']}): {failed[0]['error']}")
    for m in measured:  # paths relative to the version's folder, as everywhere in results
        m["spec"] = m["spec"] if cfg.get("model") else str(Path(m["spec"]).relative_to(spec))
    return {"backends": measured}


def run_compare(step: Step, workdir: Path, inputs: dict[str, Path], settings: dict[str, Any],
                metas: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every version against fp; calibration kinds against each other; fine-tuned against not (per language)."""
    from codequant.stats import read_run
    from codequant.study.comparisons import study_comparisons

    runs = []
    for key in step.deps:
        variant = (metas or {})[key]["variant"]
        run = read_run(inputs[key], label=variant["label"])
        runs.append((variant, run.outcomes))
    stats = step.config.get("stats") or {}
    rows = study_comparisons(runs, model=step.meta["model"], language=step.meta["language"],
                             correction=step.config["correction"], test=stats.get("test", "auto"),
                             resamples=stats.get("resamples", 10_000), seed=stats.get("seed", 0),
                             alpha=stats.get("alpha", 0.05))
    return {"rows": rows}


RUNNERS = {"calibrate": run_calibrate, "quantize": run_quantize, "finetune": run_finetune,
           "evaluate": run_evaluate, "perplexity": run_perplexity, "inference": run_inference,
           "compare": run_compare}
