"""The walk over decoder blocks that drives every quantization method.

Why block by block: each block is quantized against activations that already went through the *quantized*
blocks before it, so errors are corrected downstream instead of compounding blindly (GPTQ, AQLM), and only
one block's activations are alive at a time.

For block i:
1. targets = fp block(inputs) (the block's own fp behaviour on its real, already-perturbed inputs), as GPTQ and
   AQLM do; or, when the quantizer asks for `block_targets = "model"` (AQLM's `tune_targets: model`), the fp
   model's hidden states after block i: the targets buffer then carries the fp model's own activations from
   block to block (fp block i applied to it in place), so block tuning also absorbs the error the quantized
   blocks before it left, and each block's reported output error is the model's error at that depth;
2. its linears are grouped by shared input (q/k/v; o; gate/up; down for Llama), found by tracing one row;
   groups are quantized in forward order and, with `sequential=True` (GPTQ/RTN default), each group's XTX is collected
   from the block with the earlier groups already quantized (GPTQ's "true sequential"); the forward stops as
   soon as the group's input is seen. `sequential=False` (AQLM default, as AQLM's reference does) collects every
   XTX from the fp block in one pass;
3. `quantizer.tune_block(...)` may tune the block's continuous parameters against the targets (AQLM);
4. the quantized block's outputs become block i+1's inputs, and the block is checkpointed.
Memory: the walk holds two full-calibration buffers, inputs and targets, in the model's dtype; step 4 writes the
new outputs over the inputs batch by batch, and errors are accumulated per batch, so no third copy is made. Where
the buffers live (host RAM, the GPU, memory-mapped files) follows the run's host-memory budget
(codequant.quant.activations); the results do not depend on it.
Held-out rows (the calibration set's validation split) go through the same walk without steering any fit: each
linear's output error is measured on their XTX as well as on the calibration XTX, each block's output error on
them as well as on the calibration rows, and block tuning selects on them. In-sample errors flatter a method
that overfits a few thousand tokens; the held-out ones are the ones to decide on.
Embeddings, lm_head and norms stay fp. Everything is deterministic for a given seed and batch size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from codequant.errors import CodequantError
from codequant.quant.activations import GIB, ActivationPolicy, ActivationStore, buffer_bytes, choose_placement
from codequant.quant.arch import as_linear, block_linears, check_architecture, find_decoder_layers
from codequant.quant.base import QuantizedLinear, Quantizer
from codequant.quant.blocks import block_device_dtype, propagate, run_block, to_device
from codequant.quant.capture import capture_first_inputs, capture_layer_kwargs, collect_xtx, linear_groups
from codequant.quant.checkpoint import RunCheckpoint, set_submodule
from codequant.quant.objective import relative_output_error
from codequant.quant.progress import ProgressFn, QuantProgress, bar_progress
from codequant.seeds import derive_seed


@dataclass
class QuantReport:
    method: str
    config: dict[str, Any]
    layers: list[dict[str, Any]] = field(default_factory=list)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    complete: bool = True

    def totals(self) -> dict[str, float]:
        params = sum(layer["params"] for layer in self.layers)
        formula = sum(layer["formula_bits"] for layer in self.layers)
        stored = sum(layer["stored_bits"] for layer in self.layers)
        return {
            "quantized_params": params,
            "formula_bits_per_param": formula / params if params else 0.0,
            "stored_bits_per_param": stored / params if params else 0.0,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "totals": self.totals()}


def check_model(model: nn.Module, quantizer: Quantizer) -> tuple[str, nn.ModuleList]:
    """Fail before any work if the architecture does what the walk cannot follow (`check_architecture`), if its
    blocks hold no linear, or if the quantizer cannot handle some block linear (e.g. group size vs inputs)."""
    check_architecture(model)
    prefix, layers = find_decoder_layers(model)
    found = 0
    for idx, layer in enumerate(layers):
        for name, m in block_linears(layer).items():
            quantizer.check_linear(f"{prefix}.{idx}.{name}", as_linear(m, device="meta"))
            found += 1
    if not found:
        raise CodequantError(
            f"the decoder blocks of {type(model).__name__} ({prefix}) hold no nn.Linear or Conv1D; "
            "nothing to quantize"
        )
    return prefix, layers


def split_calibration(calibration: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(train rows, held-out rows or None) of a LongTensor [N, L] or a CalibrationSet-like object."""
    if isinstance(calibration, torch.Tensor):
        return calibration, None
    train = getattr(calibration, "train", None)
    if train is None:
        train = getattr(calibration, "tokens", None)
    if not isinstance(train, torch.Tensor) or train.ndim != 2:
        raise CodequantError("calibration must be a LongTensor [N, L] or have .train/.tokens of that shape")
    val = getattr(calibration, "val", None)
    if isinstance(val, torch.Tensor) and val.numel() == 0:
        val = None
    return train, val


def _fingerprint(model, quantizer, train, val, batch_size, sequential) -> dict[str, Any]:
    h = hashlib.sha256()
    for t in (train, val):
        if t is not None:
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().to(torch.int64).numpy().tobytes())
    emb = model.get_input_embeddings().weight.detach().float().cpu()
    model_hash = hashlib.sha256(emb[:: max(1, emb.shape[0] // 256)].numpy().tobytes()).hexdigest()[:16]
    dtype = model.get_input_embeddings().weight.dtype  # fp16-exact weights hash alike in fp32 and fp16
    return {
        **(
            {"dtype": str(dtype).removeprefix("torch.")} if dtype != torch.float32 else {}
        ),  # fp32 keys as before
        "version": 1,
        "quantizer": quantizer.describe(),
        "config": dataclasses.asdict(quantizer.config),
        "calibration_sha256": h.hexdigest()[:16],
        "model": {
            "class": type(model).__name__,
            "name_or_path": str(getattr(model.config, "_name_or_path", "")),
            "embedding_sample_sha256": model_hash,
        },
        "batch_size": batch_size,
        "sequential": sequential,
    }


def _layer_info(
    name: str,
    index: int,
    weight: torch.Tensor,
    q: QuantizedLinear,
    xtx: torch.Tensor | None,
    val_xtx: torch.Tensor | None,
    seconds: float,
) -> dict[str, Any]:
    """What quantize.json says of one linear: its cost, its errors in-sample and on held-out rows, its fit."""
    cost = q.storage()
    w = weight.detach()
    deq = q.dequantize().detach()
    info: dict[str, Any] = {
        "name": name,
        "block": index,
        "kind": q.kind,
        "shape": [q.out_features, q.in_features],
        "params": cost.params,
        "formula_bits": cost.formula_bits,
        "stored_bits": cost.stored_bits,
        "rel_weight_error": float((deq.double() - w.double()).norm() / w.double().norm().clamp_min(1e-30)),
    }
    if xtx is not None:
        info["rel_output_error"] = relative_output_error(w, deq, xtx)  # in-sample: the rows the fit saw
    if val_xtx is not None:
        info["rel_output_error_heldout"] = relative_output_error(w, deq, val_xtx)
    fit = getattr(q, "fit_info", None)
    if fit:
        info["fit"] = dict(fit)
    info["seconds"] = seconds
    return info


@dataclass(frozen=True)
class WalkOptions:
    """How the block walk runs.

    batch_size: calibration rows per forward pass (part of the checkpoint fingerprint).
    sequential: true-sequential XTX (see the module docstring); None = the quantizer's own default
        (`Quantizer.true_sequential`: GPTQ and RTN yes, AQLM no).
    max_blocks: stop after that many blocks (the report says `complete=False`); splits long runs, tests resuming.
    device: where each block is quantized (e.g. "cuda"); the model stays where it is, only the current block
        moves (None: in place).
    activations: where the two activation buffers live (host RAM by default; `ActivationPolicy` with a budget
        picks host, the GPU or memory-mapped files under the checkpoint folder); the results do not depend on it.
    """

    batch_size: int = 8
    sequential: bool | None = None
    max_blocks: int | None = None
    device: str | None = None
    activations: ActivationPolicy | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise CodequantError(f"batch size must be at least 1, got {self.batch_size}")
        if self.max_blocks is not None and self.max_blocks < 1:
            raise CodequantError(f"--max-blocks must be at least 1, got {self.max_blocks}")


@dataclass
class _Activations:
    """The rows entering the current block, calibration (`train`) and held-out (`val`, may be None), and the
    buffers of the targets: the fp block's outputs on those rows, or with model targets the fp model's hidden
    states (carried from block to block). Two buffers per split, reused by every block: the new outputs
    overwrite the inputs."""

    train: torch.Tensor
    val: torch.Tensor | None
    train_targets: torch.Tensor
    val_targets: torch.Tensor | None


class BlockWalk:
    """One quantization pass over the decoder blocks.

    It owns what the walk needs between blocks: the activations (training and held-out rows), how XTX is
    collected (`sequential`), the batch size, the per-block seed and the report; progress goes out as events.
    Held-out rows never steer a fit: they give every layer and block its held-out error, and block tuning
    selects on them.
    """

    def __init__(
        self,
        quantizer: Quantizer,
        prefix: str,
        layers: nn.ModuleList,
        kwargs: list[dict[str, Any]],
        acts: _Activations,
        report: QuantReport,
        walk: WalkOptions,
        notify: ProgressFn | None = None,
    ):
        """`walk.sequential` must be resolved (not None) by the caller."""
        self.quantizer, self.prefix, self.layers, self.kwargs = quantizer, prefix, layers, kwargs
        self.device = walk.device
        self.acts, self.report, self.batch_size, self.sequential = (
            acts,
            report,
            walk.batch_size,
            walk.sequential,
        )
        self.blocks = len(layers) if walk.max_blocks is None else min(walk.max_blocks, len(layers))
        self.model_targets = quantizer.block_targets == "model"
        self._notify = notify

    def notify(self, index: int, stage: str, **metrics: Any) -> None:
        if self._notify is not None:
            self._notify(QuantProgress(index, self.blocks, stage, metrics))

    def seed(self, index: int) -> int:
        return derive_seed(self.quantizer.config.seed, index)

    def run_block(self, index: int, ckpt: RunCheckpoint | None) -> None:
        """Quantize (or reload) block `index`, then move the activations past it. With a `device`, the block (and
        its keyword arguments) sit there only meanwhile: a model larger than the GPU is quantized block by block."""
        if self.device is None:
            return self._run_block(index, ckpt, self.kwargs[index])
        block = self.layers[index]
        home = block_device_dtype(block)[0]
        block.to(self.device)
        try:
            self._run_block(index, ckpt, to_device(self.kwargs[index], self.device))
        finally:
            block.to(home)

    def _run_block(self, index: int, ckpt: RunCheckpoint | None, kwargs: dict[str, Any]) -> None:
        block = self.layers[index]
        t0 = time.perf_counter()
        resumed = ckpt is not None and ckpt.is_done(index)
        if self.model_targets:  # the fp block, before any of its linears is replaced (or reloaded quantized)
            self.notify(index, "fp model targets")
            self._advance_fp_model(block, kwargs)
        if resumed:
            info = ckpt.load_block(index, block)
            layers_info, block_info = info["layers"], {**info["block"], "resumed": True}
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed(index))
                layers_info, block_info = self._quantize_block(index, kwargs)
        self.notify(index, "propagating")
        acts = self.acts
        # a resumed block's fp-block targets were never computed; the fp model's are
        measured = self.model_targets or not resumed
        mse = propagate(block, acts.train, kwargs, self.batch_size, acts.train_targets if measured else None)
        val_mse = (
            None
            if acts.val is None
            else propagate(block, acts.val, kwargs, self.batch_size, acts.val_targets if measured else None)
        )
        if mse is not None:
            block_info["rel_output_mse"] = mse
        if val_mse is not None:
            block_info["rel_output_mse_heldout"] = val_mse
        block_info["seconds"] = block_info.get("seconds", 0.0) + time.perf_counter() - t0
        self.report.layers.extend(layers_info)
        self.report.blocks.append(block_info)
        if ckpt is not None and not resumed:
            ckpt.save_block(index, block, {"layers": layers_info, "block": block_info})
        self.notify(
            index,
            "done",
            rel_output_mse=block_info.get("rel_output_mse"),
            heldout_mse=block_info.get("rel_output_mse_heldout"),
        )

    def _advance_fp_model(self, block: nn.Module, kwargs: dict[str, Any]) -> None:
        """Model targets: the fp model's hidden states after this (still fp) block, in place of those before it."""
        for buffer in (self.acts.train_targets, self.acts.val_targets):
            if buffer is not None:
                run_block(block, buffer, kwargs, self.batch_size, out=buffer)

    def _quantize_block(self, index: int, kwargs: dict[str, Any]):
        q, block = self.quantizer, self.layers[index]
        name = f"{self.prefix}.{index}"
        groups = linear_groups(block, self.acts.train[:1], kwargs)
        needs_xtx = type(q).needs_xtx
        self.notify(index, "targets")
        first = groups[:1] if self.sequential else groups
        acts = self.acts
        block_targets = not self.model_targets  # else the buffers hold the fp model's states already
        xtx = collect_xtx(
            block,
            acts.train,
            kwargs,
            self.batch_size,
            first if needs_xtx else [],
            stop=False,
            out=acts.train_targets if block_targets else None,
        )
        val_xtx: dict[int, torch.Tensor] = {}
        if acts.val is not None:  # the fp block on held-out rows: targets and XTX of every group
            val_xtx = collect_xtx(
                block,
                acts.val,
                kwargs,
                self.batch_size,
                groups,
                stop=False,
                out=acts.val_targets if block_targets else None,
            )
        layers_info = []
        for g, names in enumerate(groups):
            if needs_xtx and g not in xtx:
                self.notify(index, f"XTX {names[0]}")
                xtx[g] = collect_xtx(block, acts.train, kwargs, self.batch_size, [names], stop=True).get(0)
            for lin_name in names:
                self.notify(index, lin_name)
                linear = as_linear(block.get_submodule(lin_name))  # a Conv1D as the [out, in] linear it is
                h = xtx.get(g) if needs_xtx else None
                if (
                    needs_xtx and h is None
                ):  # never called in the forward: no activations, treat inputs as white
                    h = torch.eye(linear.in_features, dtype=torch.float64, device=linear.weight.device)
                t0 = time.perf_counter()
                qlin = q.quantize_linear(f"{name}.{lin_name}", linear, h)
                layers_info.append(
                    _layer_info(
                        f"{name}.{lin_name}",
                        index,
                        linear.weight,
                        qlin,
                        h,
                        val_xtx.get(g),
                        time.perf_counter() - t0,
                    )
                )
                set_submodule(block, lin_name, qlin)
            xtx.pop(g, None)
        block_info: dict[str, Any] = {"index": index, "resumed": False}
        if type(q).tunes_blocks:
            self.notify(index, "tuning")
            block_info["tune"] = q.tune_block(
                block, acts.train, acts.train_targets, kwargs, acts.val, acts.val_targets
            )
        return layers_info, block_info


def quantize_model(
    model: nn.Module,
    calibration: Any,
    quantizer: Quantizer,
    walk: WalkOptions | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    progress: bool | ProgressFn = True,
) -> QuantReport:
    """Quantize every nn.Linear inside the decoder blocks of `model` in place.

    `calibration`: a LongTensor [N, L] or an object with `.train` (or `.tokens`) and optional `.val` rows; the
    held-out rows give every layer and block a held-out error (and block tuning its selection rows).
    `checkpoint_dir`: each finished block is saved there; a rerun with the same config resumes after the last
    finished block. `progress`: True for a bar (codequant.progress), False for none, or a function receiving `QuantProgress`
    events. `walk`: batch size, true-sequential or one pass, a block limit, the device, where the activations
    live (`WalkOptions`).
    """
    start = time.perf_counter()
    model.eval()
    walk = walk or WalkOptions()
    if walk.sequential is None:
        walk = dataclasses.replace(walk, sequential=type(quantizer).true_sequential)
    batch_size, sequential, device = walk.batch_size, walk.sequential, walk.device
    train, val = split_calibration(calibration)
    prefix, layers = check_model(model, quantizer)
    ckpt = None
    if checkpoint_dir is not None:
        fingerprint = _fingerprint(model, quantizer, train, val, batch_size, sequential)
        ckpt = RunCheckpoint(Path(checkpoint_dir), fingerprint, len(layers))
    report = QuantReport(
        method=quantizer.method,
        config=quantizer.describe(),
        calibration={
            "train_rows": int(train.shape[0]),
            "seq_len": int(train.shape[1]),
            "val_rows": 0 if val is None else int(val.shape[0]),
            "sequential": sequential,
            "targets": quantizer.block_targets,
        },
    )
    n_blocks = len(layers) if walk.max_blocks is None else min(walk.max_blocks, len(layers))
    notify, close = _progress_fn(progress, quantizer.method, n_blocks)
    policy = walk.activations or ActivationPolicy()
    if policy.folder is None and checkpoint_dir is not None:
        policy = dataclasses.replace(policy, folder=Path(checkpoint_dir))
    store = _activation_store(model, train, val, policy, device, report)
    try:
        acts = _capture(model, layers, train, val, batch_size, store, quantizer.block_targets == "model")
        walker = BlockWalk(
            quantizer,
            prefix,
            layers,
            capture_layer_kwargs(model, layers, train[:1]),
            acts,
            report,
            walk,
            notify,
        )
        for index in range(n_blocks):
            walker.run_block(index, ckpt)
    finally:
        close()
        store.close()
    report.complete = n_blocks == len(layers)
    report.seconds = time.perf_counter() - start
    return report


RUNTIME_HOST_BYTES = GIB // 2  # Python, torch and transformers loaded, before any model or activation


def model_host_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers that sit in host memory."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors if t.device.type == "cpu")


def _activation_store(
    model: nn.Module,
    train: torch.Tensor,
    val: torch.Tensor | None,
    policy: ActivationPolicy,
    device: str | None,
    report: QuantReport,
) -> ActivationStore:
    """The store for this run's two buffers per split, placed by `policy`; the choice goes into the report."""
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    hidden = int(model.get_input_embeddings().weight.shape[1])
    rows = int(train.shape[0]) + (0 if val is None else int(val.shape[0]))
    need = 2 * buffer_bytes(rows, int(train.shape[1]), hidden, dtype)
    placement = choose_placement(
        policy, need_bytes=need, other_host_bytes=model_host_bytes(model) + RUNTIME_HOST_BYTES, device=device
    )
    report.calibration["activations"] = {
        "placement": placement,
        "dtype": str(dtype).removeprefix("torch."),
        "bytes": need,
        "max_host_bytes": policy.max_host_bytes,
    }
    return ActivationStore(placement, device=device, folder=policy.folder)


def _capture(
    model: nn.Module,
    layers: nn.ModuleList,
    train: torch.Tensor,
    val: torch.Tensor | None,
    batch_size: int,
    store: ActivationStore,
    model_targets: bool = False,
) -> _Activations:
    """Block 0's inputs for both splits, and a targets buffer of the same shape beside each: empty, or with
    `model_targets` a copy of the inputs (the fp model's hidden states entering block 0)."""
    x = capture_first_inputs(model, layers[0], train, batch_size, store)
    x_val = None if val is None else capture_first_inputs(model, layers[0], val, batch_size, store)

    def targets(inputs: torch.Tensor) -> torch.Tensor:
        buffer = store.empty(tuple(inputs.shape), inputs.dtype)
        if model_targets:
            buffer.copy_(inputs)
        return buffer

    return _Activations(x, x_val, targets(x), None if x_val is None else targets(x_val))


def _progress_fn(
    progress: bool | ProgressFn, desc: str, total: int
) -> tuple[ProgressFn | None, Callable[[], None]]:
    if callable(progress):
        return progress, lambda: None
    if progress:
        return bar_progress(desc, total)
    return None, lambda: None
