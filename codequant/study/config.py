"""The YAML of a study, as pydantic models: what to quantize, how, and on what to evaluate it.

A study is a grid: models x quantizations (method x bits x calibration kinds x fine-tune yes/no) x benchmarks x
decodings, plus the unquantized baseline of every model. Validation happens here, before any model is loaded, so a
typo costs a one-line error instead of an hour of quantization. Unknown keys are refused (a misspelt `bits` must
not silently fall back to a default).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from codequant.calibration.spec import CalibrationSpec
from codequant.errors import CodequantError
from codequant.evaluation.runner import BACKENDS
from codequant.finetune.pv_state import check_state_dtype
from codequant.finetune.schedule import check_schedule
from codequant.generation.prompts import STYLES
from codequant.quant.options import TableSpec, parse_options
from codequant.study.kinds import STEP_KINDS

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CalibrationSettings(_Strict):
    """How every calibration set of the study is drawn (the kind varies per quantization)."""

    samples: int = Field(128, ge=1)
    seq_len: int = Field(512, ge=8)
    val_samples: int | None = Field(None, ge=0)  # held-out rows of each set; None: samples // 8
    seed: int = 0

    @model_validator(mode="after")
    def _check_spec(self) -> CalibrationSettings:
        """The sizes go through `CalibrationSpec`: the same checks as `codequant quantize --samples ...`."""
        try:
            CalibrationSpec(
                samples=self.samples, seq_len=self.seq_len, val_samples=self.val_samples, seed=self.seed
            )
        except CodequantError as exc:
            raise ValueError(str(exc)) from None
        return self


class TokenTables(_Strict):
    """The token embedding and LM head on round-to-nearest grids after the walk (`quant.options.TableSpec`, as
    `codequant quantize --embedding-bits/--head-bits/--table-group-size`); a tied model takes equal bits."""

    embedding_bits: int | None = None
    head_bits: int | None = None
    group_size: int = 64

    @model_validator(mode="after")
    def _check(self) -> TokenTables:
        try:
            TableSpec(self.embedding_bits, self.head_bits, self.group_size)
        except CodequantError as exc:
            raise ValueError(str(exc)) from None
        return self


class Quantization(_Strict):
    """One grid entry: a method at several bit widths, with several calibration kinds, with/without fine-tuning."""

    method: Literal["aqlm", "gptq", "rtn"]
    bits: list[int] = Field(min_length=1)
    calibration: list[str] = Field(default_factory=lambda: ["code"], min_length=1)
    finetune: list[bool] = Field(default_factory=lambda: [False], min_length=1)
    preset: Literal["fast", "paper"] = "fast"
    group_size: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    tables: TokenTables | None = None  # None: the token tables stay fp
    # Calibration size as an axis: "ROWSxLEN" entries (e.g. ["1024x64", "16x512"]), each a separate quantization;
    # None uses the study's `calibration:` samples x seq_len.
    calibration_sizes: list[str] | None = Field(None, min_length=1)

    @field_validator("calibration_sizes")
    @classmethod
    def _sizes(cls, v: list[str] | None) -> list[str] | None:
        for size in v or []:
            rows, _, length = size.partition("x")
            if not (rows.isdigit() and length.isdigit() and int(rows) >= 1 and int(length) >= 8):
                raise ValueError(
                    f"calibration size {size!r} must be ROWSxLEN with ROWS >= 1, LEN >= 8 (e.g. 128x512)"
                )
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"calibration sizes must be unique; got {v}")
        return v

    @model_validator(mode="after")
    def _check_bits(self) -> Quantization:
        allowed = (2, 3, 4, 8) if self.method == "aqlm" else tuple(range(2, 9))
        bad = [b for b in self.bits if b not in allowed]
        if bad:
            raise ValueError(f"{self.method} bits must be among {', '.join(map(str, allowed))}; got {bad}")
        return self

    @model_validator(mode="after")
    def _check_options(self) -> Quantization:
        """The method's typed options (`quant.options`): the same checks as `codequant quantize`'s flags."""
        try:
            parse_options(self.method, self.options)
        except CodequantError as exc:
            raise ValueError(str(exc)) from None
        return self


class Benchmark(_Strict):
    """A registered benchmark, optionally on another file (`data`) or its first `limit` problems."""

    name: str
    data: str | None = None
    limit: int | None = Field(None, ge=1)


class Decoding(_Strict):
    """How completions are drawn; `name` labels it in the results (greedy, t0.2-n10, ...)."""

    name: str = "greedy"
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    samples: int = Field(1, ge=1)
    max_new_tokens: int = Field(512, ge=1)
    prompt_style: Literal[STYLES] = "auto"
    seed: int = 0
    batch_size: int = Field(32, ge=1)
    backend: Literal[BACKENDS] = "engine"  # generation backend (vllm: runner.vllm, docs/vllm.md)
    prompt_strip: bool = False  # the model continues prompt.strip() (the study's scripts; `--prompt-strip`)
    python_main: Literal["skip", "run"] = "skip"  # Python main blocks (`--python-main`, docs/evaluation.md)
    sanitize: bool = False  # evalplus-style sanitising of the answers (`--sanitize`)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"decoding name {v!r} must be letters, digits, '.', '_' or '-'")
        return v


class Finetune(_Strict):
    """Settings of end-to-end distillation for the `finetune: [true]` variants."""

    epochs: int = Field(3, ge=1)
    lr: float = Field(1e-4, gt=0.0)
    lr_schedule: str = "constant"  # or "cosine" (codequant.finetune.schedule)
    batch_size: int = Field(4, ge=1)
    patience: int = Field(1, ge=0)
    calibration: str | None = None  # kind of the fine-tuning set; default: the variant's calibration kind
    # PV-tuning (AQLM only; codequant.finetune.pv, `codequant finetune --pv-tuning`): a V-step on the codes every
    # `pv_every` P-steps, towards W - pv_lr * Adam's direction, changing at most the share pv_tau of them
    pv_tuning: bool = False
    pv_lr: float = Field(0.03, gt=0.0)
    pv_tau: float = Field(0.01, ge=0.0, le=1.0)
    pv_every: int = Field(1, ge=1)
    # where the V-step's Adam moments live (codequant.finetune.pv_state; `study plan` counts them): their dtype,
    # float32 | bfloat16, and whether they wait in host memory between uses
    pv_state_dtype: str = "float32"
    pv_offload: bool = False

    @field_validator("lr_schedule", "pv_state_dtype")
    @classmethod
    def _named_choice(cls, v: str, info: ValidationInfo) -> str:
        """The fine-tuning code's own check of the name (the CLI's too), as pydantic's ValueError."""
        check = check_schedule if info.field_name == "lr_schedule" else check_state_dtype
        try:
            return check(v)
        except CodequantError as exc:
            raise ValueError(str(exc)) from None

    def step_config(self) -> dict[str, Any]:
        """The settings a finetune step's key is made of; without PV-tuning the PV fields are left out, and the
        state's placement and the lr schedule when at their defaults, so the keys of studies written before they
        existed stay the same."""
        cfg = self.model_dump()
        if not self.pv_tuning:
            for name in ("pv_tuning", "pv_lr", "pv_tau", "pv_every"):
                cfg.pop(name)
        for name in ("pv_state_dtype", "pv_offload"):
            if not self.pv_tuning or cfg[name] == type(self).model_fields[name].default:
                cfg.pop(name)
        if cfg["lr_schedule"] == "constant":
            cfg.pop("lr_schedule")
        return cfg


class Perplexity(_Strict):
    """Held-out perplexity of every model version, per language."""

    languages: list[str] = Field(default_factory=lambda: ["python"], min_length=1)
    tokens: int = Field(8192, ge=16)
    seq_len: int = Field(512, ge=8)


class Inference(_Strict):
    """Inference cost of every model version (codequant.metrics.inference): prefill and decode tokens/s, peak RSS,
    file bytes, per backend (the dequantized export; with `kernels`, AQLM codes through the `aqlm` kernels)."""

    prompt_tokens: int = Field(256, ge=1)
    new_tokens: int = Field(32, ge=1)
    batches: list[int] = Field(default_factory=lambda: [1, 16], min_length=1)
    kernels: bool = True
    device: str = "cpu"

    @field_validator("batches")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if min(v) < 1:
            raise ValueError(f"batch sizes must be positive, got {v}")
        return v


class StepResources(_Strict):
    """What one step asks of a worker; unset fields keep the kind's default (codequant.study.kinds.STEP_KINDS)."""

    cpus: int | None = Field(None, ge=1)
    gpus: float | None = Field(None, ge=0)
    memory_gb: float | None = Field(None, gt=0)
    time_min: int | None = Field(None, ge=1)


class RaySettings(_Strict):
    """`executor: ray`: the cluster to join (`auto`: the one `ray start --head` started on this machine)."""

    address: str = "auto"


class SlurmSettings(_Strict):
    """`executor: slurm`: submitit's job parameters. `cluster: local` runs the same jobs as local processes
    (submitit's LocalExecutor: the same pickling and job life-cycle, for tests and single nodes)."""

    cluster: Literal["slurm", "local"] = "slurm"
    partition: str | None = None
    folder: str | None = (
        None  # job logs and pickles (default: <study>/submitit); must be on a shared filesystem
    )
    max_jobs: int = Field(64, ge=1)  # jobs in the queue at once
    setup: list[str] = Field(
        default_factory=list
    )  # shell lines run before each job (module load, conda activate)
    additional: dict[str, Any] = Field(default_factory=dict)  # extra #SBATCH parameters (account, qos, ...)


class VllmRunner(_Strict):
    """How `backend: vllm` evaluations start vLLM: which Python has it (default $CODEQUANT_VLLM_PYTHON, or the
    worker's own), the weights' dtype, vLLM's gpu_memory_utilization and the GPUs per model (tensor parallel)."""

    python: str | None = None
    dtype: str = "auto"  # auto: runner.dtype when that is set, else vLLM's own choice
    memory_fraction: float = Field(0.5, gt=0, le=1)
    tensor_parallel_size: int = Field(
        1, ge=1
    )  # GPUs one model is split over (vLLM's LLM(tensor_parallel_size=))


class Runner(_Strict):
    """How steps are executed (docs/scale.md).

    `executor`: `local` (this machine; `parallel` steps at once, one process each with `isolate`), `ray` (an
    existing Ray cluster) or `slurm` (through submitit). Every executor runs the plan's dependency graph: a step
    starts as soon as the steps it needs are done. Only this process (the driver) writes study.db. A step that
    fails is retried up to `max_attempts` times in all, resuming in its `.partial` folder; after that it is
    marked failed and the rest of the grid goes on. `resources` overrides the per-kind defaults
    (`{quantize: {gpus: 1, memory_gb: 80}}`). `device` is resolved on each worker (`auto`: its GPU when it sees
    one); a quantization holds one block at a time on the GPU. `dtype` is the weights' dtype of every step that
    loads a model (the same names and checks as `--dtype`); set, it enters the steps' keys, so an fp16 study is
    other versions than an fp32 one.
    """

    isolate: bool = True
    quantize_batch_size: int = Field(8, ge=1)
    workers: int | None = Field(None, ge=1)  # older name of sandbox_workers (kept for existing study files)
    sandbox_workers: int | None = Field(
        None, ge=1
    )  # programs an evaluation runs at once (default: one per CPU)
    executor: Literal["local", "ray", "slurm"] = "local"
    parallel: int = Field(1, ge=1)  # local executor: steps at once
    max_attempts: int = Field(2, ge=1)
    resources: dict[str, StepResources] = Field(default_factory=dict)
    ray: RaySettings = RaySettings()
    slurm: SlurmSettings = SlurmSettings()
    vllm: VllmRunner = VllmRunner()
    device: str = (
        "auto"  # where quantize, finetune, evaluate and perplexity steps run: auto = cuda when visible
    )
    # the weights' dtype in quantize, finetune, evaluate, perplexity and inference steps (codequant.models.dtype):
    # auto = the checkpoint's own dtype on a GPU, float32 on the CPU; float32 | float16 | bfloat16
    dtype: str = "auto"

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        from codequant.models.dtype import check_dtype

        try:
            return check_dtype(v)
        except CodequantError as exc:
            raise ValueError(str(exc)) from None

    # Where a quantization keeps its two activation buffers (docs/scale.md): auto picks host RAM while the model and
    # the buffers fit max_host_memory_gb (default: a cluster job's memory_gb; unlimited locally), else the GPU,
    # else memory-mapped files in the step's folder. `gpu` is the card `codequant study plan` sizes steps for.
    max_host_memory_gb: float | None = Field(None, gt=0)
    activations: Literal["auto", "host", "device", "disk"] = "auto"
    gpu: Literal["a100-80gb", "h100-80gb", "h200"] = "a100-80gb"

    @field_validator("resources")
    @classmethod
    def _kinds(cls, v: dict[str, StepResources]) -> dict[str, StepResources]:
        unknown = sorted(set(v) - set(STEP_KINDS.names))
        if unknown:
            raise ValueError(f"unknown step kind(s) {unknown}; the kinds are {', '.join(STEP_KINDS.names)}")
        return v


class StatsSettings(_Strict):
    """Which paired test the compare steps run (docs/statistics.md).

    `test: auto` runs McNemar's test where each problem has one completion and the clustered McNemar
    (Durkalski, problems as clusters) where it has several; `mcnemar` is the study's per-completion test,
    `permutation` the sign-flip test over problems. Whatever the test, every row also keeps the exact
    per-completion McNemar p, the pass@1 difference with a problem-bootstrap interval and the minimum detectable
    drop at 80% power.
    """

    test: Literal["auto", "mcnemar", "clustered", "permutation"] = "auto"
    resamples: int = Field(10_000, ge=1)  # permutation test and bootstrap
    seed: int = 0
    alpha: float = Field(0.05, gt=0, lt=1)  # level of the intervals and of the power statement


class StudyConfig(_Strict):
    """A whole study (see docs/study.md for every field)."""

    name: str
    models: list[str] = Field(min_length=1)
    baseline: bool = True  # evaluate each model unquantized (the fp reference of every comparison)
    quantizations: list[Quantization] = Field(default_factory=list)
    calibration: CalibrationSettings = CalibrationSettings()
    benchmarks: list[Benchmark] = Field(min_length=1)
    decoding: list[Decoding] = Field(default_factory=lambda: [Decoding()], min_length=1)
    finetune: Finetune = Finetune()
    perplexity: Perplexity | None = None
    inference: Inference | None = None
    runner: Runner = Runner()
    correction: Literal["bh", "holm", "bonferroni", "none"] = "bh"
    stats: StatsSettings = StatsSettings()

    @field_validator("name")
    @classmethod
    def _study_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"study name {v!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
        return v

    @model_validator(mode="after")
    def _check(self) -> StudyConfig:
        if not self.baseline and not self.quantizations:
            raise ValueError("nothing to run: set baseline: true or list quantizations")
        names = [d.name for d in self.decoding]
        if len(set(names)) != len(names):
            raise ValueError(f"decoding names must be unique; got {names}")
        return self


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_config(data: Any, source: str = "study config") -> StudyConfig:
    """A validated StudyConfig from parsed YAML; the first problem becomes one CodequantError line."""
    if not isinstance(data, dict):
        raise CodequantError(f"{source} must be a YAML mapping with name, models, benchmarks, ...")
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        errors = sorted(
            exc.errors(), key=lambda e: e["type"] != "extra_forbidden"
        )  # a typo explains the rest
        err = errors[0]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling against docs/study.md)"
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise CodequantError(f"{source}: {_where(err['loc'])}: {msg}{more}") from None


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML file."""
    p = Path(path)
    if not p.is_file():
        raise CodequantError(f"study config {p} does not exist; see studies/default.yaml for an example")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CodequantError(f"{p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_config(data, source=str(p))


def study_dir(config_path: str | Path, config: StudyConfig, out: str | Path | None = None) -> Path:
    """Where a study's results live: `--out`, else `<folder of the YAML>/<name>/`."""
    return Path(out) if out is not None else Path(config_path).resolve().parent / config.name
