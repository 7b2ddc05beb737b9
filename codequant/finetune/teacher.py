"""Teacher targets, computed once: the fp model's top-k next-token log-probs over calibration sequences.

Computing them up front means the teacher never sits in memory beside the student during training, and a
resumed or repeated fine-tune reuses them (they are cached by the hash of the teacher and the tokens).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from codequant.progress import track


@dataclass
class TeacherTargets:
    ids: torch.Tensor  # [N, L, k] int32: the teacher's k most likely next tokens at each position
    logprobs: torch.Tensor  # [N, L, k] fp32: their log-probs under the teacher's full softmax

    @property
    def top_k(self) -> int:
        return self.ids.shape[-1]

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({"ids": self.ids.contiguous(), "logprobs": self.logprobs.contiguous()}, str(tmp))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> TeacherTargets:
        t = load_file(str(path))
        return cls(ids=t["ids"], logprobs=t["logprobs"])


def targets_key(teacher_id: str, tokens: torch.Tensor, top_k: int) -> str:
    """Cache key: teacher identity, exact token data and k."""
    h = hashlib.sha256()
    h.update(teacher_id.encode())
    h.update(str(top_k).encode())
    h.update(tokens.to(torch.int64).numpy().tobytes())
    return h.hexdigest()[:24]


@torch.inference_mode()
def compute_teacher_targets(
    teacher: nn.Module, tokens: torch.Tensor, *, top_k: int = 64, batch_size: int = 4, progress: bool = True
) -> TeacherTargets:
    """Run the teacher over [N, L] tokens and keep its top-k log-probs at every position."""
    device = next(teacher.parameters()).device
    all_ids, all_lp = [], []
    for start in track(range(0, tokens.shape[0], batch_size), "teacher", enabled=progress, unit="batch"):
        batch = tokens[start : start + batch_size].to(device)
        logits = teacher(input_ids=batch, use_cache=False).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        lp, ids = logp.topk(top_k, dim=-1)
        all_ids.append(ids.to(torch.int32).cpu())
        all_lp.append(lp.cpu())
    return TeacherTargets(ids=torch.cat(all_ids), logprobs=torch.cat(all_lp))
