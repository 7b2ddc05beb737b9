"""The field's own quantizers as quality peers in bench/quantize.py: same model, same held-out rows, their bits.

Each peer quantizes the decoder blocks' linears (what codequant quantizes; embeddings and head stay fp) with its own
library and returns the dequantized weights, so perplexity is measured by the same code as codequant's cells;
llama.cpp's k-quants are measured by llama.cpp itself on the same token rows. `bits_per_param` is each format's true
cost per quantized weight (codes plus its scales and zero points), from the library's own tensors.

    hqq      HQQ (half-quadratic, calibration-free), group 64, fp16 scale + zero per group
    quanto   optimum-quanto qint8/qint4/qint2 weights (no 3-bit type), its default groups
    torchao  torchao IntxWeightOnlyConfig int8/4/3/2, group 64, asymmetric
    kquant   llama.cpp Q8_0 / Q4_K_M / Q3_K_M / Q2_K (no imatrix) via llama-cpp-python
"""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

PEERS = ("hqq", "quanto", "torchao", "kquant")
SITE = (
    Path(sys.prefix) / "share" / "codequant-bench" / "site"
)  # `make bench-peers` installs hqq/quanto/torchao here
if SITE.is_dir() and str(SITE) not in sys.path:
    sys.path.append(str(SITE))
KQUANT = {8: "Q8_0", 4: "Q4_K_M", 3: "Q3_K_M", 2: "Q2_K"}


class PeerUnavailable(RuntimeError):
    """The peer's library is not installed or cannot run this configuration here (the cell records why)."""


def _decoder_linears(model: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    from codequant.quant.pipeline import find_decoder_layers

    _, layers = find_decoder_layers(model)
    found = []
    for layer in layers:
        for parent in layer.modules():
            for name, child in parent.named_children():
                if isinstance(child, nn.Linear):
                    found.append((parent, name, child))
    return found


def _hqq(linear: nn.Linear, bits: int, group: int) -> tuple[torch.Tensor, float]:
    try:
        from hqq.core.quantize import BaseQuantizeConfig, HQQLinear
    except ImportError as exc:
        raise PeerUnavailable(f"hqq not installed ({exc}); run `make bench-peers`") from None
    cfg = BaseQuantizeConfig(nbits=bits, group_size=group, quant_zero=False, quant_scale=False, axis=1)
    q = HQQLinear(copy.deepcopy(linear), cfg, compute_dtype=torch.float32, device="cpu", del_orig=True)
    w = q.dequantize().reshape(linear.weight.shape).float()
    return w, bits + 2 * 16 / group  # one fp16 scale and one fp16 zero per group


def _quanto_python_unpack() -> None:
    """quanto's CPU C++ extension holds one op, `quanto::unpack` (int4/int2 codes out of bytes), and builds it with a
    JIT C++ compile on first use (over 10 minutes on 2 cores). quanto ships the same op in Python as the op's default
    kernel; point the extension at that one instead of compiling it. Same values: it is quanto's reference code."""
    import importlib

    cpp = importlib.import_module("optimum.quanto.library.extensions.cpp")
    default = torch._C.DispatchKeySet(
        torch._C.DispatchKey.CompositeExplicitAutograd
    )  # torch.library's "default"

    def unpack(t: torch.Tensor, bits: int) -> torch.Tensor:
        return torch.ops.quanto.unpack.default.redispatch(default, t, bits)

    if cpp.ext._lib is None:
        cpp.ext._lib = type("PythonUnpack", (), {"unpack": staticmethod(unpack)})


def _quanto(linear: nn.Linear, bits: int, group: int) -> tuple[torch.Tensor, float]:
    try:
        from optimum import quanto
    except ImportError as exc:
        raise PeerUnavailable(f"optimum-quanto not installed ({exc}); run `make bench-peers`") from None
    _quanto_python_unpack()
    qtype = {8: quanto.qint8, 4: quanto.qint4, 2: quanto.qint2}.get(bits)
    if qtype is None:
        raise PeerUnavailable(f"optimum-quanto has no {bits}-bit weight type")
    holder = nn.Sequential(copy.deepcopy(linear))
    quanto.quantize(holder, weights=qtype)
    quanto.freeze(holder)
    qw = holder[0].weight
    w = qw.dequantize().float()
    extra = 0.0
    for attr in ("_scale", "_shift"):
        t = getattr(qw, attr, None)
        if t is not None:
            extra += t.numel() * t.element_size() * 8
    return w, bits + extra / linear.weight.numel()


def _torchao(linear: nn.Linear, bits: int, group: int) -> tuple[torch.Tensor, float]:
    try:
        from torchao.quantization import IntxWeightOnlyConfig, quantize_
        from torchao.quantization.granularity import PerGroup
    except ImportError as exc:
        raise PeerUnavailable(f"torchao not installed or incompatible with this torch ({exc})") from None
    holder = nn.Sequential(copy.deepcopy(linear))
    dtype = {8: torch.int8, 4: torch.int4, 3: torch.int3, 2: torch.int2}[bits]
    quantize_(holder, IntxWeightOnlyConfig(weight_dtype=dtype, granularity=PerGroup(group)))
    w = holder[0].weight.dequantize().float()
    return w, bits + 2 * 16 / group  # scale and zero point per group (stored as fp16/bf16-sized numbers)


def quantize_peer(name: str, fp_model: nn.Module, bits: int, group: int = 64) -> dict:
    """A copy of the model with every decoder linear replaced by the peer's dequantized weights, and its cost."""
    fn = {"hqq": _hqq, "quanto": _quanto, "torchao": _torchao}[name]
    model = copy.deepcopy(fp_model)
    start = time.perf_counter()
    params, cost = 0, 0.0
    with torch.no_grad():
        for _, _, linear in _decoder_linears(model):
            w, bpw = fn(linear, bits, group)
            if w.shape != linear.weight.shape:
                raise RuntimeError(
                    f"{name}: dequantized weight {tuple(w.shape)} != {tuple(linear.weight.shape)}"
                )
            linear.weight.copy_(w)
            params += w.numel()
            cost += bpw * w.numel()
    return {
        "model": model,
        "quantize_s": round(time.perf_counter() - start, 1),
        "bits_per_param": cost / params,
    }


def kquant_cell(
    fp_model, tokenizer, bits: int, evals: dict[str, torch.Tensor], workdir: Path | None = None
) -> dict:
    """llama.cpp k-quant of the fp weights (GGUF f32 -> ftype), perplexity by llama.cpp on the same rows."""
    import llama_cpp_peer as peer
    from gguf import GGUFReader

    if bits not in KQUANT:
        raise PeerUnavailable(f"no k-quant preset for {bits} bits")
    ftype = KQUANT[bits]
    try:
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            tmp = Path(tmp)
            f32 = peer.cached_f32_gguf(fp_model, tokenizer)
            start = time.perf_counter()
            out = peer.quantize_gguf(f32, tmp / f"{ftype}.gguf", ftype)
            seconds = time.perf_counter() - start
            n_ctx = max(int(v.shape[1]) for v in evals.values()) + 8
            llm = peer.load(f32, n_ctx=n_ctx, logits_all=True)
            f32_ppl = {
                f"llama_cpp_f32_ppl_{lang}": peer.perplexity(llm, rows.tolist())
                for lang, rows in evals.items()
            }
            del llm
            reader = GGUFReader(str(out))
            blk = [t for t in reader.tensors if t.name.startswith("blk.") and len(t.shape) == 2]
            bpw = sum(int(t.n_bytes) * 8 for t in blk) / sum(int(t.n_elements) for t in blk)
            llm = peer.load(out, n_ctx=n_ctx, logits_all=True)
            ppl = {f"ppl_{lang}": peer.perplexity(llm, rows.tolist()) for lang, rows in evals.items()}
            del llm
    except peer.PeerUnavailable as exc:
        raise PeerUnavailable(str(exc)) from None
    return {
        "resolved": {"ftype": ftype, "llama_cpp": peer.version()},
        "quantize_s": round(seconds, 1),
        "formula_bits_per_param": bpw,
        "stored_bits_per_param": bpw,
        **ppl,
        **f32_ppl,
    }  # the f32 GGUF through llama.cpp: checks its perplexity agrees with ours on the fp weights
