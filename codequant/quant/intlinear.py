"""The storage RTN and GPTQ share: integer codes on a per-group affine grid.

`w[o, i] = codes[o, i] * scale[o, g(i)] + offset[o, g(i)]` with `g(i) = i // group_size`, or, after GPTQ with
act-order, `g(i) = g_idx[i]` (groups were formed in the activation order, so a column's group is looked up).
Codes live in memory as uint8 and are bit-packed in `state()`, so the checkpoint holds `bits` bits per weight;
scale and offset are fp16. Subclasses only set `kind` so checkpoints remember which method produced them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from codequant.quant.base import QuantizedLinear, StorageCost
from codequant.quant.grid import dequantize_codes, pack_codes, unpack_codes


def _float(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float16, torch.float32) else torch.float16


class GroupedIntLinear(QuantizedLinear):
    kind: ClassVar[str] = "int"

    def __init__(
        self,
        codes: torch.Tensor,
        scale: torch.Tensor,
        offset: torch.Tensor,
        bits: int,
        *,
        g_idx: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        zero_point: str = "float",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.out_features, self.in_features = codes.shape
        self.bits = bits
        self.zero_point = zero_point
        self.dtype = dtype
        groups = scale.shape[1]
        self.group_size = self.in_features // groups
        self.register_buffer("codes", codes.to(torch.uint8).contiguous())
        # fp16 as quantized; fine-tuning may promote them to fp32 parameters, and reloading keeps that dtype
        self.register_buffer("scale", scale.to(_float(scale.dtype)).contiguous())
        self.register_buffer("offset", offset.to(_float(offset.dtype)).contiguous())
        self.register_buffer("g_idx", None if g_idx is None else g_idx.to(torch.int32).contiguous())
        self.bias = (
            None if bias is None else torch.nn.Parameter(bias.detach().to(dtype).clone(), requires_grad=False)
        )
        self._cache: tuple[tuple, torch.Tensor] | None = None

    @property
    def num_groups(self) -> int:
        return self.scale.shape[1]

    def _key(self) -> tuple:
        return tuple((t.data_ptr(), t._version) for t in (self.codes, self.scale, self.offset))

    def dequantize(self) -> torch.Tensor:
        # Dequantizing on every forward would dominate generation time; the cache is keyed on the tensors'
        # identity and version counters, so in-place edits (or `load_state_dict`) invalidate it.
        key = self._key()
        if torch.is_grad_enabled() and (self.scale.requires_grad or self.offset.requires_grad):
            key = None  # training: the weight must carry a fresh autograd graph every call
        if key is not None and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        if self.g_idx is None:
            shape = (self.out_features, self.num_groups, self.group_size)
            w = dequantize_codes(self.codes.view(shape), self.scale[..., None], self.offset[..., None])
            w = w.reshape(self.out_features, self.in_features)
        else:
            idx = self.g_idx.long()
            w = dequantize_codes(self.codes, self.scale[:, idx], self.offset[:, idx])
        w = w.to(self.dtype)
        self._cache = None if key is None else (key, w)
        return w

    def storage(self) -> StorageCost:
        params = self.out_features * self.in_features
        scale_bits = 2 * 16 * self.scale.numel()  # scale + offset, fp16 each
        formula = params * self.bits + scale_bits
        stored_scales = 8 * (
            self.scale.numel() * self.scale.element_size() + self.offset.numel() * self.offset.element_size()
        )
        stored = 8 * -(-params * self.bits // 8) + stored_scales
        if self.g_idx is not None:
            stored += self.in_features * (16 if self.num_groups < 2**15 else 32)
        if self.bias is not None:
            stored += self.bias.numel() * self.bias.element_size() * 8
        return StorageCost(params=params, formula_bits=float(formula), stored_bits=float(stored))

    def state(self) -> dict[str, torch.Tensor]:
        out = {
            "codes": pack_codes(self.codes.cpu(), self.bits),
            "scale": self.scale.detach().cpu(),
            "offset": self.offset.detach().cpu(),
        }
        if self.g_idx is not None:
            small = self.num_groups < 2**15
            out["g_idx"] = self.g_idx.cpu().to(torch.int16 if small else torch.int32)
        if self.bias is not None:
            out["bias"] = self.bias.detach().cpu()
        return out

    def meta(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bits": self.bits,
            "group_size": self.group_size,
            "zero_point": self.zero_point,
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> GroupedIntLinear:
        shape = (int(meta["out_features"]), int(meta["in_features"]))
        codes = unpack_codes(state["codes"], int(meta["bits"]), shape)
        return cls(
            codes,
            state["scale"],
            state["offset"],
            int(meta["bits"]),
            g_idx=state.get("g_idx"),
            bias=state.get("bias"),
            zero_point=meta.get("zero_point", "float"),
            dtype=getattr(torch, meta.get("dtype", "float32")),
        )

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bits={self.bits}, group_size={self.group_size}, kind={self.kind}"
