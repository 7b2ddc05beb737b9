"""`load(spec)`: one entry point from a user's model spec to an eval-mode model and its tokenizer.

A spec is resolved in order: embedded name (`smollm2-135m`) -> existing `.gguf` file -> existing folder (an HF
`save_pretrained` folder, an aqlm-format export, or a codequant native checkpoint, read by the loader that
`codequant.quant` registers in `models.checkpoints`) -> hub id (`org/name`).

GGUF files are dequantized by transformers to fp32, which takes ~35 s for SmolLM2-135M. The converted weights
and tokenizer are therefore cached as an ordinary HF folder under `cache_dir("models", ...)`, keyed by the GGUF's
path, size and mtime (and the transformers version, which owns the conversion), so later loads read
safetensors in seconds. The cache folder is written under a temporary name and renamed into place: a killed
conversion never leaves a half-written cache that a later load would trust.

The weights load in the dtype `dtype` asks for (codequant.models.dtype: `auto` = the checkpoint's own dtype on a
GPU, float32 on the CPU); `LoadedModel.dtype` says which one it became.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from codequant.cache import cache_dir
from codequant.errors import CodequantError
from codequant.models.checkpoints import folder_loader
from codequant.models.dtype import dtype_name, folder_dtype, hub_dtype, model_dtype, resolve_dtype
from codequant.models.registry import EMBEDDED

Source = Literal["embedded", "gguf", "folder", "hub"]
log = logging.getLogger("codequant.models")
SOURCE_FILE = "codequant-source.json"  # written into GGUF cache folders: which file they came from
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadedModel:
    """A loaded model with where it came from; `cached` says whether a GGUF came from the conversion cache."""

    model: Any
    tokenizer: Any
    spec: str
    source: Source
    path: Path | str
    load_seconds: float
    cached: bool = False
    dtype: str = "float32"  # the dtype the weights compute in ("float16", ...), as resolved from the request


def resolve(spec: str) -> tuple[Source, Path | str]:
    """Where `spec` points, without loading anything; raises CodequantError for specs that lead nowhere."""
    if spec in EMBEDDED:
        return "embedded", EMBEDDED[spec].path()
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise CodequantError(
                f"{spec} is a file but not a .gguf; give a GGUF file, an HF model folder or a hub id"
            )
        return "gguf", path.resolve()
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return "gguf", ggufs[0].resolve()
            raise CodequantError(
                f"folder {spec} has no config.json, so it is not an HF model folder; "
                "give the folder written by save_pretrained (or `codequant quantize --out`), or a .gguf file"
            )
        return "folder", path.resolve()
    if spec.lower().endswith(".gguf"):
        raise CodequantError(f"GGUF file {spec} does not exist")
    if _HUB_ID.match(spec) and not spec.startswith("."):
        return "hub", spec
    if "/" in spec or "\\" in spec or spec.startswith(("~", ".")):
        raise CodequantError(f"no such file or folder: {spec}")
    raise CodequantError(
        f"unknown model {spec!r}; use an embedded name ({', '.join(EMBEDDED)}), a .gguf file, "
        "an HF model folder or a hub id such as org/name"
    )


def load(spec: str, *, dtype: str | torch.dtype = "auto", device: str | torch.device = "cpu") -> LoadedModel:
    """Load `spec` (see module doc) in eval mode on `device`, with a tokenizer that has a pad token.

    `dtype`: auto | float32 | float16 | bfloat16 (or a torch dtype); auto = the checkpoint's own dtype on a GPU,
    float32 on the CPU (codequant.models.dtype). A quantized checkpoint keeps its codes, codebooks and scales as
    stored; its other weights and its compute dtype become `dtype`."""
    start = time.perf_counter()
    _quiet_transformers()
    source, where = resolve(str(spec))
    target = load_dtype(spec, dtype, device)
    cached = False
    if source in ("embedded", "gguf"):
        folder, cached = _converted_gguf(Path(where))
        model, tokenizer = _load_folder(folder, target)
    elif source == "folder":
        model, tokenizer = _load_folder(Path(where), target)
    else:
        model, tokenizer = _load_hub(str(where), target)
    model = model.to(device=device, dtype=target) if _floating(model) else model.to(device)
    model.eval()
    _guard_aqlm_cpu_kernel(model)
    _ensure_pad(model, tokenizer)
    loaded_dtype = dtype_name(model_dtype(model))
    if loaded_dtype != dtype_name(target):  # a loader that ignored the request must not pass for it
        raise CodequantError(f"{spec} loaded in {loaded_dtype}, not the {dtype_name(target)} asked for")
    return LoadedModel(
        model, tokenizer, str(spec), source, where, time.perf_counter() - start, cached, loaded_dtype
    )


def load_dtype(
    spec: str, dtype: str | torch.dtype = "auto", device: str | torch.device = "cpu"
) -> torch.dtype:
    """The torch dtype `load(spec, dtype=dtype)` gives for work on `device` (codequant.models.dtype.resolve_dtype).
    The checkpoint's own dtype is read (config only, no weights) only when `auto` meets a GPU. A GGUF (the
    embedded models) is float32: that is what transformers' converter writes."""
    if isinstance(dtype, torch.dtype):
        return dtype
    own = None
    if str(dtype).strip().lower() == "auto" and str(device).startswith("cuda"):
        source, where = resolve(str(spec))
        own = (
            "float32"
            if source in ("embedded", "gguf")
            else (folder_dtype(where) if source == "folder" else hub_dtype(str(where)))
        )
    return resolve_dtype(str(dtype), str(device), own)


def _quiet_transformers() -> None:
    """No "Loading weights" bars: a model loads in seconds, and its bars would bury codequant's own progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _guard_aqlm_cpu_kernel(model: Any) -> None:
    """The `aqlm` package's CPU kernel for 8-bit codebooks (numba, `numba_gemm_lut`) adds into one output
    vector from a parallel loop over input groups: with more than one numba thread the sums race, and logits
    come out wrong (measured on SmolLM2 2x8: max |logit diff| 20, 37% argmax agreement against the same codes
    decoded by codequant; one thread: 0.04 and 100%). A model in the aqlm format on the CPU gets one thread."""
    quant = getattr(getattr(model, "config", None), "quantization_config", None)
    method = quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", None)
    if str(getattr(method, "value", method)).lower() != "aqlm":
        return
    if any(p.is_cuda for p in model.parameters()):
        return
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # binds for every thread if numba is not imported yet
    import numba

    if numba.get_num_threads() != 1:  # numba already running: this thread's launches (numba is thread-local)
        log.warning("aqlm CPU kernel: using one numba thread (its parallel loop races with more)")
        numba.set_num_threads(1)


def gguf_cache_folder(gguf: Path) -> Path:
    """The cache folder for a GGUF file: changes when the file, its size or mtime, or transformers changes."""
    import transformers

    gguf = gguf.resolve()
    st = gguf.stat()
    key = hashlib.sha256(
        f"{gguf}|{st.st_size}|{st.st_mtime_ns}|{transformers.__version__}".encode()
    ).hexdigest()
    return cache_dir("models") / f"{gguf.stem}-{key[:16]}"


def converted_gguf_folder(gguf: Path) -> Path:
    """The HF folder of a GGUF's fp32 conversion (what other engines, such as vLLM, load); converts on first use."""
    return _converted_gguf(gguf)[0]


def _converted_gguf(gguf: Path) -> tuple[Path, bool]:
    """(folder of the converted model, whether it was already cached); converts and caches on first use."""
    target = gguf_cache_folder(gguf)
    if (target / SOURCE_FILE).is_file():
        return target, True
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name}
    print(f"converting {gguf.name} to fp32 (once; cached in {target})", file=sys.stderr)
    try:
        with _no_gguf_bar():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kwargs)
    except (ValueError, KeyError, NotImplementedError, RuntimeError, OSError) as exc:
        raise CodequantError(f"cannot convert GGUF {gguf}: {_first_line(exc)}") from exc
    _drop_gguf_marker(model)
    _ensure_pad(model, tokenizer)
    try:
        write_atomic(
            target, model, tokenizer, {SOURCE_FILE: {"gguf": str(gguf), "size": gguf.stat().st_size}}
        )
    except OSError:
        if not (target / SOURCE_FILE).is_file():  # another process may have renamed its copy in first
            raise
    return target, False


@contextlib.contextmanager
def _no_gguf_bar() -> Iterator[None]:
    """transformers draws its GGUF conversion bar with tqdm directly (its progress-bar switch does not reach it);
    inside a study it would be the only bar of a step, so it is switched off for the conversion."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    before = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(before, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = before


def _drop_gguf_marker(model: Any) -> None:
    """transformers tags a GGUF-loaded model as "quantized with gguf" and then refuses to save it, although its
    weights are already dequantized to plain fp32 tensors; the tag carries nothing else, so it is removed."""
    quantizer = getattr(model, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if quantizer is not None and str(getattr(method, "value", method)) == "gguf":
        model.hf_quantizer = None
    qc = getattr(model.config, "quantization_config", None)
    qm = getattr(qc, "quant_method", None) if qc is not None else None
    if qc is not None and str(getattr(qm, "value", qm)) == "gguf":
        del model.config.quantization_config


def write_atomic(target: Path, model: Any, tokenizer: Any, extra_json: dict[str, Any] | None = None) -> Path:
    """save_pretrained into a temp sibling of `target`, then rename it into place (replacing an old `target`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the renamed folder should read like any other
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for name, data in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(data, indent=2))
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{time.time_ns()}")
            target.rename(old)
        tmp.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_folder(folder: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        config = AutoConfig.from_pretrained(folder)
    except (ValueError, KeyError, OSError) as exc:
        raise CodequantError(f"unsupported model in {folder}: {_first_line(exc)}") from exc
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise CodequantError(
            f"cannot load {folder} as a causal LM: transformers has no generating model for "
            f"model_type {config.model_type!r}; codequant needs a decoder LM such as llama, qwen2 or starcoder2"
        )
    registered = folder_loader(folder)
    try:
        if registered is not None:
            model = registered(folder, dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(folder, config=config, dtype=dtype)
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise CodequantError(
            f"cannot load {folder} as a causal LM ({type(config).__name__}): {_first_line(exc)}"
        ) from exc
    except ImportError as exc:
        raise CodequantError(f"loading {folder} needs a missing package: {_first_line(exc)}") from exc
    except OSError as exc:
        raise CodequantError(f"cannot read the weights in {folder}: {_first_line(exc)}") from exc
    return model, load_tokenizer(folder)


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder)
    except (ValueError, KeyError, OSError, TypeError) as exc:
        raise CodequantError(
            f"no usable tokenizer in {folder} ({_first_line(exc)}); save one there with tokenizer.save_pretrained"
        ) from exc


def _load_hub(repo: str, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(repo)
        model = AutoModelForCausalLM.from_pretrained(repo, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise CodequantError(
            f"could not load {repo!r} from the Hugging Face hub and it is no local folder "
            f"({_first_line(exc)}); offline, use an embedded model ({', '.join(EMBEDDED)}), a .gguf file or a folder"
        ) from exc
    return model, tokenizer


def _ensure_pad(model: Any, tokenizer: Any) -> None:
    """Batched generation pads: give the tokenizer a pad token (eos when it has none) and tell the model."""
    if tokenizer is None:
        return
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None and tokenizer.pad_token_id is not None:
        gen.pad_token_id = tokenizer.pad_token_id


def _floating(model: Any) -> bool:
    """Whether casting the whole model is safe: quantized modules hold integer codes that must not be cast."""
    return all(t.is_floating_point() for t in [*model.parameters(), *model.buffers()])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
