"""llama.cpp as a peer for the benches, through llama-cpp-python (a bench-only dependency: `make bench-peers`
builds it from its sdist and keeps the sdist, whose vendored llama.cpp carries the official HF -> GGUF converter).

- `export_gguf`: an HF folder -> GGUF (f32 by default: the same weights codequant runs) with llama.cpp's own
  `convert_hf_to_gguf.py`, run from the sdist with its own `gguf-py`;
- `quantize_gguf`: llama.cpp's quantize API (k-quants Q2_K, Q3_K_M, Q4_K_M, Q8_0 ...);
- `generate`: greedy decoding of the same prompts, one at a time (what the Python API offers), same stop rule;
- `perplexity`: exp(mean NLL) of the same held-out token rows, from llama.cpp's logits.

Every entry point raises `PeerUnavailable` with the reason when llama-cpp-python or its sdist is missing, so the
benches print null for the peer instead of failing.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

SDIST_DIR = Path(sys.prefix) / "share" / "codequant-bench"
FTYPES = {"F32": 0, "F16": 1, "Q8_0": 7, "Q2_K": 10, "Q3_K_M": 12, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}


class PeerUnavailable(RuntimeError):
    pass


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:
        raise PeerUnavailable(f"llama-cpp-python is not installed ({exc}); run `make bench-peers`") from None
    return llama_cpp


def version() -> str:
    return _llama_cpp().__version__


def _sdist() -> Path:
    found = sorted(SDIST_DIR.glob("llama_cpp_python-*.tar.gz"))
    if not found:
        raise PeerUnavailable(
            f"no llama-cpp-python sdist under {SDIST_DIR} (needed for convert_hf_to_gguf.py); "
            "run `make bench-peers`"
        )
    return found[-1]


def converter() -> Path:
    """convert_hf_to_gguf.py (with its `conversion` package and `gguf-py`) extracted once from the sdist."""
    sdist = _sdist()
    root = SDIST_DIR / sdist.name.removesuffix(".tar.gz")
    script = root / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py"
    if script.exists():
        return script
    prefix = f"{sdist.name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
    wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
    with tarfile.open(sdist) as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.name.startswith(prefix)
            and m.name[len(prefix) :].startswith(wanted)
            and (m.isfile() or m.isdir())
        ]
        tar.extractall(SDIST_DIR, members=members, filter="data")
    return script


def export_gguf(hf_dir: Path, out: Path, outtype: str = "f32") -> Path:
    """Convert an HF folder (config, tokenizer, safetensors) to one GGUF file with llama.cpp's converter."""
    script = converter()
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, str(script), str(hf_dir), "--outfile", str(out), "--outtype", outtype],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"convert_hf_to_gguf.py failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return out


def quantize_gguf(src: Path, dst: Path, ftype: str) -> Path:
    """llama.cpp's own quantizer (`llama_model_quantize`), e.g. ftype "Q4_K_M"; no imatrix (plain k-quants)."""
    lib = _llama_cpp()
    if ftype not in FTYPES:
        raise ValueError(f"unknown llama.cpp ftype {ftype!r}; known: {', '.join(FTYPES)}")
    params = lib.llama_model_quantize_default_params()
    params.ftype = FTYPES[ftype]
    params.nthread = len(os.sched_getaffinity(0))
    rc = lib.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0 or not dst.exists():
        raise RuntimeError(f"llama_model_quantize({ftype}) returned {rc}")
    return dst


def load(gguf: Path, *, n_ctx: int = 2048, logits_all: bool = False):
    lib = _llama_cpp()
    cores = len(os.sched_getaffinity(0))
    return lib.Llama(
        model_path=str(gguf),
        n_ctx=n_ctx,
        n_batch=512,
        n_threads=cores,
        n_threads_batch=cores,
        logits_all=logits_all,
        verbose=False,
    )


def generate(
    llm,
    prompts: Sequence[tuple[str, bool]],
    max_new_tokens: int,
    stop_rule: Callable[[str], bool] | None = None,
) -> list[tuple[list[int], float]]:
    """Greedy completions of (prompt text, add BOS) pairs: (new token ids, seconds) each. The text is tokenized by
    llama.cpp itself with special tokens parsed (chat markers), and decoding stops at EOG, the rule or the limit."""
    lib = _llama_cpp()
    vocab = llm._model.vocab
    out = []
    for text, add_bos in prompts:
        tokens = llm.tokenize(text.encode(), add_bos=add_bos, special=True)
        start = time.perf_counter()
        new: list[int] = []
        for tok in llm.generate(
            tokens, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True
        ):
            if lib.llama_vocab_is_eog(vocab, tok):
                break
            new.append(tok)
            if len(new) >= max_new_tokens:
                break
            if stop_rule is not None and stop_rule(llm.detokenize(new).decode("utf-8", errors="ignore")):
                break
        out.append((new, time.perf_counter() - start))
    return out


def perplexity(llm, rows: Sequence[Sequence[int]]) -> float:
    """exp(mean next-token NLL) over token rows (ids of the HF tokenizer: the converter keeps the vocabulary)."""
    nll, count = 0.0, 0
    for row in rows:
        llm.reset()
        llm.eval(list(row))
        logits = np.asarray(llm.scores[: len(row) - 1], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        nll -= float(logp[np.arange(len(row) - 1), np.asarray(row[1:])].sum())
        count += len(row) - 1
    return math.exp(nll / count)


def cached_f32_gguf(model, tokenizer) -> Path:
    """The model's fp32 weights as GGUF f32, converted once and kept under $CODEQUANT_CACHE/bench."""
    cache = Path(os.environ.get("CODEQUANT_CACHE", Path.home() / ".cache" / "codequant")) / "bench"
    gguf = cache / f"{model.config.name_or_path.replace('/', '_') or 'model'}-f32.gguf"
    if not gguf.exists():
        with tempfile.TemporaryDirectory() as tmp:
            part = gguf.with_suffix(".partial")
            export_gguf(save_hf(model, tokenizer, Path(tmp) / "hf"), part, "f32")
            part.rename(gguf)
    return gguf


def save_hf(model, tokenizer, folder: Path | None = None) -> Path:
    """An HF folder the converter can read (the fp reference is loaded from GGUF and has none on disk)."""
    folder = Path(folder or tempfile.mkdtemp(prefix="cq-hf-"))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
