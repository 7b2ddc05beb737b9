"""`AqlmLinear`: a linear layer whose weight is a sum of learned codewords.

Row `o`, input group `j` (inputs `j*g .. j*g+g-1`) of the weight is `scales[o] * sum_m codebooks[m, codes[o, j, m]]`.
The tensor layout is the `aqlm` package's (out_group_size 1), so export is a re-encoding of the codes only:
codebooks `[M, 2^B, 1, g]`, scales `[out, 1, 1, 1]`, codes `[out, in/g, M]` (int64 in memory; int8/int16 on disk).
Codebooks and scales are `nn.Parameter`s (frozen by default) so block tuning and fine-tuning can train them; their
values are kept fp16-representable (`round_to_fp16`) so the fp16 checkpoint is lossless.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from codequant.quant.aqlm.assign import Assignment
from codequant.quant.base import QuantizedLinear, StorageCost
from codequant.quant.registry import register_linear

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def code_storage_bits(nbits: int) -> int:
    """Bits one code occupies on disk: int8 for B <= 8, int16 for B <= 16 (the aqlm package's dtypes)."""
    if not 1 <= nbits <= 16:
        raise ValueError(f"codebook bits must be in 1..16, got {nbits}")
    return 8 if nbits <= 8 else 16


def aqlm_storage(
    out_features: int, in_features: int, num_codebooks: int, nbits: int, group_size: int, bias_bits: int = 0
) -> StorageCost:
    """Cost of one AQLM linear. Formula (as the AQLM paper counts it): B bits per code, fp16 codebooks and
    scales. Stored: codes rounded up to int8/int16; codebooks and scales fp16; plus any bias."""
    groups = out_features * (in_features // group_size)
    codebooks = num_codebooks * (2**nbits) * group_size * 16
    scales = out_features * 16
    formula = groups * num_codebooks * nbits + codebooks + scales
    stored = groups * num_codebooks * code_storage_bits(nbits) + codebooks + scales + bias_bits
    return StorageCost(
        params=out_features * in_features, formula_bits=float(formula), stored_bits=float(stored)
    )


def pack_codes(codes: torch.Tensor, nbits: int) -> torch.Tensor:
    """Codes in [0, 2^B) -> int8/int16 with the aqlm convention (values >= 2^(B-1) stored as code - 2^B)."""
    c = codes.to(torch.int64)
    c = torch.where(c >= 2 ** (nbits - 1), c - 2**nbits, c)
    return c.to(torch.int8 if nbits <= 8 else torch.int16)


def unpack_codes(packed: torch.Tensor, nbits: int) -> torch.Tensor:
    return packed.to(torch.int64) % (2**nbits)


@register_linear
class AqlmLinear(QuantizedLinear):
    kind: ClassVar[str] = "aqlm"

    def __init__(
        self,
        codes: torch.Tensor,
        codebooks: torch.Tensor,
        scales: torch.Tensor,
        bias: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        out_features, num_groups, num_codebooks = codes.shape
        m, size, one, group_size = codebooks.shape
        if m != num_codebooks or one != 1 or size & (size - 1):
            raise ValueError(f"codebooks {tuple(codebooks.shape)} do not fit codes {tuple(codes.shape)}")
        self.out_features, self.in_features = out_features, num_groups * group_size
        self.num_codebooks, self.nbits, self.group_size = num_codebooks, size.bit_length() - 1, group_size
        self.dtype = dtype
        self.register_buffer("codes", codes.to(torch.int64).contiguous())
        self.codebooks = nn.Parameter(codebooks.detach().float().clone(), requires_grad=False)
        self.scales = nn.Parameter(
            scales.detach().float().reshape(out_features, 1, 1, 1).clone(), requires_grad=False
        )
        self.bias = (
            None if bias is None else nn.Parameter(bias.detach().to(dtype).clone(), requires_grad=False)
        )
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def _key(self) -> tuple:
        return tuple((t.data_ptr(), t._version) for t in (self.codes, self.codebooks, self.scales))

    def dequantize(self) -> torch.Tensor:
        # Decoding on every forward would dominate generation; the cache is keyed on the tensors' identity and
        # version counters (in-place optimizer steps invalidate it) and bypassed while training.
        training = torch.is_grad_enabled() and (self.codebooks.requires_grad or self.scales.requires_grad)
        key = None if training else self._key()
        if key is not None and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        w = decode(self.codes, self.codebooks, self.scales, self.assignment()).to(self.dtype)
        self._cache = None if key is None else (key, w)
        return w

    def assignment(self) -> Assignment:
        """The codes as a sparse matrix (see `assign`), rebuilt only when the codes change (code updates)."""
        key = (self.codes.data_ptr(), self.codes._version, self.codes.device)
        cached = self.__dict__.get("_assignment")
        if cached is None or cached[0] != key:
            cached = (key, Assignment.from_codes(self.codes, 2**self.nbits))
            self.__dict__["_assignment"] = cached
        return cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantize()
        shadow = self.__dict__.get("_straight_through")  # set by codequant.finetune.codes (PV-style updates)
        if shadow is not None:
            w = w + (shadow - shadow.detach()).to(w.dtype)  # value of w, gradient also reaches the shadow
        return F.linear(x, w.to(x.dtype), self.bias)

    def storage(self) -> StorageCost:
        bias_bits = 0 if self.bias is None else self.bias.numel() * self.bias.element_size() * 8
        return aqlm_storage(
            self.out_features, self.in_features, self.num_codebooks, self.nbits, self.group_size, bias_bits
        )

    @torch.no_grad()
    def round_to_fp16(self) -> None:
        """Make codebooks and scales exactly fp16-representable (what the checkpoint stores)."""
        self.codebooks.copy_(self.codebooks.half().float())
        self.scales.copy_(self.scales.half().float())

    def state(self) -> dict[str, torch.Tensor]:
        out = {
            "codes": pack_codes(self.codes, self.nbits),
            "codebooks": self.codebooks.detach().half(),
            "scales": self.scales.detach().half(),
        }
        if self.bias is not None:
            out["bias"] = self.bias.detach()
        return out

    def meta(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "num_codebooks": self.num_codebooks,
            "nbits_per_codebook": self.nbits,
            "in_group_size": self.group_size,
            "out_group_size": 1,
            "dtype": str(self.dtype).removeprefix("torch."),
            "bias": self.bias is not None,
        }

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> AqlmLinear:
        return cls(
            unpack_codes(state["codes"], int(meta["nbits_per_codebook"])),
            state["codebooks"].float(),
            state["scales"].float(),
            bias=state.get("bias"),
            dtype=_DTYPES[meta.get("dtype", "float32")],
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"codebooks={self.num_codebooks}x{self.nbits}, group_size={self.group_size}"
        )


def decode(
    codes: torch.Tensor, codebooks: torch.Tensor, scales: torch.Tensor, assignment: Assignment | None = None
) -> torch.Tensor:
    """Weight [out, in] from codes [out, G, M], codebooks [M, K, 1, g] and scales [out, ...] (differentiable in
    codebooks and scales). `assignment`: the codes' sparse form, if the caller keeps one (`AqlmLinear` does)."""
    out_features, num_groups, m = codes.shape
    size, g = codebooks.shape[1], codebooks.shape[-1]
    if assignment is None:
        assignment = Assignment.from_codes(codes, size)
    flat = assignment.decode(codebooks.reshape(m * size, g).float())
    return flat.view(out_features, num_groups * g) * scales.reshape(out_features, 1)
