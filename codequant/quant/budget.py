"""What a quantization run needs, in host memory, GPU memory, disk and arithmetic, from the model's shape alone.

Why: a 34B quantization that runs out of host memory after six hours of calibration is the failure this prevents.
`quant_needs` is the same memory model the walk itself uses to place its activations (two full-calibration
buffers in the model's dtype: host, GPU or disk, codequant.quant.activations), so the plan and the run agree on
where the activations go. The terms are listed in docs/scale.md; bench/scale_proxy.py checks the host figure
against the measured peak RSS of a 7B-shaped model.
"""

from __future__ import annotations

from dataclasses import dataclass

from codequant.models.shapes import DTYPE_BYTES, ModelShape
from codequant.quant.activations import GIB

RUNTIME_HOST_BYTES = GIB // 2  # Python, torch and transformers imported, before any model or activation
FWD_PASSES = {
    "rtn": 2.0,
    "gptq": 3.5,
    "aqlm": 3.0,
}  # passes over the calibration per block (targets, XTX, propagate)
TUNE_PASSES = {
    "fast": 2 * 3 + 4,
    "reference": 10 * 3 + 12,
}  # AQLM block tuning: epochs x (fwd + bwd) + selection passes
# AQLM fit, per effort: k-means iterations and beam-search rounds x beam (codequant.quant.aqlm.fit/effort; the
# reference stops at 1% improvement, ~20 rounds in practice); each scans every codeword for every group.
FIT_SCANS = {"fast": (8, 6 * 1), "reference": (100, 20 * 1)}
TUNE_BATCH = 8  # AQLM block tuning's rows per step (TuneOptions.batch_size)


@dataclass(frozen=True)
class QuantJob:
    """One quantization as the plan sees it."""

    method: str  # aqlm | gptq | rtn
    bits: int
    rows: int  # calibration rows (training)
    val_rows: int  # held-out rows
    seq_len: int
    dtype: str  # the weights' and activations' dtype during the walk
    batch_size: int = 8
    gpu: bool = True  # blocks quantized on a GPU (the model stays in host memory)
    max_host_bytes: int | None = None  # the run's host budget (runner.max_host_memory_gb)
    gpu_bytes: int = 80 * 10**9  # memory of the step's GPU
    placement: str = "auto"
    codebooks: int = 2  # AQLM M, B (the preset's configuration for `bits`)
    codebook_bits: int = 8
    effort: str = "fast"  # AQLM fit/tuning effort (codequant.quant.aqlm.effort): fast | reference


@dataclass(frozen=True)
class QuantNeeds:
    host_bytes: int
    gpu_bytes: int
    disk_bytes: int
    placement: str  # where the activation buffers go: host | device | disk
    activation_bytes: int  # both buffers, train + held-out rows
    flops_walk: float  # block forwards/backwards over the calibration, all blocks
    codeword_ops: float  # AQLM: flops of the k-means and beam-search distance scans, all blocks; 0 otherwise
    flops_fit: float  # GPTQ/RTN: the column solves, all blocks


def aqlm_scan_flops(weights: int, codebooks: int, codebook_bits: int, effort: str = "fast") -> float:
    """Flops of AQLM's distance scans over `weights`: k-means per codebook, then per round a beam search that tries
    every codeword of every codebook against each group (the reference's cost grows with 2^B, hence 1x16's day)."""
    kmeans, rounds = FIT_SCANS.get(effort, FIT_SCANS["fast"])
    return 2.0 * weights * 2**codebook_bits * (codebooks * kmeans + rounds * codebooks**2)


def activation_bytes(shape: ModelShape, job: QuantJob) -> int:
    """The walk's two full-calibration buffers (inputs and targets) for training and held-out rows."""
    return 2 * (job.rows + job.val_rows) * job.seq_len * shape.hidden * DTYPE_BYTES[job.dtype]


def place(shape: ModelShape, job: QuantJob, need: int, model: int) -> str:
    """The placement the walk's `choose_placement` makes for these numbers (same rule, no GPU query)."""
    if job.placement != "auto":
        return job.placement
    if job.max_host_bytes is None or model + RUNTIME_HOST_BYTES + need <= job.max_host_bytes:
        return "host"
    if job.gpu and need <= job.gpu_bytes // 2:
        return "device"
    return "disk"


def quant_needs(shape: ModelShape, job: QuantJob) -> QuantNeeds:
    """Peak host and GPU memory, disk and work of one quantization (terms in docs/scale.md)."""
    b = DTYPE_BYTES[job.dtype]
    h, inter = shape.hidden, shape.intermediate
    model = shape.params * b
    acts = activation_bytes(shape, job)
    placement = place(shape, job, acts, model)
    every_group = (3 * h * h + inter * inter) * 8  # XTX in fp64 on the host: q/k/v, o, gate/up, down inputs
    train_xtx = {"aqlm": every_group, "gptq": max(h, inter) ** 2 * 8, "rtn": 0}[
        job.method
    ]  # one pass vs one group
    xtx = train_xtx + (
        every_group if job.val_rows else 0
    )  # held-out rows: every group's XTX, for their errors
    # One batch through the block (SDPA attention: no seq_len^2 scores), and for AQLM's block tuning the
    # activations a backward keeps, fp32 grads and Adam moments of the block, and one linear's fit in fp32.
    batch = job.batch_size * job.seq_len * (4 * h + 3 * inter) * b
    backward = TUNE_BATCH * job.seq_len * (10 * h + 5 * inter) * b if job.method == "aqlm" else 0
    block = shape.block_params * b
    tuning = shape.block_params * 4 * 3 if job.method == "aqlm" else 0
    widest = max(h, inter)
    # GPTQ (quant/gptq.py) beside the group's XTX: its fp64 copy of H plus two N x N during each Cholesky step, then
    # the fp32 inverse factor; and two fp32 copies of the widest weight.
    gptq_fit = widest**2 * (3 * 8 + 4) + 2 * h * inter * 4
    fit = {"aqlm": 4 * h * inter * 4, "gptq": gptq_fit, "rtn": 2 * h * inter * 4}[job.method]
    work = (
        (block if job.gpu else 0) + batch + backward + tuning + fit
    )  # on the CPU the block is the model's own
    host = RUNTIME_HOST_BYTES + model + xtx + (acts if placement == "host" else 0) + (0 if job.gpu else work)
    gpu = (work + (acts if placement == "device" else 0)) if job.gpu else 0
    quantized = shape.layers * shape.block_params
    embeddings = shape.params - quantized
    disk = model + 3 * (embeddings * b + quantized * job.bits // 8) + (acts if placement == "disk" else 0)
    total_tokens = (job.rows + job.val_rows) * job.seq_len
    per_token = 2 * shape.block_params + 4 * job.seq_len * h  # weights + causal attention (QK^T, AV)
    passes = FWD_PASSES[job.method] + (
        TUNE_PASSES.get(job.effort, TUNE_PASSES["fast"]) if job.method == "aqlm" else 0
    )
    walk = shape.layers * passes * total_tokens * per_token
    codeword = (
        aqlm_scan_flops(quantized, job.codebooks, job.codebook_bits, job.effort)
        if job.method == "aqlm"
        else 0.0
    )
    fit = (
        0.0
        if job.method == "aqlm"
        else float(shape.layers * (4 * 2 * h * h * h + 3 * 2 * h * h * inter + 2 * inter * inter * h))
    )
    return QuantNeeds(
        host_bytes=int(host),
        gpu_bytes=int(gpu),
        disk_bytes=int(disk),
        placement=placement,
        activation_bytes=acts,
        flops_walk=float(walk),
        codeword_ops=codeword,
        flops_fit=fit,
    )
