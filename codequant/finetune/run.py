"""`codequant finetune` as a function: a quantized checkpoint + its fp teacher -> a fine-tuned checkpoint.

OUT/                 HF folder with dequantized weights (`codequant evaluate OUT` works)
OUT/codequant/       native checkpoint (codes unchanged, tuned codebooks/scales/norms)
OUT/aqlm/            HF folder in the `aqlm` format (AQLM checkpoints only)
OUT/state/           training checkpoint (rerunning the same command resumes)
OUT/finetune.json    val_kl_before / val_kl_after, history, perplexities, timings, peak memory, dtypes, devices

Memory: the teacher never sits beside the student. Its top-k targets are computed first (on `teacher_device`,
which may be another GPU or the CPU), cached on disk (N x L x k x 8 bytes: ids int32 + log-probs fp32) and the
teacher is freed before the student loads; the peak is max(teacher, student + its activations and optimizer
state), not their sum. Both load in `dtype` (auto: each checkpoint's own dtype on a GPU, float32 on the CPU).
"""

from __future__ import annotations

import gc
import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codequant.cache import cache_dir
from codequant.calibration.spec import CalibrationSpec
from codequant.errors import CodequantError
from codequant.finetune.codes import aqlm_layers
from codequant.finetune.teacher import TeacherTargets, compute_teacher_targets, targets_key
from codequant.finetune.trainer import FinetuneConfig, distill, write_report

NATIVE = "codequant.safetensors"


def native_checkpoint_dir(quant_dir: Path) -> Path:
    """The native checkpoint inside a `codequant quantize` (or `finetune`) output folder."""
    for candidate in (quant_dir / "codequant", quant_dir):
        if (candidate / NATIVE).exists():
            return candidate
    raise CodequantError(
        f"{quant_dir} holds no codequant checkpoint ({NATIVE}); rerun the same `codequant quantize` "
        "command with `--format codequant` added (it loads the finished blocks from OUT/checkpoint)"
    )


def _tokens(calib: Any) -> tuple[torch.Tensor, torch.Tensor]:
    train, val = getattr(calib, "train", None), getattr(calib, "val", None)
    if train is None:  # a plain [N, L] tensor: hold out the last eighth, as the calibration sets do
        tokens = torch.as_tensor(calib)
        n_val = max(1, tokens.shape[0] // 8)
        train, val = tokens[:-n_val], tokens[-n_val:]
    if val is None or len(val) == 0:
        raise CodequantError("fine-tuning needs validation sequences: use --val-samples > 0")
    return torch.as_tensor(train).long(), torch.as_tensor(val).long()


def _heldout_ppl(model: torch.nn.Module, tokenizer: Any, n_tokens: int) -> dict[str, float]:
    from codequant.calibration import heldout_tokens
    from codequant.metrics.perplexity import perplexity

    out = {}
    for lang in ("python", "java"):
        try:
            toks = heldout_tokens(lang, tokenizer, n_tokens=n_tokens)
        except CodequantError:
            continue
        out[lang] = perplexity(model, toks, seq_len=512, batch_size=4)["ppl"]
    return out


@dataclass(frozen=True)
class FinetuneRun:
    """How one fine-tuning runs, besides the checkpoint, the teacher and the training settings (`FinetuneConfig`).

    calibration: the `CalibrationSpec` of the distillation sequences (a plain string is its kind; its held-out rows
        drive early stopping and keep-best), or an already built set (tensor or CalibrationSet-like).
    top_k: teacher tokens kept per position for the KL.
    heldout_tokens: also measure held-out code perplexity on this many tokens (0: not at all).
    device: where the student trains (cpu, cuda, auto); teacher_device: where the teacher's targets are computed
        (None: `device`); the exports are written from the CPU.
    dtype: of teacher and student (see the module doc).
    """

    calibration: CalibrationSpec | Any = CalibrationSpec()
    top_k: int = 64
    heldout_tokens: int = 0
    device: str = "cpu"
    dtype: str = "auto"
    teacher_device: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.calibration, str):
            object.__setattr__(self, "calibration", CalibrationSpec(kind=self.calibration))
        if self.top_k < 1 or self.heldout_tokens < 0:
            raise CodequantError(
                f"top_k must be >= 1 and heldout_tokens >= 0, got {self.top_k}, {self.heldout_tokens}"
            )


def finetune(
    quant_dir: str | Path,
    teacher_spec: str,
    out_dir: str | Path,
    run: FinetuneRun | None = None,
    config: FinetuneConfig | None = None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Distil `teacher_spec` into the quantized model at `quant_dir`; write OUT; return what finetune.json holds.
    `config.seed` (default: the calibration spec's seed) orders the training batches."""
    from codequant.devices import resolve_device
    from codequant.models import check_dtype, load, load_dtype
    from codequant.models.dtype import dtype_name, folder_dtype, model_dtype, resolve_dtype
    from codequant.quant.export import (
        export_dequantized,
        load_codequant_checkpoint,
        save_codequant_checkpoint,
    )

    run = run or FinetuneRun()
    spec = run.calibration if isinstance(run.calibration, CalibrationSpec) else None
    top_k, heldout_tokens, dtype = run.top_k, run.heldout_tokens, run.dtype
    config = config or FinetuneConfig(seed=spec.seed if spec else 0)
    quant_dir, out = Path(quant_dir), Path(out_dir)
    native = native_checkpoint_dir(quant_dir)
    started = time.perf_counter()
    device = resolve_device(run.device)
    teacher_device = resolve_device(run.teacher_device or device)
    dtype = check_dtype(dtype)
    student_dtype = resolve_dtype(dtype, device, folder_dtype(native))
    teacher = load(teacher_spec, dtype=load_dtype(teacher_spec, dtype, teacher_device), device=teacher_device)
    tokenizer = teacher.tokenizer
    calib = spec.resolve(tokenizer) if spec else run.calibration
    train, val = _tokens(calib)
    tokens = torch.cat([train, val])
    key = targets_key(
        f"{teacher_spec}:{getattr(teacher, 'path', '')}"
        + ("" if teacher.dtype == "float32" else f":{teacher.dtype}"),
        tokens,
        top_k,
    )
    cached = cache_dir("teacher") / f"{key}.safetensors"
    if cached.exists():
        targets = TeacherTargets.load(cached)
    else:
        targets = compute_teacher_targets(
            teacher.model, tokens, top_k=top_k, batch_size=config.batch_size, progress=progress
        )
        targets.save(cached)
    teacher_ppl = _heldout_ppl(teacher.model, tokenizer, heldout_tokens) if heldout_tokens else {}
    teacher_dtype = teacher.dtype
    del teacher
    gc.collect()  # the teacher is not needed beside the student: its targets are on disk

    student, info = load_codequant_checkpoint(native, device=device, dtype=student_dtype)
    if (config.code_updates or config.pv_tuning) and not aqlm_layers(student):
        flag = "--pv-tuning" if config.pv_tuning else "--code-updates"
        raise CodequantError(f"{flag} moves AQLM codes, and {quant_dir} holds no AQLM layers")
    ppl_before = _heldout_ppl(student, tokenizer, heldout_tokens) if heldout_tokens else {}
    n = train.shape[0]
    result = distill(
        student,
        train,
        TeacherTargets(targets.ids[:n], targets.logprobs[:n]),
        val,
        TeacherTargets(targets.ids[n:], targets.logprobs[n:]),
        config,
        checkpoint_dir=_mkdir(out / "state"),
        progress=progress,
    )
    ppl_after = _heldout_ppl(student, tokenizer, heldout_tokens) if heldout_tokens else {}

    method = (info.get("config") or {}).get("method") or (info.get("resolved") or {}).get("method")
    new_info = {
        **{k: v for k, v in info.items() if k not in ("format", "bytes", "accounting")},
        "finetuned_from": str(quant_dir),
        "teacher": teacher_spec,
        "dtype": dtype_name(model_dtype(student)),
    }
    for p in student.parameters():
        p.requires_grad_(False)
    student.to("cpu")
    exports = {
        "codequant": str(
            save_codequant_checkpoint(student, out / "codequant", tokenizer=tokenizer, info=new_info)
        )
    }
    if method == "aqlm":
        from codequant.quant.aqlm import export_aqlm

        exports["aqlm"] = str(export_aqlm(student, tokenizer, out / "aqlm"))
    exports["dequantized"] = str(export_dequantized(student, tokenizer, out, info=new_info))
    extra = {
        "quant_dir": str(quant_dir),
        "teacher": teacher_spec,
        "method": method,
        "calibration": spec.kind if spec else "given",
        "samples": spec and spec.samples,
        "seq_len": spec and spec.seq_len,
        "val_samples": spec and spec.held_out,
        "top_k": top_k,
        "dtype": dtype_name(model_dtype(student)),
        "teacher_dtype": teacher_dtype,
        "device": device,
        "teacher_device": teacher_device,
        "config": vars(config),
        "teacher_heldout_ppl": teacher_ppl,
        "heldout_ppl_before": ppl_before,
        "heldout_ppl_after": ppl_after,
        "exports": exports,
        "total_seconds": time.perf_counter() - started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    write_report(out / "finetune.json", result, extra)
    return json.loads((out / "finetune.json").read_text())


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
