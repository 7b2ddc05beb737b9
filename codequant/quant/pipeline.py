"""The walk over decoder blocks that drives every quantization method.

Why block by block: each block is quantized against activations that already went through the *quantized*
blocks before it, so errors are corrected downstream instead of compounding blindly (GPTQ, AQLM), and only
one block's activations are alive at a time.

For block i:
1. targets = fp block(inputs) (the block's own fp behaviour on its real, already-perturbed inputs);
2. its linears are grouped by shared input (q/k/v; o; gate/up; down for Llama), found by tracing one row;
   groups are quantized in forward order and, with `sequential=True` (GPTQ/RTN default), each group's XTX is collected
   from the block with the earlier groups already quantized (GPTQ's "true sequential"); the forward stops as
   soon as the group's input is seen. `sequential=False` (AQLM default, as AQLM's reference does) collects every
   XTX from the fp block in one pass;
3. `quantizer.tune_block(...)` may tune the block's continuous parameters against the targets (AQLM);
4. the quantized block's outputs become block i+1's inputs, and the block is checkpointed.
Embeddings, lm_head and norms stay fp. Everything is deterministic for a given seed and batch size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from codequant.errors import CodequantError
from codequant.quant.base import QuantizedLinear, Quantizer
from codequant.quant.checkpoint import RunCheckpoint, set_submodule


class _Stop(Exception):
    """Raised from a hook to end a forward pass early once the wanted activations are captured."""


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


def find_decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ModuleList of decoder blocks: `model.model.layers` for Llama/Mistral/Qwen2, else the ModuleList named
    `*layers`/`*h`/`*blocks` whose length is the config's num_hidden_layers (Gemma3 and friends)."""
    inner = getattr(model, "model", None)
    if isinstance(getattr(inner, "layers", None), nn.ModuleList):
        return "model.layers", inner.layers
    config = getattr(model, "config", None)
    text = getattr(config, "text_config", None) or config
    n = getattr(text, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] in ("layers", "h", "blocks"):
            if n is None or len(module) == n:
                return name, module
    raise CodequantError(f"cannot find the decoder layers of {type(model).__name__}; expected model.model.layers")


def check_model(model: nn.Module, quantizer: Quantizer) -> tuple[str, nn.ModuleList]:
    """Fail before any work if the quantizer cannot handle some block linear (e.g. group size vs inputs)."""
    prefix, layers = find_decoder_layers(model)
    check = getattr(quantizer, "check_linear", None)
    for idx, layer in enumerate(layers):
        for name, m in layer.named_modules():
            if isinstance(m, nn.Linear) and check is not None:
                check(f"{prefix}.{idx}.{name}", m)
    return prefix, layers


def _split_calibration(calibration: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
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


def _block_device_dtype(block: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in block.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _capture_first_inputs(model: nn.Module, layer0: nn.Module, tokens: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Hidden states entering block 0 for every row (fp32, CPU), stopping each forward there."""
    chunks: list[torch.Tensor] = []

    def hook(_module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        chunks.append(hidden.detach().float().cpu())
        raise _Stop

    handle = layer0.register_forward_pre_hook(hook, with_kwargs=True)
    device = _model_device(model)
    try:
        for i in range(0, tokens.shape[0], batch_size):
            try:
                model(input_ids=tokens[i : i + batch_size].to(device), use_cache=False)
            except _Stop:
                pass
    finally:
        handle.remove()
    return torch.cat(chunks)


@torch.no_grad()
def _capture_layer_kwargs(model: nn.Module, layers: nn.ModuleList, row: torch.Tensor) -> list[dict[str, Any]]:
    """The keyword arguments each decoder layer receives (rotary embeddings, mask, position ids), captured
    from one full forward of one row. They have batch dimension 1 and broadcast over any batch; per-layer
    capture handles models whose layers differ (sliding-window vs global attention)."""
    captured: list[dict[str, Any] | None] = [None] * len(layers)
    handles = []
    for idx, layer in enumerate(layers):

        def hook(_module, args, kwargs, idx=idx):
            if len(args) > 1:
                raise CodequantError(f"{type(_module).__name__} takes positional arguments besides hidden_states")
            kw = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            kw["use_cache"] = False
            for name in ("past_key_values", "past_key_value", "cache"):  # the cache's name differs by version
                if name in kw:
                    kw[name] = None
            captured[idx] = kw

        handles.append(layer.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        model(input_ids=row.to(_model_device(model)), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    if any(c is None for c in captured):
        raise CodequantError("not every decoder layer ran during the forward pass; unsupported architecture")
    return captured  # type: ignore[return-value]


def _call_block(block: nn.Module, x: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    out = block(x, **kwargs)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def run_block(block: nn.Module, inputs: torch.Tensor, kwargs: dict[str, Any], batch_size: int) -> torch.Tensor:
    """block(inputs) in batches; fp32 CPU out, whatever the block's device/dtype. Batches stopped by a hook
    (`_Stop`) leave zeros, which callers that stop on purpose ignore."""
    device, dtype = _block_device_dtype(block)
    out = torch.zeros_like(inputs)
    for i in range(0, inputs.shape[0], batch_size):
        try:
            y = _call_block(block, inputs[i : i + batch_size].to(device, dtype), kwargs)
        except _Stop:
            continue
        out[i : i + batch_size] = y.float().cpu()
    return out


@torch.no_grad()
def linear_groups(block: nn.Module, sample: torch.Tensor, kwargs: dict[str, Any]) -> list[list[str]]:
    """The block's nn.Linear names grouped by shared input, in the order the forward first calls them.
    Linears the forward never calls come last, each alone."""
    linears = {n: m for n, m in block.named_modules() if isinstance(m, nn.Linear)}
    calls: list[tuple[str, torch.Tensor]] = []
    handles = [
        m.register_forward_pre_hook(lambda _m, args, n=n: calls.append((n, args[0]))) for n, m in linears.items()
    ]
    device, dtype = _block_device_dtype(block)
    try:
        _call_block(block, sample.to(device, dtype), kwargs)
    finally:
        for h in handles:
            h.remove()
    groups: list[list[str]] = []
    group_inputs: list[torch.Tensor] = []
    seen: set[str] = set()
    for name, x in calls:
        if name in seen:
            continue
        seen.add(name)
        for g, gx in enumerate(group_inputs):
            if gx is x:
                groups[g].append(name)
                break
        else:
            groups.append([name])
            group_inputs.append(x)
    groups.extend([n] for n in linears if n not in seen)
    return groups


class _XtxCollector:
    """Accumulates XTX (float64) of the input of one linear per group; optionally stops the forward there."""

    def __init__(self, block: nn.Module, groups: list[list[str]], stop: bool):
        self.xtx: dict[int, torch.Tensor] = {}
        self.rows: dict[int, int] = {}
        self.handles = []
        for g, names in enumerate(groups):
            module = block.get_submodule(names[0])
            self.handles.append(module.register_forward_pre_hook(self._hook(g, stop)))

    def _hook(self, g: int, stop: bool):
        def hook(_module, args):
            x = args[0].detach()
            x = x.reshape(-1, x.shape[-1]).float()
            part = (x.T @ x).double().cpu()  # fp32 product per batch, fp64 sum across batches
            self.xtx[g] = part if g not in self.xtx else self.xtx[g] + part
            self.rows[g] = self.rows.get(g, 0) + x.shape[0]
            if stop:
                raise _Stop

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _collect(block, inputs, kwargs, batch_size, groups, stop) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    collector = _XtxCollector(block, groups, stop)
    try:
        outputs = run_block(block, inputs, kwargs, batch_size)
    finally:
        collector.remove()
    return outputs, collector.xtx


def _layer_errors(weight: torch.Tensor, q: QuantizedLinear, xtx: torch.Tensor | None) -> dict[str, float]:
    w = weight.detach().double().cpu()
    e = w - q.dequantize().detach().double().cpu()
    out = {"rel_weight_error": float(e.norm() / w.norm().clamp_min(1e-30))}
    if xtx is not None:
        num = ((e @ xtx) * e).sum()
        den = ((w @ xtx) * w).sum().clamp_min(1e-30)
        out["rel_output_error"] = float(num / den)  # ||(W-Q)X||^2 / ||WX||^2 on the calibration inputs
    return out


def _rel_mse(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float(((pred - target) ** 2).sum() / (target**2).sum().clamp_min(1e-30))


def _fingerprint(model, quantizer, train, val, batch_size, sequential) -> dict[str, Any]:
    h = hashlib.sha256()
    for t in (train, val):
        if t is not None:
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().to(torch.int64).numpy().tobytes())
    emb = model.get_input_embeddings().weight.detach().float().cpu()
    model_hash = hashlib.sha256(emb[:: max(1, emb.shape[0] // 256)].numpy().tobytes()).hexdigest()[:16]
    return {
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


def quantize_model(
    model: nn.Module,
    calibration: Any,
    quantizer: Quantizer,
    *,
    checkpoint_dir: str | Path | None = None,
    batch_size: int = 8,
    progress: bool = True,
    sequential: bool | None = None,
    max_blocks: int | None = None,
) -> QuantReport:
    """Quantize every nn.Linear inside the decoder blocks of `model` in place.

    `calibration`: a LongTensor [N, L] or an object with `.train` (or `.tokens`) and optional `.val` rows.
    `checkpoint_dir`: each finished block is saved there; a rerun with the same config resumes after the last
    finished block. `sequential`: true-sequential XTX (see the module docstring); None = the quantizer's own
    default (`Quantizer.true_sequential`: GPTQ and RTN yes, AQLM no). `max_blocks`: stop after that many blocks
    (the report says `complete=False`); used to
    split long runs and to test resuming.
    """
    start = time.perf_counter()
    model.eval()
    if sequential is None:
        sequential = type(quantizer).true_sequential
    train, val = _split_calibration(calibration)
    prefix, layers = check_model(model, quantizer)
    tunes = type(quantizer).tune_block is not Quantizer.tune_block
    needs_xtx = bool(getattr(quantizer, "needs_xtx", True))
    if not tunes:
        val = None  # validation activations only serve block tuning
    ckpt = None
    if checkpoint_dir is not None:
        ckpt = RunCheckpoint(Path(checkpoint_dir), _fingerprint(model, quantizer, train, val, batch_size, sequential), len(layers))

    report = QuantReport(
        method=quantizer.method,
        config=quantizer.describe(),
        calibration={"train_rows": int(train.shape[0]), "seq_len": int(train.shape[1]),
                     "val_rows": 0 if val is None else int(val.shape[0]), "sequential": sequential},
    )
    layer_kwargs = _capture_layer_kwargs(model, layers, train[:1])
    inputs = _capture_first_inputs(model, layers[0], train, batch_size)
    val_inputs = None if val is None else _capture_first_inputs(model, layers[0], val, batch_size)

    n_blocks = len(layers) if max_blocks is None else min(max_blocks, len(layers))
    bar = tqdm(total=n_blocks, desc=f"{quantizer.method}", unit="block", disable=not progress)
    for index in range(n_blocks):
        block, kwargs = layers[index], layer_kwargs[index]
        t0 = time.perf_counter()
        if ckpt is not None and ckpt.is_done(index):
            info = ckpt.load_block(index, block)
            report.layers.extend(info["layers"])
            report.blocks.append({**info["block"], "resumed": True})
        else:
            torch.manual_seed(quantizer.config.seed * 1_000_003 + index)
            info = _quantize_block(block, f"{prefix}.{index}", index, inputs, val_inputs, kwargs, quantizer,
                                   batch_size, sequential, needs_xtx, tunes, bar)
            report.layers.extend(info["layers"])
            report.blocks.append(info["block"])
        bar.set_postfix_str("propagating")
        new_inputs = run_block(block, inputs, kwargs, batch_size)
        if "targets" in info:
            report.blocks[-1]["rel_output_mse"] = _rel_mse(new_inputs, info.pop("targets"))
        if val_inputs is not None:
            val_inputs = run_block(block, val_inputs, kwargs, batch_size)
        inputs = new_inputs
        report.blocks[-1]["seconds"] = report.blocks[-1].get("seconds", 0.0) + time.perf_counter() - t0
        if ckpt is not None and not report.blocks[-1].get("resumed"):
            ckpt.save_block(index, block, {"layers": info["layers"], "block": report.blocks[-1]})
        bar.update(1)
    bar.close()
    report.complete = n_blocks == len(layers)
    report.seconds = time.perf_counter() - start
    return report


def _quantize_block(block, block_name, index, inputs, val_inputs, kwargs, quantizer, batch_size, sequential,
                    needs_xtx, tunes, bar) -> dict[str, Any]:
    groups = linear_groups(block, inputs[:1], kwargs)
    bar.set_postfix_str("targets")
    first = groups[:1] if sequential else groups
    targets, xtx = _collect(block, inputs, kwargs, batch_size, first if needs_xtx else [], stop=False)
    val_targets = None
    if tunes and val_inputs is not None:
        val_targets = run_block(block, val_inputs, kwargs, batch_size)
    layers_info: list[dict[str, Any]] = []
    for g, names in enumerate(groups):
        if needs_xtx and g not in xtx:
            bar.set_postfix_str(f"XTX {names[0]}")
            _, more = _collect(block, inputs, kwargs, batch_size, [names], stop=True)
            xtx[g] = more.get(0)
        for name in names:
            bar.set_postfix_str(name)
            linear = block.get_submodule(name)
            t0 = time.perf_counter()
            h = xtx.get(g) if needs_xtx else None
            if needs_xtx and h is None:  # never called in the forward: no activations, treat inputs as white
                h = torch.eye(linear.in_features, dtype=torch.float64)
            q = quantizer.quantize_linear(f"{block_name}.{name}", linear, h)
            seconds = time.perf_counter() - t0
            cost = q.storage()
            layers_info.append({
                "name": f"{block_name}.{name}", "block": index, "kind": q.kind,
                "shape": [q.out_features, q.in_features], "params": cost.params,
                "formula_bits": cost.formula_bits, "stored_bits": cost.stored_bits,
                **_layer_errors(linear.weight, q, h), "seconds": seconds,
            })
            set_submodule(block, name, q)
        xtx.pop(g, None)
    block_info: dict[str, Any] = {"index": index, "resumed": False}
    if tunes:
        bar.set_postfix_str("tuning")
        block_info["tune"] = quantizer.tune_block(block, inputs, targets, kwargs, val_inputs, val_targets)
    return {"layers": layers_info, "block": block_info, "targets": targets}

