"""A quantization under a hard memory cap: the walk's two activation buffers fit where the old walk's fp32
copies (inputs, targets, new outputs, and two error temporaries: 5.4 buffers measured) did not.

The cap is a memory cgroup (v2 `memory.max`, or v1 `memory.limit_in_bytes`) around a child process; RLIMIT_AS
cannot be used, since torch reserves far more address space than it touches. The child quantizes a small Llama
whose calibration activations dominate its memory (one buffer: 256 MiB) with RTN-4, and saves its codes; the
capped run must give the codes of an uncapped one. With the walk of before this change (three fp32 buffers plus
temporaries) the same child is killed by the cap (docs/scale.md records that run).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CAP_BYTES = (
    1250 * 2**20
)  # measured: the new walk peaks at ~0.9 GiB here, the old one at 2.0 GB (docs/scale.md)
ROWS, SEQ, HIDDEN = 512, 1024, 128  # one buffer: 512 * 1024 * 128 * 4 bytes = 256 MiB

CHILD = f"""
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
from codequant.quant.base import QuantConfig, QuantizedLinear
from codequant.quant.pipeline import WalkOptions, quantize_model
from codequant.quant.registry import make_quantizer
torch.set_num_threads(1)
torch.manual_seed(0)
config = LlamaConfig(vocab_size=384, hidden_size={HIDDEN}, intermediate_size=256, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings={SEQ})
model = LlamaForCausalLM(config).eval()
tokens = torch.randint(3, 384, ({ROWS}, {SEQ}), generator=torch.Generator().manual_seed(1))
quantize_model(model, tokens, make_quantizer(QuantConfig("rtn", bits=4, group_size=32)), WalkOptions(batch_size=16), progress=False)
codes = {{f"{{n}}.{{b}}": t for n, m in model.named_modules() if isinstance(m, QuantizedLinear)
         for b, t in m.named_buffers() if not t.is_floating_point()}}
torch.save(codes, sys.argv[1])
"""


def _own_memory_cgroup() -> tuple[Path, str] | None:
    """(this process's memory cgroup folder, "v1" | "v2") where a child cgroup with a limit can be made."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "memory":
            folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            if (folder / "memory.limit_in_bytes").exists():
                return folder, "v1"
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hier, controllers, path = line.split(":", 2)
        if hier == "0" and controllers == "":
            folder = Path("/sys/fs/cgroup") / path.lstrip("/")
            ctl = folder / "cgroup.controllers"
            if ctl.exists() and "memory" in ctl.read_text().split():
                return folder, "v2"
    return None


def _make_capped_cgroup(limit: int) -> tuple[Path, str]:
    if os.geteuid() != 0:
        pytest.skip("a memory cgroup needs root")
    found = _own_memory_cgroup()
    if found is None:
        pytest.skip("no writable memory cgroup (v1 memory hierarchy or v2 with the memory controller)")
    parent, version = found
    child = parent / f"codequant-cap-{uuid.uuid4().hex[:8]}"
    try:
        child.mkdir()
        if version == "v1":
            (child / "memory.limit_in_bytes").write_text(str(limit))
            if (child / "memory.memsw.limit_in_bytes").exists():
                (child / "memory.memsw.limit_in_bytes").write_text(str(limit))
        else:
            (child / "memory.max").write_text(str(limit))
            if (child / "memory.swap.max").exists():
                (child / "memory.swap.max").write_text("0")
    except OSError as exc:
        if child.exists():
            child.rmdir()
        pytest.skip(f"cannot make a memory cgroup under {parent}: {exc}")
    return child, version


def run_child(out: Path, cgroup: Path | None) -> subprocess.CompletedProcess:
    def join() -> None:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    env = {**os.environ, "PYTHONPATH": os.environ.get("CAP_TEST_SOURCE", str(ROOT)), "OMP_NUM_THREADS": "1"}
    # cwd outside the checkout: `python -c` puts the cwd first on sys.path, before PYTHONPATH's source
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(out)],
        preexec_fn=join,
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
        cwd=out.parent,
    )


@pytest.mark.slow
@pytest.mark.ci
def test_quantization_fits_a_memory_cap_the_old_walk_exceeded(tmp_path):
    cgroup, version = _make_capped_cgroup(CAP_BYTES)
    try:
        capped = run_child(tmp_path / "capped.pt", cgroup)
        peak_file = cgroup / ("memory.max_usage_in_bytes" if version == "v1" else "memory.peak")
        peak = int(peak_file.read_text()) if peak_file.exists() else None
    finally:
        cgroup.rmdir()
    assert capped.returncode == 0, (
        f"killed or failed under a {CAP_BYTES >> 20} MiB cap (rc {capped.returncode}, "
        f"peak {peak}): {capped.stderr[-2000:]}"
    )
    free = run_child(tmp_path / "free.pt", None)
    assert free.returncode == 0, free.stderr[-2000:]
    a, b = torch.load(tmp_path / "capped.pt"), torch.load(tmp_path / "free.pt")
    assert a.keys() == b.keys() and len(a) == 14  # 7 linears x 2 blocks
    assert all(torch.equal(a[k], b[k]) for k in a)
    print(f"peak cgroup memory under the {CAP_BYTES >> 20} MiB cap: {peak and peak >> 20} MiB")
