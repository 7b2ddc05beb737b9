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
from functools import cached_property
from itertools import product
from pathlib import Path
from typing import Any

import codequant
from codequant.calibration.build import CALIBRATION_KINDS
from codequant.errors import CodequantError
from codequant.study.config import Benchmark, Decoding, Quantization, StudyConfig
from codequant.study.kinds import STEP_KINDS, StepKinds

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
    calibration_size: str | None = (
        None  # "ROWSxLEN" when the quantization names sizes; None: the study's size
    )

    @property
    def calibration_name(self) -> str | None:
        """The calibration as tables show it: the kind (or a path's last part), plus the size when it is an axis."""
        cal = (
            Path(self.calibration).name
            if self.calibration and ("/" in self.calibration)
            else self.calibration
        )
        return f"{cal} {self.calibration_size}" if cal and self.calibration_size else cal

    @property
    def label(self) -> str:
        if self.method == FP:
            return FP
        return f"{self.method}-{self.bits}bit-{self.calibration_name.replace(' ', '-')}" + (
            "-ft" if self.finetuned else ""
        )

    def to_dict(self) -> dict[str, Any]:
        calibration = (
            self.calibration
            if self.calibration_size is None
            else f"{self.calibration} {self.calibration_size}"
        )
        return {
            "model": model_name(self.model),
            "spec": self.model,
            "method": self.method,
            "bits": self.bits,
            "calibration": calibration,
            "calibration_size": self.calibration_size,
            "finetuned": self.finetuned,
            "label": self.label,
        }


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
    kinds: StepKinds = STEP_KINDS  # the registry the steps were planned with (and run and ingested with)

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


def _benchmark_language(name: str) -> str:
    from codequant.benchmarks.registry import benchmark_info, benchmark_names

    if name not in benchmark_names():
        raise CodequantError(
            f"unknown benchmark {name!r} in the study; known: {', '.join(benchmark_names())}"
        )
    return benchmark_info(name).language


@dataclass(frozen=True)
class GridPoint:
    """One quantized version of a model: a quantization entry (`index` in the study's list) at one bit width,
    calibration (a kind or an absolute path) and calibration size, fine-tuned or not."""

    index: int
    bits: int
    calibration: str
    size: str | None
    finetuned: bool
    quantization: Quantization = field(compare=False, hash=False)

    def variant(self, model: str) -> Variant:
        q = self.quantization
        return Variant(
            model, q.method, self.bits, self.calibration, finetuned=self.finetuned, calibration_size=self.size
        )

    @property
    def quantized(self) -> GridPoint:
        """The point of the quantization this version starts from (itself when it is not fine-tuned)."""
        return GridPoint(self.index, self.bits, self.calibration, self.size, False, self.quantization)


@dataclass(frozen=True)
class BenchmarkRun:
    """A benchmark as the plan reads it: its settings, its language and its data file made absolute."""

    benchmark: Benchmark
    language: str
    data: str | None


@dataclass(frozen=True)
class Evaluations:
    """The evaluations of every version of one model on one benchmark and decoding (what a comparison reads)."""

    run: BenchmarkRun
    decoding: Decoding
    steps: list[Step]


@dataclass
class Planning:
    """What each kind's `plan` gets for one model: the study, the steps every kind made so far, and `add`.

    Kinds are planned in the registry's order, so a kind finds the steps of the kinds it reads already made:
    `calibrations` (calibrate), `sources` (quantize, finetune: the step that writes each quantized version),
    `evaluations` (evaluate).
    """

    config: StudyConfig
    base: Path
    model: str
    benchmarks: list[BenchmarkRun]
    steps: dict[str, Step]  # every model's steps so far, by key: equal steps are planned once
    calibrations: dict[tuple[str, str | None], Step] = field(default_factory=dict)  # (kind or path, size)
    sources: dict[GridPoint, Step] = field(default_factory=dict)
    evaluations: list[Evaluations] = field(default_factory=list)

    def add(self, kind: str, label: str, cfg: dict[str, Any], deps: list[str], meta: dict[str, Any]) -> Step:
        """The step of this kind, settings and inputs: made once, whoever asks again gets the same one."""
        cfg = {**cfg, "codequant": codequant.__version__}
        key = content_key(kind, cfg, deps)
        if key not in self.steps:
            self.steps[key] = Step(kind=kind, key=key, label=label, config=cfg, deps=list(deps), meta=meta)
        return self.steps[key]

    @property
    def name(self) -> str:
        return model_name(self.model)

    @property
    def dtype(self) -> dict[str, str]:
        """runner.dtype, part of every model step's key once set (auto, the default, keeps the keys studies had)."""
        return {"dtype": self.config.runner.dtype} if self.config.runner.dtype != "auto" else {}

    @cached_property
    def grid(self) -> list[GridPoint]:
        """Every quantized version of the model, in the order of the YAML."""
        return [
            GridPoint(i, bits, kind, size, ft, q)
            for i, q in enumerate(self.config.quantizations)
            for bits, kind, size in product(
                q.bits, [self.calibration(k) for k in q.calibration], q.calibration_sizes or [None]
            )
            for ft in q.finetune
        ]

    def calibration(self, kind: str) -> str:
        """A calibration kind as it is, a path made absolute (from the YAML's folder)."""
        return _resolve_calibration(kind, self.base)

    def finetune_calibration(self, point: GridPoint) -> str:
        """The calibration a fine-tuned version is distilled on: `finetune.calibration`, else its own."""
        return self.calibration(self.config.finetune.calibration or point.calibration)

    def versions(self) -> list[tuple[Variant, Step | None]]:
        """The model's versions (fp first, where the study has a baseline) with the step that writes each."""
        fp = [(Variant(self.model), None)] if self.config.baseline else []
        return fp + [(point.variant(self.model), self.sources[point]) for point in self.grid]


def build_plan(config: StudyConfig, base: str | Path = ".", kinds: StepKinds = STEP_KINDS) -> Plan:
    """All steps of the study in an order where every step comes after its inputs; duplicates merged.

    Each model's steps are planned kind by kind, in the registry's order, by the kind's own `plan`; the steps are
    then listed kind by kind (a stable sort: within a kind, the order they were planned in).
    """
    base = Path(base).resolve()
    benchmarks = [
        BenchmarkRun(b, _benchmark_language(b.name), _resolve_data(b.data, base)) for b in config.benchmarks
    ]
    steps: dict[str, Step] = {}
    for model in config.models:
        planning = Planning(config, base, model, benchmarks, steps)
        for kind in kinds:
            kind.load().plan(planning)
    order = {name: i for i, name in enumerate(kinds.names)}
    return Plan(sorted(steps.values(), key=lambda s: order[s.kind]), kinds)
