"""Where `codequant finetune`'s time goes, on a reduced run of the real model (SmolLM2-135M, 2-bit AQLM shapes).

    PYTHONPATH=. .venv/bin/python bench/finetune_profile.py --steps 3 --out bench/results/finetune_profile.json

Builds the student by putting an `AqlmLinear` (2x8 g8, random codes and codebooks: the cost of a step does not
depend on their values) in place of every linear of the decoder, computes the teacher's top-k targets for the
batches, then times each phase of the training step as `codequant.finetune.trainer` runs it (forward, loss,
backward, gradient copy and clipping, Adam) and the V-step of PV-tuning (`codequant.finetune.pv`), and prints
the top operators of one step from torch.profiler. Prints (and writes with --out) JSON with the machine.
On a machine shared by many jobs the two OpenMP threads mostly measure contention (bench/finetune_parts.py times
the parts on one thread instead).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import provenance  # noqa: E402  (bench/)

from codequant.finetune.loss import topk_kl  # noqa: E402
from codequant.finetune.params import select_trainable  # noqa: E402
from codequant.finetune.pv import PVCodeOptimizer, attach_probes, detach_probes  # noqa: E402
from codequant.finetune.teacher import compute_teacher_targets  # noqa: E402
from codequant.quant.aqlm import AqlmLinear  # noqa: E402
from codequant.quant.master import MasterWeights  # noqa: E402


def aqlm_student(model: torch.nn.Module, m: int = 2, nbits: int = 8, g: int = 8, seed: int = 0) -> int:
    """Replace every decoder linear of `model` by a random AqlmLinear of the same shape; returns how many."""
    gen = torch.Generator().manual_seed(seed)
    count = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear) and "lm_head" not in f"{name}.{child_name}":
                out, inp = child.weight.shape
                codes = torch.randint(0, 2**nbits, (out, inp // g, m), generator=gen)
                books = torch.randn(m, 2**nbits, 1, g, generator=gen) * 0.01
                scales = child.weight.detach().float().norm(dim=1) / inp**0.5 * 50
                setattr(module, child_name, AqlmLinear(codes, books, scales, bias=child.bias))
                count += 1
    return count


def timed(fn, times: dict, key: str):
    start = time.perf_counter()
    out = fn()
    times[key] = times.get(key, 0.0) + time.perf_counter() - start
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--top-k", type=int, default=64)
    p.add_argument("--pv", action="store_true", help="also time the V-step (probes + code re-assignment)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)

    from codequant.models import load

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loaded = load(args.model, dtype="float32")
    model = loaded.model
    n_tokens = args.batch_size * args.seq_len
    tokens = torch.randint(0, model.config.vocab_size, (args.steps * args.batch_size, args.seq_len))
    times: dict[str, float] = {}
    targets = timed(
        lambda: compute_teacher_targets(
            model, tokens, top_k=args.top_k, batch_size=args.batch_size, progress=False
        ),
        times,
        "teacher_targets",
    )
    replaced = aqlm_student(model)
    params = select_trainable(model)
    masters = MasterWeights(params)
    optimizer = torch.optim.Adam(masters.parameters(), lr=1e-4)
    pv = None
    if args.pv:
        pv = PVCodeOptimizer(attach_probes(model), lr=1e-3, tau=0.01)
    model.eval()

    def step(i: int) -> float:
        sl = slice(i * args.batch_size, (i + 1) * args.batch_size)
        logits = timed(lambda: model(input_ids=tokens[sl], use_cache=False).logits, times, "forward")
        loss = timed(lambda: topk_kl(logits, targets.ids[sl], targets.logprobs[sl]), times, "loss")
        optimizer.zero_grad(set_to_none=True)
        timed(loss.backward, times, "backward")
        timed(
            lambda: (masters.grads_to_masters(), torch.nn.utils.clip_grad_norm_(masters.parameters(), 1.0)),
            times,
            "grad_copy_clip",
        )
        timed(optimizer.step, times, "adam")
        timed(masters.masters_to_model, times, "masters_to_model")
        if pv is not None:
            timed(pv.step, times, "v_step")
        return float(loss.detach())

    step(0)  # warm-up (allocator, decode caches), not counted
    times = {"teacher_targets": times["teacher_targets"]}
    started = time.perf_counter()
    for i in range(1, args.steps):
        step(i)
    step_seconds = (time.perf_counter() - started) / max(args.steps - 1, 1)
    phases = dict(times)  # the profiled step below is not counted in the phases
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(0)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    print(table)
    if pv is not None:
        detach_probes(model)
    timed_steps = max(args.steps - 1, 1)
    per_step = {k: v / timed_steps for k, v in phases.items() if k != "teacher_targets"}
    result = {
        "bench": "finetune_profile",
        "model": args.model,
        "aqlm_linears": replaced,
        "steps_timed": timed_steps,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "top_k": args.top_k,
        "pv": args.pv,
        "tokens_per_step": n_tokens,
        "seconds_per_step": step_seconds,
        "tokens_per_second": n_tokens / step_seconds,
        "phase_seconds_per_step": per_step,
        "phase_share": {k: v / step_seconds for k, v in per_step.items()},
        "teacher_seconds_per_step": times["teacher_targets"] / args.steps,
        "top_ops": [line for line in table.splitlines()[3:18]],
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "load_avg": os.getloadavg(),
        },
        "commit": provenance.commit(),
    }
    print(json.dumps(result, indent=2))
    provenance.write_result(result, args.out)


if __name__ == "__main__":
    main()
