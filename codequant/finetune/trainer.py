"""The distillation loop: Adam on the trainable parameters, validation KL each epoch, early stopping,
keep-best, and a checkpoint after every epoch so a killed run resumes where it stopped.

A half-precision student runs forward and backward in its dtype; the KL is computed in fp32 (`topk_kl`) and Adam
steps fp32 master copies of its half-precision trainable parameters (norms, embeddings, head:
codequant.quant.master), which are also what keep-best and resume save."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from codequant.finetune.codes import attach_shadows, code_buffers, detach_shadows, reencode_model
from codequant.finetune.loss import topk_kl
from codequant.finetune.params import restore, select_trainable, snapshot
from codequant.finetune.pv import PVCodeOptimizer, attach_probes, detach_probes
from codequant.finetune.pv_state import check_state_dtype
from codequant.finetune.schedule import check_schedule, lr_factor
from codequant.finetune.teacher import TeacherTargets
from codequant.progress import bar as progress_bar
from codequant.quant.master import MasterWeights


@dataclass
class FinetuneConfig:
    epochs: int = 3
    lr: float = 1e-4
    lr_schedule: str = "constant"  # or "cosine" (to zero over epochs x steps; codequant.finetune.schedule)
    batch_size: int = 4
    patience: int = 1  # epochs without validation improvement before stopping
    train_embeddings: bool = False
    train_head: bool = False
    seed: int = 0
    max_grad_norm: float = 1.0
    code_updates: bool = (
        False  # PV-tuning-style: straight-through shadows + re-encoding (codequant.finetune.codes)
    )
    reencode_fraction: float = 0.01  # share of each AQLM layer's (row, group) codes re-encoded per update
    reencode_every: int = 0  # steps between re-encodings; 0 = once at the end of every epoch
    shadow_lr: float | None = None  # Adam step for the shadows; None = 10 x lr (a shadow must cross a code
    # boundary to change a code, so it moves faster than the codebooks it is measured against)
    pv_tuning: bool = False  # PV-tuning: a V-step on the codes after P-steps (codequant.finetune.pv)
    pv_lr: float = (
        0.03  # the V-step in weight units along Adam's direction for dL/dW; on SmolLM2 2x8 steps <= 0.01
    )
    # move no code (bench/results/pv_step_scale.json): 0.03 is the smallest measured size that does
    pv_tau: float = 0.01  # trust region: share of each AQLM layer's (row, group) pairs a V-step may change
    pv_every: int = 1  # P-steps per V-step (dL/dW accumulates in between)
    pv_state_dtype: str = (
        "float32"  # the V-step's Adam moments: float32 | bfloat16 (codequant.finetune.pv_state)
    )
    pv_offload: bool = False  # keep those moments in host memory, one layer on the device at a time

    def __post_init__(self) -> None:
        check_state_dtype(self.pv_state_dtype)
        check_schedule(self.lr_schedule)
        if self.pv_tuning and self.code_updates:
            raise ValueError("choose one way to move codes: pv_tuning or code_updates")
        if not 0.0 <= self.pv_tau <= 1.0:
            raise ValueError(f"pv_tau must be in [0, 1], got {self.pv_tau}")
        if self.pv_lr <= 0 or self.pv_every < 1:
            raise ValueError(f"pv_lr must be > 0 and pv_every >= 1, got {self.pv_lr}, {self.pv_every}")


@dataclass
class FinetuneResult:
    val_kl_before: float
    val_kl_after: float
    best_epoch: int
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    trainable_parameters: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def mean_kl(model: nn.Module, tokens: torch.Tensor, targets: TeacherTargets, batch_size: int) -> float:
    """Token-weighted mean KL(teacher || student) over [N, L] tokens."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, tokens.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            logits = model(input_ids=tokens[sl].to(device), use_cache=False).logits
            n = tokens[sl].numel()
            total += topk_kl(logits, targets.ids[sl].to(device), targets.logprobs[sl].to(device)).item() * n
            count += n
    return total / max(count, 1)


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def distill(
    student: nn.Module,
    train_tokens: torch.Tensor,
    train_targets: TeacherTargets,
    val_tokens: torch.Tensor,
    val_targets: TeacherTargets,
    config: FinetuneConfig,
    *,
    checkpoint_dir: Path | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune `student` in place towards the teacher targets; on return it holds the best parameters."""
    started = time.perf_counter()
    params = select_trainable(student, train_embeddings=config.train_embeddings, train_head=config.train_head)
    if not params:
        raise ValueError("nothing to train: the model has no quantized linears or norms")
    shadows = attach_shadows(student) if config.code_updates else {}
    if config.code_updates and not shadows:
        raise ValueError("code updates need AQLM layers; this model has none")
    pv = None
    if config.pv_tuning:
        layers = attach_probes(student)
        if not layers:
            raise ValueError("PV-tuning moves AQLM codes; this model has no AQLM layers")
        pv = PVCodeOptimizer(
            layers,
            lr=config.pv_lr,
            tau=config.pv_tau,
            state_dtype=config.pv_state_dtype,
            offload=config.pv_offload,
            stream=config.pv_every == 1,  # one layer's dL/dW at a time; with pv_every > 1 the probes sum it
        )
    try:
        return _distill(
            student,
            params,
            shadows,
            pv,
            train_tokens,
            train_targets,
            val_tokens,
            val_targets,
            config,
            checkpoint_dir,
            progress,
            started,
        )
    finally:
        if pv is not None:
            pv.close()
        detach_shadows(student)
        detach_probes(student)


def _distill(
    student,
    params,
    shadows,
    pv,
    train_tokens,
    train_targets,
    val_tokens,
    val_targets,
    config,
    checkpoint_dir,
    progress,
    started,
) -> FinetuneResult:
    # what keep-best and resume save: the trained tensors, the shadows and (with code updates) the codes
    masters = MasterWeights(params)
    moves_codes = config.code_updates or pv is not None
    tracked = {**masters.masters, **shadows, **(code_buffers(student) if moves_codes else {})}
    groups = [{"params": masters.parameters()}]
    if shadows:
        groups.append({"params": list(shadows.values()), "lr": config.shadow_lr or 10 * config.lr})
    optimizer = torch.optim.Adam(groups, lr=config.lr)
    steps_per_epoch = -(-train_tokens.shape[0] // config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(config.lr_schedule, step, total_steps)
    )
    student.eval()  # no dropout: the loss must be deterministic for keep-best to mean anything

    ckpt_path = Path(checkpoint_dir) / "finetune_state.pt" if checkpoint_dir else None
    state = torch.load(ckpt_path, weights_only=False) if ckpt_path and ckpt_path.exists() else None
    if state is not None:
        restore(tracked, state["params"])
        masters.masters_to_model()
        optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:  # a checkpoint from before schedules existed ran at a constant lr
            scheduler.load_state_dict(state["scheduler"])
        if pv is not None and "pv" in state:  # a checkpoint from a run without PV starts fresh moments
            pv.load_state_dict(state["pv"])
        history, best, best_state = state["history"], state["best"], state["best_params"]
        before, start_epoch, stale = state["before"], state["epoch"], state["stale"]
    else:
        before = mean_kl(student, val_tokens, val_targets, config.batch_size)
        history, best, best_state, start_epoch, stale = [], before, snapshot(tracked), 0, 0

    device = next(student.parameters()).device
    for epoch in range(start_epoch, config.epochs):
        if stale >= config.patience:
            break
        order = torch.randperm(
            train_tokens.shape[0], generator=torch.Generator().manual_seed(config.seed + epoch)
        )
        losses, changed = [], 0
        bar = progress_bar(
            len(range(0, len(order), config.batch_size)),
            f"finetune epoch {epoch + 1}",
            unit="batch",
            enabled=progress,
        )
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            logits = student(input_ids=train_tokens[idx].to(device), use_cache=False).logits
            loss = topk_kl(logits, train_targets.ids[idx].to(device), train_targets.logprobs[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            masters.grads_to_masters()
            torch.nn.utils.clip_grad_norm_(masters.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            masters.masters_to_model()
            losses.append(loss.item())
            bar.set_info(f"loss {loss.item():.4f}")
            bar.update(1)
            if config.code_updates and config.reencode_every > 0 and len(losses) % config.reencode_every == 0:
                changed += reencode_model(student, config.reencode_fraction)
            if pv is not None and len(losses) % config.pv_every == 0:
                changed += pv.step()  # V-step: codes towards W - lr * Adam(dL/dW), at most pv_tau of them
        bar.close()
        if config.code_updates and config.reencode_every <= 0:
            changed += reencode_model(student, config.reencode_fraction)
        val = mean_kl(student, val_tokens, val_targets, config.batch_size)
        record = {"epoch": epoch + 1, "train_kl": sum(losses) / max(len(losses), 1), "val_kl": val}
        if config.lr_schedule != "constant":
            record["lr_end"] = optimizer.param_groups[0]["lr"]
        if moves_codes:
            record["codes_changed"] = changed
        history.append(record)
        if val < best:
            best, best_state, stale = val, snapshot(tracked), 0
        else:
            stale += 1
        if ckpt_path:
            _save_state(
                ckpt_path,
                {
                    "params": snapshot(tracked),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "history": history,
                    "best": best,
                    "best_params": best_state,
                    "before": before,
                    "epoch": epoch + 1,
                    "stale": stale,
                    **({"pv": pv.state_dict()} if pv is not None else {}),
                },
            )
        if stale >= config.patience:
            break
    restore(tracked, best_state)
    masters.masters_to_model()
    improved = [h for h in history if h["val_kl"] == best]
    return FinetuneResult(
        val_kl_before=before,
        val_kl_after=best,
        best_epoch=improved[0]["epoch"] if improved and best < before else 0,
        epochs_run=len(history),
        history=history,
        trainable_parameters=sum(p.numel() for p in params.values()),
        seconds=time.perf_counter() - started,
    )


def write_report(path: Path, result: FinetuneResult, extra: dict) -> None:
    payload = {**result.to_dict(), **extra}
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)
