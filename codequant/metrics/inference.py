"""What a model version costs at inference: prefill and decode tokens/s, peak RSS, file bytes, bits per weight.

The study's open question on latency (does a 2-bit model run faster, or only smaller?) is answered per *backend*,
since one quantized folder runs several ways (`backends`):

- `dequantized`: the fp32 export (what `evaluate` runs): as fast as fp, as big in memory;
- `codequant`: codequant's native checkpoint (`codequant/`), decoded into fp weights at load;
- `aqlm-kernels`: the `aqlm` package's kernels through plain transformers (`aqlm/`): the weights stay codes and
  every matmul decodes them (on CPU: numba, one thread, the only exact setting; see `models.loader`).

Energy per decoded token comes with the method that gave it (`codequant.metrics.energy`: counters, or a stated
CPU-time estimate). Decoding is greedy for exactly `new_tokens` per row (no early stop) over held-out Python code (never calibration
data), through the same preallocated KV cache as the engine. Peak RSS is only the backend's own when it is measured
in a fresh process: `measure_isolated` runs `python -m codequant.metrics.inference` for that.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# torch, the model and the engine load inside `measure`, which `measure_isolated` runs in a fresh process.
from codequant.errors import CodequantError
from codequant.models.filebits import model_file_bits

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


@dataclass(frozen=True)
class InferenceSettings:
    prompt_tokens: int = 256
    new_tokens: int = 32
    batches: tuple[int, ...] = (1, 16)
    seed: int = 0
    device: str = "cpu"
    dtype: str = "auto"  # of the weights (codequant.models.dtype): auto = float32 on the CPU


@dataclass
class InferenceResult:
    spec: str
    backend: str
    load_s: float
    prefill_tok_s: float
    decode_tok_s: dict[int, float] = field(default_factory=dict)  # batch size -> new tokens/s over all rows
    peak_rss_mb: float | None = None
    file_bytes: int | None = None
    formula_bits_per_param: float | None = None
    whole_file_bits_per_weight: float | None = (
        None  # every tensor of the measured folder over the fp parameters
    )
    decode_j_per_token: dict[int, float] = field(default_factory=dict)  # batch size -> joules per new token
    energy_method: str | None = None  # rapl | nvml | estimate:cpu-time (codequant.metrics.energy)
    energy_note: str = ""
    dtype: str | None = None  # what the weights computed in (LoadedModel.dtype)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["decode_tok_s"] = {str(b): v for b, v in self.decode_tok_s.items()}
        out["decode_j_per_token"] = {str(b): v for b, v in self.decode_j_per_token.items()}
        return out


def weight_bytes(spec: str | Path) -> int | None:
    """Bytes of the weight files of a model folder (None for an embedded name or hub id)."""
    folder = Path(spec)
    if not folder.is_dir():
        return None
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)


def formula_bits(spec: str | Path) -> float | None:
    """bits/param of the quantized linears, from the quantize.json of the run that wrote the folder (or its parent)."""
    for folder in (Path(spec), Path(spec).parent):
        info = folder / "quantize.json"
        if info.is_file():
            return json.loads(info.read_text()).get("accounting", {}).get("formula_bits_per_param")
    return None


def backends(folder: str | Path) -> list[tuple[str, str]]:
    """(backend, path) for every export a `codequant quantize` / `finetune` folder holds."""
    base = Path(folder)
    found = []
    for name, path in (
        ("dequantized", base),
        ("codequant", base / "codequant"),
        ("aqlm-kernels", base / "aqlm"),
    ):
        if (path / "config.json").is_file() or (path / "codequant.json").is_file():
            found.append((name, str(path)))
    return found


def measure(
    spec: str, settings: InferenceSettings = InferenceSettings(), backend: str = "fp"
) -> InferenceResult:
    """Load `spec` and time one prefill, then greedy decoding at each batch size (in this process)."""
    import torch
    from transformers import DynamicCache

    import codequant.quant.export  # noqa: F401  registers the native checkpoint loader with codequant.models
    from codequant.calibration import heldout_tokens
    from codequant.generation.engine import cache_kwarg, use_all_cores
    from codequant.generation.kvcache import preallocate
    from codequant.metrics.energy import EnergyMeter
    from codequant.models import load

    if (
        not settings.batches
        or min(settings.batches) < 1
        or settings.new_tokens < 1
        or settings.prompt_tokens < 1
    ):
        raise CodequantError(f"inference settings need positive batches and token counts, got {settings}")
    use_all_cores()
    t = time.perf_counter()
    loaded = load(spec, dtype=settings.dtype, device=settings.device)
    model, tok = loaded.model, loaded.tokenizer
    load_s = time.perf_counter() - t
    prompts = heldout_tokens(
        "python", tok, samples=max(settings.batches), seq_len=settings.prompt_tokens, seed=settings.seed
    ).to(model.device)
    kw = cache_kwarg(model)
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    decode: dict[int, float] = {}
    joules: dict[int, float] = {}
    meter = EnergyMeter(use_gpu=model.device.type == "cuda")
    with torch.inference_mode():
        model(input_ids=prompts[:1, :16])  # warm-up: kernels, numba JIT of the aqlm kernels
        sync()
        t = time.perf_counter()
        model(input_ids=prompts[:1], logits_to_keep=1)
        sync()
        prefill = settings.prompt_tokens / (time.perf_counter() - t)
        for b in settings.batches:
            cache = DynamicCache(config=model.config)
            preallocate(cache)
            logits = model(input_ids=prompts[:b], use_cache=True, logits_to_keep=1, **{kw: cache}).logits
            token = logits[:, -1].argmax(-1, keepdim=True)
            sync()
            t = time.perf_counter()
            with meter:
                for _ in range(settings.new_tokens):
                    logits = model(input_ids=token, use_cache=True, **{kw: cache}).logits
                    token = logits[:, -1].argmax(-1, keepdim=True)
                sync()
            decode[b] = round(b * settings.new_tokens / (time.perf_counter() - t), 2)
            joules[b] = round(meter.energy.joules / (b * settings.new_tokens), 4)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return InferenceResult(
        spec=str(spec),
        backend=backend,
        load_s=round(load_s, 2),
        prefill_tok_s=round(prefill, 1),
        decode_tok_s=decode,
        peak_rss_mb=round(peak, 1),
        file_bytes=weight_bytes(spec),
        formula_bits_per_param=formula_bits(spec),
        whole_file_bits_per_weight=model_file_bits(spec, model),
        decode_j_per_token=joules,
        energy_method=meter.energy.method,
        energy_note=meter.energy.note,
        dtype=loaded.dtype,
    )


def measure_isolated(
    spec: str,
    settings: InferenceSettings = InferenceSettings(),
    backend: str = "fp",
    timeout: float | None = None,
) -> dict[str, Any]:
    """`measure` in a fresh Python process (so peak RSS is this backend's alone), plus the process's `wall_s`;
    {"error": ...} if it fails."""
    cmd = [
        sys.executable,
        "-m",
        "codequant.metrics.inference",
        str(spec),
        "--backend",
        backend,
        "--prompt-tokens",
        str(settings.prompt_tokens),
        "--new-tokens",
        str(settings.new_tokens),
        "--batches",
        ",".join(map(str, settings.batches)),
        "--seed",
        str(settings.seed),
        "--device",
        settings.device,
        "--dtype",
        settings.dtype,
    ]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"spec": str(spec), "backend": backend, "error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        return {"spec": str(spec), "backend": backend, "error": (lines or [f"exit {done.returncode}"])[-1]}
    return {
        **json.loads(done.stdout.strip().splitlines()[-1]),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def _main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="measure one model spec; prints one JSON line")
    p.add_argument("spec")
    p.add_argument("--backend", default="fp")
    p.add_argument("--prompt-tokens", type=int, default=256)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto", help="auto | float32 | float16 | bfloat16")
    a = p.parse_args(argv)
    settings = InferenceSettings(
        a.prompt_tokens,
        a.new_tokens,
        tuple(int(b) for b in a.batches.split(",") if b),
        a.seed,
        a.device,
        a.dtype,
    )
    print(json.dumps(measure(a.spec, settings, a.backend).to_dict()))


if __name__ == "__main__":
    _main()
