"""Where the block walk keeps its calibration activations: host RAM, the GPU, or memory-mapped files on disk.

Why this exists: the walk needs, for every calibration row, the hidden states entering the current block and the
fp block's outputs (the tuning targets). At the study's 1024 x 4096 tokens one such buffer of a 4096-wide 7B is
34 GB in fp16, of a 8192-wide 34B 69 GB: more than a node's RAM once the model is there too. So the walk holds
exactly two full-calibration buffers (inputs and targets; the new outputs overwrite the inputs batch by batch),
in the model's dtype, and this module decides where they live from a host-memory budget:

- `host`: plain tensors in RAM (fastest; the default when no budget is given or the budget holds them);
- `device`: tensors on the GPU the blocks are quantized on (no host copy at all; when the GPU has room);
- `disk`: memory-mapped files under the run's folder (`torch.from_file(shared=True)`); the kernel pages them in
  and out, so the process's resident memory stays at the model plus a batch.

The placement changes where bytes sit, never what is computed: the same codes come out of every placement
(tests/quant/test_activations.py).
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from codequant.errors import CodequantError

PLACEMENTS = ("auto", "host", "device", "disk")
GIB = 1024**3


@dataclass(frozen=True)
class ActivationPolicy:
    """How the walk places its activation buffers.

    `placement`: auto | host | device | disk. `max_host_bytes`: the run's host-memory budget (None: unlimited);
    `auto` keeps the buffers in RAM when the model plus the buffers fit it, else on the GPU when the walk has one
    with room, else on disk. `folder`: where disk buffers go (the run's checkpoint folder; required for disk).
    """

    placement: str = "auto"
    max_host_bytes: int | None = None
    folder: Path | None = None

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise CodequantError(
                f"activation placement must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}"
            )
        if self.max_host_bytes is not None and self.max_host_bytes <= 0:
            raise CodequantError(f"the host-memory budget must be positive, got {self.max_host_bytes} bytes")


def buffer_bytes(rows: int, seq_len: int, hidden: int, dtype: torch.dtype) -> int:
    """Bytes of one full-calibration buffer: rows x seq_len hidden states of `hidden` values in `dtype`."""
    return rows * seq_len * hidden * torch.empty((), dtype=dtype).element_size()


def choose_placement(
    policy: ActivationPolicy, *, need_bytes: int, other_host_bytes: int, device: str | None
) -> str:
    """host | device | disk for buffers of `need_bytes` in all, given what else the process holds in RAM
    (`other_host_bytes`: the model, the runtime) and the walk's device (None or "cpu": no GPU)."""
    gpu = device is not None and str(device).startswith("cuda")
    if policy.placement == "device" and not gpu:
        raise CodequantError(
            "activation placement 'device' needs a GPU walk (--device cuda); use host or disk"
        )
    if policy.placement == "disk" and policy.folder is None:
        raise CodequantError("activation placement 'disk' needs a folder (the run's checkpoint folder)")
    if policy.placement != "auto":
        return policy.placement
    if policy.max_host_bytes is None or other_host_bytes + need_bytes <= policy.max_host_bytes:
        return "host"
    if gpu and need_bytes <= _free_gpu_bytes(device) // 2:  # leave half the free memory to the block's work
        return "device"
    if policy.folder is None:
        raise CodequantError(
            f"the activations need {need_bytes / GIB:.1f} GiB beside {other_host_bytes / GIB:.1f} "
            f"GiB in a {policy.max_host_bytes / GIB:.1f} GiB host budget and there is no folder "
            "to map them from; raise the budget or give the run an output folder"
        )
    return "disk"


def _free_gpu_bytes(device: str) -> int:
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


class ActivationStore:
    """Allocates the walk's buffers in one placement and removes its files when closed."""

    def __init__(self, placement: str, *, device: str | None = None, folder: Path | None = None):
        if placement not in ("host", "device", "disk"):
            raise CodequantError(f"unknown activation placement {placement!r}")
        self.placement, self.device = placement, device
        self.folder = None if folder is None else Path(folder) / f"activations-{uuid.uuid4().hex[:8]}"
        self._count = 0

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A tensor of `shape` and `dtype` in this store's placement (contents undefined: zeros on disk)."""
        if self.placement == "host":
            return torch.empty(shape, dtype=dtype)
        if self.placement == "device":
            return torch.empty(shape, dtype=dtype, device=self.device)
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        numel = 1
        for s in shape:
            numel *= s
        path = self.folder / f"buffer{self._count}.bin"
        self._count += 1
        with open(path, "wb") as f:  # sparse file of the right size; pages are written as the walk fills them
            f.truncate(numel * torch.empty((), dtype=dtype).element_size())
        return torch.from_file(str(path), shared=True, size=numel, dtype=dtype).view(shape)

    def close(self) -> None:
        """Delete the disk buffers (the mapped tensors must not be used afterwards)."""
        if self.folder is not None and self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)
