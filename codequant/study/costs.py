"""The plan's cost of every step (peak host memory, peak GPU memory, disk, time) and the check against what the
step asks for, before anything runs.

Why: a grid of 7B-34B models spends GPU-days; a step that cannot fit its job's memory should be refused with one
line before the first one is submitted, not found out hours into it. Sizes come from the model's config read
without weights (codequant.models.shapes), the calibration size, the method and preset, and the decoding.
Throughputs are labelled: `measured` (this machine's CPU, from bench/results/scale_proxy.json) or `assumed` (a
GPU's published peak times an efficiency factor; both in `GPUS` and docs/scale.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codequant.errors import CodequantError
from codequant.finetune.pv_state import PVStateBytes, pv_state_bytes
from codequant.models.shapes import DTYPE_BYTES, ModelShape, model_shape
from codequant.quant.activations import GIB
from codequant.quant.budget import RUNTIME_HOST_BYTES, QuantJob, quant_needs
from codequant.quant.options import aqlm_options
from codequant.study.config import StudyConfig
from codequant.study.executors import resources_for
from codequant.study.kinds import STEP_KINDS, StepKinds
from codequant.study.plan import Plan, Step

# Published dense bf16/fp16 tensor peaks and memory bandwidths (vendor data sheets), and the efficiencies assumed.
GPUS: dict[str, dict[str, float]] = {
    "a100-80gb": {"flops": 312e12, "bandwidth": 2.04e12, "memory_gb": 80},
    "h100-80gb": {"flops": 989e12, "bandwidth": 3.35e12, "memory_gb": 80},
    "h200": {"flops": 989e12, "bandwidth": 4.8e12, "memory_gb": 141},
}
MATMUL_EFFICIENCY = 0.35  # of the tensor peak: block forwards/backwards at 8 x 4096-token batches
SEARCH_EFFICIENCY = 0.01  # of the tensor peak: AQLM's k-means and beam search (gathers, top-k, small matmuls)
BANDWIDTH_EFFICIENCY = 0.6  # of the memory bandwidth: one decoding step reads every weight once
PCIE_BANDWIDTH = 25e9  # bytes/s host <-> GPU (PCIe 4.0 x16, pinned memory): PV-tuning's offloaded moments
SANDBOX_SECONDS = 0.5  # per completion per CPU: one program with its tests
PROBLEMS = {
    "humaneval": 164,
    "humaneval-java": 161,
    "multipl-e-java": 158,
    "multipl-e-py": 161,
    "mceval-python": 50,
    "mceval-java": 50,
}
PROXY_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "scale_proxy.json"


@dataclass(frozen=True)
class Throughput:
    """Operations per second for the three kinds of work a step does, and where the figures come from."""

    flops: float  # block forwards/backwards
    codewords: float  # AQLM k-means and beam-search scans, flops per second
    bandwidth: float  # bytes of weights read per second while decoding
    label: str  # "assumed a100-80gb" | "measured cpu"


def gpu_throughput(name: str) -> Throughput:
    if name not in GPUS:
        raise CodequantError(f"unknown runner.gpu {name!r}; the plan knows {', '.join(GPUS)}")
    g = GPUS[name]
    return Throughput(
        g["flops"] * MATMUL_EFFICIENCY,
        g["flops"] * SEARCH_EFFICIENCY,
        g["bandwidth"] * BANDWIDTH_EFFICIENCY,
        f"assumed {name}",
    )


def cpu_throughput(path: Path = PROXY_RESULTS) -> Throughput:
    """This machine's CPU as bench/scale_proxy.py measured it (a 7B-shaped block; docs/scale.md)."""
    try:
        data = json.loads(path.read_text())
        rates = data["plan_rates"]
        return Throughput(
            rates["flops_per_s"],
            rates["codewords_per_s"],
            rates["bandwidth_bytes_per_s"],
            f"measured cpu ({data['machine'].get('cpus', '?')} cores)",
        )
    except (OSError, KeyError, ValueError) as exc:
        raise CodequantError(
            f"no CPU throughput measured here ({path}: {exc}); run bench/scale_proxy.py"
        ) from None


@dataclass
class StepCost:
    step: str
    kind: str
    host_gb: float
    gpu_gb: float
    disk_gb: float
    hours: float
    throughput: str
    note: str = ""
    asks: dict[str, Any] | None = None
    problem: str | None = None  # the one-line refusal, when the step does not fit what it asks for

    def row(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "kind": self.kind,
            "host_gb": round(self.host_gb, 1),
            "gpu_gb": round(self.gpu_gb, 1),
            "disk_gb": round(self.disk_gb, 1),
            "hours": round(self.hours, 2),
            "throughput": self.throughput,
            "note": self.note,
            "asks": self.asks,
            "problem": self.problem,
        }


def _runs_on_gpu(config: StudyConfig, gpus: float) -> bool:
    device = config.runner.device
    if device.startswith("cuda"):
        return True
    if device == "cpu":
        return False
    if config.runner.executor in ("ray", "slurm"):
        return gpus >= 1
    import torch

    return torch.cuda.is_available()


def _dtype(config: StudyConfig, shape: ModelShape, gpu: bool) -> str:
    """runner.dtype where the study sets one (auto: the checkpoint's on a GPU, float32 on the CPU)."""
    dtype = config.runner.dtype
    if dtype == "auto":
        return shape.torch_dtype if gpu and shape.torch_dtype in DTYPE_BYTES else "float32"
    return dtype


def host_budget_gb(config: StudyConfig, kind: str = "quantize") -> float | None:
    """The quantization's host-memory budget: runner.max_host_memory_gb, else on a cluster the job's memory."""
    if config.runner.max_host_memory_gb is not None:
        return config.runner.max_host_memory_gb
    if config.runner.executor in ("ray", "slurm"):
        return _asks(config, kind)["memory_gb"]
    return None


def _asks(config: StudyConfig, kind: str, kinds: StepKinds = STEP_KINDS) -> dict[str, Any]:
    given = config.runner.resources.get(kind)
    res = resources_for(kind, given.model_dump() if given else None, kinds)
    return {"cpus": res.cpus, "gpus": res.gpus, "memory_gb": res.memory_gb, "time_min": res.time_min}


def step_cost(config: StudyConfig, plan: Plan, step: Step, cpu: Throughput | None = None) -> StepCost:
    """The cost of one step; raises CodequantError when its model cannot be sized."""
    asks = _asks(config, step.kind, plan.kinds)
    gpu = _runs_on_gpu(config, asks["gpus"])
    spec = _model_of(plan, step)
    if spec is None or step.kind not in MODEL_COSTS:  # calibrate, compare: a fixed small cost
        return StepCost(
            step.name,
            step.kind,
            2.0 if step.kind == "calibrate" else 1.0,
            0.0,
            0.1,
            0.05,
            "fixed",
            "no model on a device",
            asks,
        )
    shape = model_shape(spec)
    dtype = _dtype(config, shape, gpu)
    tp = gpu_throughput(config.runner.gpu) if gpu else (cpu or cpu_throughput())
    gpu_mem = GPUS[config.runner.gpu]["memory_gb"] * 1e9 if gpu else 0
    cost = MODEL_COSTS[step.kind](config, plan, step, shape, dtype, gpu, tp, gpu_mem)
    cost.asks, cost.throughput = asks, tp.label
    cost.note = f"{shape.params / 1e9:.2f}B {dtype} ({shape.source}); " + cost.note
    cost.problem = _check(step, cost, asks, config, gpu_mem)
    return cost


def _check(
    step: Step, cost: StepCost, asks: dict[str, Any], config: StudyConfig, gpu_mem: float
) -> str | None:
    kind = step.kind
    if cost.host_gb > asks["memory_gb"]:
        fix = f"set runner.resources.{kind}.memory_gb >= {math.ceil(cost.host_gb)}" + (
            " or a smaller runner.max_host_memory_gb (activations to disk)" if kind == "quantize" else ""
        )
        return f"{step.name} needs {cost.host_gb:.0f} GB of host memory, asks for {asks['memory_gb']:g} GB; {fix}"
    gpus = max(asks["gpus"], 1)
    tp_size = config.runner.vllm.tensor_parallel_size or 1
    if kind == "evaluate" and tp_size > asks["gpus"] and _uses_vllm(step):
        return (
            f"{step.name} shards vLLM over {tp_size} GPUs (runner.vllm.tensor_parallel_size), asks for "
            f"{asks['gpus']:g}; set runner.resources.evaluate.gpus >= {tp_size}"
        )
    if cost.gpu_gb * 1e9 > gpus * gpu_mem > 0:
        return (
            f"{step.name} needs {cost.gpu_gb:.0f} GB of GPU memory, {gpus:g} x {config.runner.gpu} give "
            f"{gpus * gpu_mem / 1e9:.0f} GB; fix: runner.gpu, runner.dtype or runner.vllm.tensor_parallel_size"
        )
    limit_h = (
        asks["time_min"] * config.runner.max_attempts / 60
    )  # every attempt resumes where the last stopped
    if cost.hours > limit_h:
        return (
            f"{step.name} needs ~{cost.hours:.1f} h, its {config.runner.max_attempts} attempt(s) of "
            f"{asks['time_min']} min give {limit_h:.1f} h; set runner.resources.{kind}.time_min >= "
            f"{math.ceil(cost.hours * 60 / config.runner.max_attempts)}"
        )
    return None


def _uses_vllm(step: Step) -> bool:
    return step.config.get("backend", "engine") == "vllm"


def _model_of(plan: Plan, step: Step) -> str | None:
    """The model spec a step loads (its own, or the fp model its quantization started from)."""
    if step.config.get("model"):
        return step.config["model"]
    variant = step.meta.get("variant") or {}
    return variant.get("spec")


def _source_rows(plan: Plan, step: Step) -> dict[str, Any]:
    by_key = plan.by_key()
    for key in step.deps:
        dep = by_key[key]
        if dep.kind == "calibrate":
            return dep.config
    return {"samples": 128, "seq_len": 512, "val_samples": 16}


def _quantize(config, plan, step, shape, dtype, gpu, tp, gpu_mem) -> StepCost:
    cal = _source_rows(plan, step)
    from codequant.quant.aqlm.presets import PRESETS  # torch: loaded only when a grid has an AQLM step

    m, b, _g = (
        PRESETS[step.config["preset"]].get(step.config["bits"], (2, 8, 8))
        if step.config["method"] == "aqlm"
        else (0, 0, 0)
    )
    budget = host_budget_gb(config)
    job = QuantJob(
        method=step.config["method"],
        bits=step.config["bits"],
        rows=cal["samples"] - cal["val_samples"],
        val_rows=cal["val_samples"],
        seq_len=cal["seq_len"],
        dtype=dtype,
        batch_size=step.config["batch_size"],
        gpu=gpu,
        max_host_bytes=None if budget is None else int(budget * 1e9),
        gpu_bytes=int(gpu_mem) or 80 * 10**9,
        placement=config.runner.activations,
        codebooks=m,
        codebook_bits=b,
        effort=_effort(step.config),
    )
    needs = quant_needs(shape, job)
    seconds = needs.flops_walk / tp.flops + needs.codeword_ops / tp.codewords + needs.flops_fit / tp.flops
    return StepCost(
        step.name,
        "quantize",
        needs.host_bytes / 1e9,
        needs.gpu_bytes / 1e9,
        needs.disk_bytes / 1e9,
        seconds / 3600,
        "",
        f"activations {needs.activation_bytes / GIB:.0f} GiB on {needs.placement}",
    )


def _finetune(config, plan, step, shape, dtype, gpu, tp, gpu_mem) -> StepCost:
    """Teacher top-k first (the fp model alone), then the student: quantized linears at their bits, embeddings and
    norms in the dtype, ~1% trainable (codebooks, scales, norms) with fp32 grads and Adam moments, the
    activations its backward keeps, and with PV-tuning its V-step's state (`finetune_pv_bytes`)."""
    b = DTYPE_BYTES[dtype]
    cal = _source_rows(plan, step)
    tokens = cal["samples"] * cal["seq_len"]
    model = shape.params * b
    quantized = shape.layers * shape.block_params
    bits = (step.meta.get("variant") or {}).get("bits") or 16
    student = (
        (shape.params - quantized) * b + quantized * bits / 8 + 2 * shape.hidden * shape.intermediate * b
    )
    trainable = 0.01 * shape.params * 4 * 3
    # kept for backward: 34 bytes x hidden per token and layer in 16 bits (Korthikanti et al. 2022, SDPA attention)
    acts = config.finetune.batch_size * cal["seq_len"] * shape.layers * shape.hidden * 17 * b
    pv = finetune_pv_bytes(config, shape)
    device = max(model, student + trainable + acts + pv.device_peak)
    host = RUNTIME_HOST_BYTES + model + pv.host + (0 if gpu else device)
    seconds = (
        3 * 2 * shape.params * tokens * config.finetune.epochs / tp.flops
        + 2 * shape.params * tokens / tp.flops
    )
    if gpu and pv.host:  # offloaded moments cross PCIe 3 times a step: to and from the hook, to the V-step
        steps = math.ceil((cal["samples"] - cal["val_samples"]) / config.finetune.batch_size)
        seconds += steps * config.finetune.epochs * 3 * pv.host / PCIE_BANDWIDTH
    return StepCost(
        step.name,
        "finetune",
        host / 1e9,
        device / 1e9 if gpu else 0.0,
        3 * model / 1e9,
        seconds / 3600,
        "",
        f"batch {config.finetune.batch_size}: teacher top-k first, then the {bits}-bit student"
        + (
            f" + PV state {(pv.device_peak + pv.host) / 1e9:.1f} GB ({config.finetune.pv_state_dtype} moments"
            + (" on the host)" if config.finetune.pv_offload else ")")
            if config.finetune.pv_tuning
            else ""
        ),
    )


def finetune_pv_bytes(config: StudyConfig, shape: ModelShape) -> PVStateBytes:
    """PV-tuning's state for the study's finetune settings (zero without `pv_tuning`): the V-step's Adam moments
    of every quantized weight, and one layer's working buffers (codequant.finetune.pv_state)."""
    ft = config.finetune
    if not ft.pv_tuning:
        return PVStateBytes(0, 0, 0)
    return pv_state_bytes(
        shape.linear_params,
        shape.largest_linear,
        state_dtype=ft.pv_state_dtype,
        offload=ft.pv_offload,
        every=ft.pv_every,
    )


def _generation(config, plan, step, shape, dtype, gpu, tp, gpu_mem) -> StepCost:
    b = DTYPE_BYTES[dtype]
    model = shape.params * b
    tp_size = max(1, int(config.runner.vllm.tensor_parallel_size or 1))
    if step.kind == "evaluate":
        cfg = step.config
        problems = cfg.get("limit") or PROBLEMS.get(cfg["benchmark"], 164)
        completions = problems * cfg["samples"]
        batch, new, prompt = cfg["batch_size"], cfg["max_new_tokens"], 512
        steps = math.ceil(completions / batch) * new
        per_step = max(model / tp.bandwidth, 2 * shape.params * batch / tp.flops)
        seconds = steps * per_step + completions * SANDBOX_SECONDS / max(1, _asks(config, "evaluate")["cpus"])
        note = f"{completions} completions x {new} tokens, batch {batch}, tensor parallel {tp_size}"
    else:  # perplexity, inference: a few forward passes
        batch, prompt, new = 1, config.perplexity.seq_len if config.perplexity else 2048, 32
        tokens = config.perplexity.tokens if (step.kind == "perplexity" and config.perplexity) else 16 * 256
        seconds = 2 * shape.params * tokens / tp.flops + new * model / tp.bandwidth
        note = f"{tokens} tokens"
    kv = batch * (prompt + new) * shape.layers * 2 * shape.kv_heads * shape.head_dim * b
    logits = batch * shape.vocab * 4 * 2
    device = model / tp_size + kv / tp_size + logits
    host = (
        RUNTIME_HOST_BYTES + (model if not gpu else min(model, model / tp_size)) + (0 if gpu else kv + logits)
    )
    return StepCost(
        step.name, step.kind, host / 1e9, device / 1e9 if gpu else 0.0, 0.1, seconds / 3600, "", note
    )


# The kinds whose steps load a model on a device, and how each is sized; any other kind costs a fixed little.
MODEL_COSTS = {
    "quantize": _quantize,
    "finetune": _finetune,
    "evaluate": _generation,
    "perplexity": _generation,
    "inference": _generation,
}


def plan_costs(config: StudyConfig, plan: Plan) -> list[StepCost]:
    """Every step's cost; steps whose model cannot be sized (e.g. `canonical`) get a note instead of figures."""
    try:
        cpu = cpu_throughput()
    except CodequantError:  # no measurement shipped: memory is still planned, CPU time is not
        nan = float("nan")
        cpu = Throughput(nan, nan, nan, "cpu (not measured: run bench/scale_proxy.py)")
    costs = []
    for step in plan.steps:
        try:
            costs.append(step_cost(config, plan, step, cpu))
        except CodequantError as exc:
            costs.append(StepCost(step.name, step.kind, 0, 0, 0, 0, "-", f"not sized: {exc}"))
    return costs


def check_plan(config: StudyConfig, plan: Plan) -> list[StepCost]:
    """Raise one CodequantError line for the first step that does not fit what it asks for; else the costs."""
    costs = plan_costs(config, plan)
    for cost in costs:
        if cost.problem:
            raise CodequantError(cost.problem)
    return costs


def plan_summary(costs: list[StepCost], every: bool = False) -> list[tuple[str, ...]]:
    """Table rows: steps of the same kind and model with the same figures collapse into one row with a count."""
    groups: dict[tuple, list[StepCost]] = {}
    for c in costs:
        key = (
            (c.step,)
            if every
            else (
                c.kind,
                c.note,
                round(c.host_gb, 1),
                round(c.gpu_gb, 1),
                round(c.disk_gb, 1),
                round(c.hours, 2),
                c.problem,
            )
        )
        groups.setdefault(key, []).append(c)
    rows = []
    for members in groups.values():
        c = members[0]
        asks = c.asks or {}
        ask = (
            f"{asks.get('memory_gb', '-'):g}, {asks.get('gpus', '-'):g}, {asks.get('time_min', '-')}"
            if asks
            else "-"
        )
        rows.append(
            (
                c.step,
                str(len(members)),
                f"{c.host_gb:.1f}",
                f"{c.gpu_gb:.1f}",
                f"{c.disk_gb:.1f}",
                f"{c.hours:.2f}",
                c.throughput,
                ask,
                ("DOES NOT FIT: " if c.problem else "") + c.note,
            )
        )
    return rows


def _effort(step_config: dict[str, Any]) -> str:
    """The AQLM effort a quantize step runs at (its typed options; "fast" for the other methods)."""
    if step_config["method"] != "aqlm":
        return "fast"
    return aqlm_options(step_config.get("options") or {}).effort
