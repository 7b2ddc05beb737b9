"""Native codequant state: quantized linears as (kind, state, meta), everything else as fp tensors.

Used twice: the pipeline writes one file per finished decoder block into a run directory (so a killed run
resumes where it stopped), and `export.save_codequant_checkpoint` writes a whole model the same way. Files are
safetensors with the JSON description in the header metadata, written to a temporary name and renamed, so a
crash never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from codequant.errors import CodequantError
from codequant.quant.base import QuantizedLinear
from codequant.quant.registry import linear_class
from codequant.quant.tables import TiedHead, tied_heads

META_KEY = "codequant"


def quantized_modules(module: nn.Module) -> dict[str, QuantizedLinear]:
    return {name: m for name, m in module.named_modules() if isinstance(m, QuantizedLinear)}


def set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def module_state(module: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and JSON description of `module`: its quantized linears and its remaining fp parameters/buffers.

    Tensors shared between names (tied embeddings) are stored once and recorded as aliases; a head tied to a
    quantized embedding (`tables.TiedHead`) holds no tensor of its own and is recorded under `tied_heads`.
    """
    tensors: dict[str, torch.Tensor] = {}
    quant = quantized_modules(module)
    qmeta: dict[str, Any] = {}
    for name, q in quant.items():
        state = q.state()
        for key, t in state.items():
            tensors[f"q.{name}.{key}"] = t.detach().cpu().contiguous()
        qmeta[name] = {"kind": q.kind, "meta": q.meta(), "keys": sorted(state)}
    prefixes = tuple(f"{n}." for n in quant)
    fp: list[str] = []
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, tuple, torch.dtype], str] = {}
    for name, t in module.state_dict(keep_vars=True).items():
        if name.startswith(prefixes):
            continue
        ident = (t.data_ptr(), tuple(t.shape), t.dtype)
        if t.numel() and ident in seen:
            aliases[name] = seen[ident]
            continue
        seen[ident] = name
        tensors[f"fp.{name}"] = t.detach().cpu().contiguous()
        fp.append(name)
    meta: dict[str, Any] = {"quantized": qmeta, "fp": fp, "aliases": aliases}
    ties = tied_heads(module)
    if ties:  # only written when present, so block checkpoints keep their layout
        meta["tied_heads"] = ties
    return tensors, meta


def apply_module_state(module: nn.Module, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of `module_state` on a module of the same architecture (its linears may still be fp)."""
    device = next(module.parameters()).device
    for name, info in meta["quantized"].items():
        cls = linear_class(info["kind"])
        state = {key: tensors[f"q.{name}.{key}"] for key in info["keys"]}
        set_submodule(module, name, cls.from_state(state, info["meta"]).to(device))
    ties = meta.get("tied_heads", {})
    if ties:
        for head, embedding in ties.items():
            set_submodule(module, head, TiedHead(module.get_submodule(embedding)))
    fp = {name: tensors[f"fp.{name}"] for name in meta["fp"]}
    for alias, original in meta.get("aliases", {}).items():
        fp[alias] = fp[original]
    missing, unexpected = module.load_state_dict(fp, strict=False)
    quant_prefixes = tuple(f"{n}." for n in [*meta["quantized"], *ties])
    missing = [m for m in missing if not m.startswith(quant_prefixes)]
    if missing or unexpected:
        raise CodequantError(
            f"checkpoint does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]}); "
            "was it written for another architecture?"
        )


def save_state_file(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> int:
    """Write atomically; returns the file size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    os.replace(tmp, path)
    return path.stat().st_size


def load_state_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()[META_KEY])
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    return tensors, meta


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RunCheckpoint:
    """A resumable run directory: `manifest.json` + `block_0000.safetensors`, ...

    The manifest records a hash of everything that determines the result (method config, calibration tokens,
    model identity); reopening a directory written for a different run is an error rather than a silent mix.
    """

    def __init__(self, directory: Path, fingerprint: dict[str, Any], num_blocks: int):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.dir / "manifest.json"
        digest = fingerprint_hash(fingerprint)
        if self.manifest_path.exists():
            manifest = json.loads(self.manifest_path.read_text())
            if manifest.get("config_hash") != digest:
                raise CodequantError(
                    f"{self.dir} holds a checkpoint of a different run (config hash {manifest.get('config_hash')} "
                    f"!= {digest}); use another --out directory or delete it"
                )
            self.manifest = manifest
        else:
            self.manifest = {
                "config_hash": digest,
                "fingerprint": fingerprint,
                "num_blocks": num_blocks,
                "completed": {},
            }
            write_json_atomic(self.manifest_path, self.manifest)

    def block_path(self, index: int) -> Path:
        return self.dir / f"block_{index:04d}.safetensors"

    def is_done(self, index: int) -> bool:
        return str(index) in self.manifest["completed"] and self.block_path(index).exists()

    def save_block(self, index: int, block: nn.Module, info: dict[str, Any]) -> int:
        tensors, meta = module_state(block)
        size = save_state_file(self.block_path(index), tensors, meta)
        self.manifest["completed"][str(index)] = {**info, "bytes": size}
        write_json_atomic(self.manifest_path, self.manifest)
        return size

    def load_block(self, index: int, block: nn.Module) -> dict[str, Any]:
        tensors, meta = load_state_file(self.block_path(index))
        apply_module_state(block, tensors, meta)
        return self.manifest["completed"][str(index)]
