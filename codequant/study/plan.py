"""Expand a study into steps, each keyed by a content hash of its own settings and its inputs' keys.

calibrate (model, kind) -> quantize (model, method, bits, calibration) -> finetune -> evaluate (model version,
benchmark, decoding), perplexity and inference cost (model version); compare (model, benchmark, decoding) over all evaluations.

A step's key changes exactly when something its artifact depends on changes, because the key hashes the step's
settings *and the keys of the steps it reads from*: change the calibration seed and every quantization,
evaluation and comparison downstream gets a new key, while unrelated artifacts keep theirs and are reused.
Labels (for people) are derived from the same settings but never enter a key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from codequant.calibration.build import resolve_val_samples
from codequant.errors import CodequantError
from codequant.study.config import StudyConfig

KINDS = ("calibrate", "quantize", "finetune", "evaluate", "perplexity", "inference", "compare")
FP = "fp"


def content_key(kind: str, config: dict[str, Any], deps: list[str]) -> str:
    """16 hex digits of sha256 over the kind, the settings and the inputs' keys (order-insensitive JSON)."""
    blob = json.dumps({"kind": kind, "config": config, "deps": deps}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def model_name(spec: str) -> str:
    """A short name for tables: an embedded name or hub id as is, a local folder or file by its last part."""
    p = Path(spec)
    return p.name if (spec.startswith(("/", ".", "~")) or p.exists()) else spec


@dataclass(frozen=True)
class Variant:
    """One version of a model: the fp original, or a quantization (maybe fine-tuned) of it."""

    model: str
    method: str = FP
    bits: int | None = None
    calibration: str | None = None
    finetuned: bool = False
    calibration_size: str | None = None  # "ROWSxLEN" when the quantization names sizes; None: the study's size

    @property
    def calibration_name(self) -> str | None:
        """The calibration as tables show it: the kind (or a path's last part), plus the size when it is an axis."""
        cal = Path(self.calibration).name if self.calibration and ("/" in self.calibration) else self.calibration
        return f"{cal} {self.calibration_size}" if cal and self.calibration_size else cal

    @property
    def label(self) -> str:
        if self.method == FP:
            return FP
        return f"{self.method}-{self.bits}bit-{self.calibration_name.replace(' ', '-')}" + ("-ft" if self.finetuned else "")

    def to_dict(self) -> dict[str, Any]:
        calibration = self.calibration if self.calibration_size is None else f"{self.calibration} {self.calibration_size}"
        return {"model": model_name(self.model), "spec": self.model, "method": self.method, "bits": self.bits,
                "calibration": calibration, "calibration_size": self.calibration_size,
                "finetuned": self.finetuned, "label": self.label}


@dataclass
class Step:
    kind: str
    key: str
    label: str
    config: dict[str, Any]
    deps: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # not hashed: labels and grouping for the results

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.label}"


@dataclass
class Plan:
    steps: list[Step]  # in dependency order

    def by_key(self) -> dict[str, Step]:
        return {s.key: s for s in self.steps}

    def of_kind(self, kind: str) -> list[Step]:
        return [s for s in self.steps if s.kind == kind]


def _resolve_data(data: str | None, base: Path) -> str | None:
    if data is None:
        return None
    p = Path(data).expanduser()
    p = p if p.is_absolute() else (base / p)
    if not p.exists():
        raise CodequantError(f"benchmark data {data} does not exist (relative paths are read from {base})")
    return str(p.resolve())


CALIBRATION_KINDS = ("code", "mixed", "random")


def _resolve_calibration(kind: str, base: Path) -> str:
    """Kinds stay as they are; a path (a built set or a text folder) becomes absolute so keys don't depend on cwd."""
    p = Path(kind).expanduser()
    if kind in CALIBRATION_KINDS and not (base / p).exists():
        return kind
    if "/" not in kind and not kind.startswith(".") and not (base / p).exists() and not p.is_absolute():
        raise CodequantError(
            f"calibration {kind!r} is neither a kind ({', '.join(CALIBRATION_KINDS)}) nor a path under {base}"
        )
    p = p if p.is_absolute() else (base / p)
    if not p.exists():
        raise CodequantError(f"calibration {kind} does not exist (relative paths are read from {base})")
    return str(p.resolve())


def _stats_config(config: StudyConfig) -> dict[str, Any]:
    """The compare step's test settings (part of its key: another test is another result)."""
    return {"stats": config.stats.model_dump()}


def _benchmark_language(name: str) -> str:
    from codequant.benchmarks.registry import benchmark_info, benchmark_names

    if name not in benchmark_names():
        raise CodequantError(f"unknown benchmark {name!r} in the study; known: {', '.join(benchmark_names())}")
    return benchmark_info(name).language


def _decoding(dec) -> dict[str, Any]:
    """A decoding's hashed settings; defaults of later fields (the engine backend, no prompt strip, skipped
    Python main blocks, no sanitising) are left out, so studies written before them keep their step keys."""
    d = dec.model_dump()
    for key, default in (("backend", "engine"), ("prompt_strip", False), ("python_main", "skip"), ("sanitize", False)):
        if d.get(key) == default:
            del d[key]
    return d


def build_plan(config: StudyConfig, base: str | Path = ".") -> Plan:
    """All steps of the study in an order where every step comes after its inputs; duplicates merged."""
    import codequant

    base = Path(base).resolve()
    steps: dict[str, Step] = {}

    def add(kind: str, label: str, cfg: dict[str, Any], deps: list[str], meta: dict[str, Any]) -> Step:
        cfg = {**cfg, "codequant": codequant.__version__}
        key = content_key(kind, cfg, deps)
        if key not in steps:
            steps[key] = Step(kind=kind, key=key, label=label, config=cfg, deps=list(deps), meta=meta)
        return steps[key]

    cal = config.calibration
    # runner.dtype is part of every model step's key once set (auto, the default, keeps the keys studies had)
    dtype = {"dtype": config.runner.dtype} if config.runner.dtype != "auto" else {}
    benches = [(b, _benchmark_language(b.name), _resolve_data(b.data, base)) for b in config.benchmarks]
    for model in config.models:
        versions: list[tuple[Variant, Step | None]] = []
        if config.baseline:
            versions.append((Variant(model), None))
        calib_steps: dict[tuple[str, str | None], Step] = {}

        def calibrate(kind: str, size: str | None = None, model: str = model,
                      calib_steps: dict[tuple[str, str | None], Step] = calib_steps) -> Step:
            if (kind, size) not in calib_steps:
                samples, seq_len = (cal.samples, cal.seq_len) if size is None else map(int, size.split("x"))
                label = f"{model_name(model)}-{Path(kind).name}" + (f"-{size}" if size else "")
                calib_steps[(kind, size)] = add(
                    "calibrate", label,
                    {"model": model, "kind": kind, "samples": samples, "seq_len": seq_len,
                     "val_samples": resolve_val_samples(samples, cal.val_samples), "seed": cal.seed}, [],
                    {"model": model, "calibration": kind})
            return calib_steps[(kind, size)]

        for q in config.quantizations:
            for bits, kind, size in product(q.bits, [_resolve_calibration(k, base) for k in q.calibration],
                                            q.calibration_sizes or [None]):
                c = calibrate(kind, size)
                variant = Variant(model, q.method, bits, kind, calibration_size=size)
                qstep = add("quantize", f"{model_name(model)}-{variant.label}",
                            {"model": model, "method": q.method, "bits": bits, "preset": q.preset,
                             "group_size": q.group_size, "options": q.options,
                             "batch_size": config.runner.quantize_batch_size, **dtype},
                            [c.key], {"variant": variant.to_dict()})
                for ft in q.finetune:
                    if not ft:
                        versions.append((variant, qstep))
                        continue
                    ft_kind = _resolve_calibration(config.finetune.calibration or kind, base)
                    fc = calibrate(ft_kind)
                    fvariant = Variant(model, q.method, bits, kind, finetuned=True, calibration_size=size)
                    fcfg = config.finetune.model_dump()
                    fcfg.update({"calibration": ft_kind, **dtype})
                    fstep = add("finetune", f"{model_name(model)}-{fvariant.label}", fcfg, [qstep.key, fc.key],
                                {"variant": fvariant.to_dict(), "teacher": model})
                    versions.append((fvariant, fstep))
        if config.perplexity is not None:
            for variant, source in versions:
                add("perplexity", f"{model_name(model)}-{variant.label}",
                    {**config.perplexity.model_dump(), "model": model if source is None else None, **dtype},
                    [source.key] if source else [], {"variant": variant.to_dict()})
        if config.inference is not None and model != "canonical":  # canonical solutions: no model to time
            for variant, source in versions:
                add("inference", f"{model_name(model)}-{variant.label}",
                    {**config.inference.model_dump(), "model": model if source is None else None, **dtype},
                    [source.key] if source else [], {"variant": variant.to_dict()})
        for bench, language, data in benches:
            for dec in config.decoding:
                evals = []
                for variant, source in versions:
                    ecfg = {"benchmark": bench.name, "data": data, "limit": bench.limit, **_decoding(dec),
                            "model": model if source is None else None, **dtype}
                    evals.append(add("evaluate", f"{model_name(model)}-{variant.label}-{bench.name}-{dec.name}", ecfg,
                                     [source.key] if source else [],
                                     {"variant": variant.to_dict(), "benchmark": bench.name, "language": language,
                                      "decoding": dec.name}))
                if len(evals) > 1:
                    add("compare", f"{model_name(model)}-{bench.name}-{dec.name}",
                        {"model": model, "benchmark": bench.name, "decoding": dec.name,
                         "correction": config.correction, **_stats_config(config)}, [e.key for e in evals],
                        {"model": model_name(model), "benchmark": bench.name, "language": language,
                         "decoding": dec.name})
    order = {k: i for i, k in enumerate(KINDS)}
    ordered = sorted(steps.values(), key=lambda s: order[s.kind])  # stable: kinds in dependency order
    return Plan(ordered)
