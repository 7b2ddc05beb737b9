"""A calibration set on disk: `tokens.safetensors` ([N, L] int64) plus `manifest.json`.

The manifest carries `sha256` of the token bytes (int64 little-endian, row-major), so a set can be checked after
copying and two builds compared without loading them. It holds no timestamps: the same seed gives the same bytes.
Saving writes a sibling temporary folder and renames it into place, so a killed save never leaves a set that
`load_calibration` would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codequant.errors import CodequantError

TOKENS_FILE = "tokens.safetensors"
MANIFEST_FILE = "manifest.json"
FORMAT = "codequant-calibration/1"


def tokens_sha256(tokens: torch.Tensor) -> str:
    data = np.ascontiguousarray(tokens.detach().cpu().numpy().astype("<i8"))
    return hashlib.sha256(data.tobytes()).hexdigest()


@dataclass
class CalibrationSet:
    """Token rows [N, L]; the last `manifest['val_samples']` rows are the validation rows."""

    tokens: torch.Tensor
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def val_samples(self) -> int:
        return int(self.manifest.get("val_samples", 0))

    @property
    def train(self) -> torch.Tensor:
        n = self.tokens.shape[0] - self.val_samples
        return self.tokens[:n]

    @property
    def val(self) -> torch.Tensor:
        return self.tokens[self.tokens.shape[0] - self.val_samples :]

    @property
    def sha256(self) -> str:
        return str(self.manifest.get("sha256", ""))

    def save(self, out_dir: str | Path) -> Path:
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            save_file({"tokens": self.tokens.to(torch.int64).contiguous()}, str(tmp / TOKENS_FILE))
            (tmp / MANIFEST_FILE).write_text(json.dumps(self.manifest, indent=1, sort_keys=True) + "\n")
            for p, mode in ((tmp, 0o755), (tmp / TOKENS_FILE, 0o644), (tmp / MANIFEST_FILE, 0o644)):
                p.chmod(mode)  # mkdtemp makes 0700: a shared set must be readable like any other output
            old = None
            if out.exists():
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                out.rename(old)
            tmp.rename(out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out


def is_calibration_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / MANIFEST_FILE).is_file() and (p / TOKENS_FILE).is_file()


def load_calibration(path: str | Path) -> CalibrationSet:
    """Load a saved set and check its tokens against the manifest's sha256."""
    from safetensors.torch import load_file

    p = Path(path)
    if not is_calibration_dir(p):
        raise CodequantError(
            f"{path} is not a calibration set (needs {MANIFEST_FILE} and {TOKENS_FILE}); "
            "build one with `codequant calibration build`"
        )
    manifest = json.loads((p / MANIFEST_FILE).read_text())
    tokens = load_file(str(p / TOKENS_FILE))["tokens"].long()
    if manifest.get("sha256") and tokens_sha256(tokens) != manifest["sha256"]:
        raise CodequantError(
            f"{path}: tokens do not match the manifest's sha256 (corrupt copy?); rebuild the set"
        )
    return CalibrationSet(tokens, manifest)
