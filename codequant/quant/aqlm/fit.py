"""Additive quantization of one weight matrix against its calibration inputs (AQLM's per-layer phase).

Minimises the output error on the calibration inputs, tr((W' - W) XTX (W' - W)^T), over codes, codebooks and
per-row scales:
1. scales from row norms; codebooks and codes from residual k-means on the scale-normalised groups (`init`
   "kmeans"), or from the output-aware EM start on the XTX-weighted error (`init` "oa-em", `oa_em.py`);
2. rounds of: Adam steps on codebooks and scales (codes fixed), then one beam-search pass over the codes
   (codebooks fixed), until a round improves the objective by less than `tol` (relative).
The objective is reported relative to tr(W XTX W^T), so it reads as ||(W'-W)X||^2 / ||WX||^2.

Damping: the search and the Adam steps minimise against XTX + damping * mean(diag XTX) * I. XTX from a few
thousand calibration tokens is ill-conditioned (directions the calibration never excited have ~0 weight), and the
undamped fit both overfits those rows and gets stuck in coordinate descent; a ridge fixes both. It is chosen by
held-out output error on real SmolLM2 layers (docs/aqlm.md). `history` always reports the *undamped* objective.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from codequant.quant.aqlm.assign import Assignment
from codequant.quant.aqlm.beam import beam_search, decode
from codequant.quant.aqlm.kmeans import residual_kmeans
from codequant.quant.aqlm.oa_em import oa_em_init
from codequant.quant.objective import weighted_energy
from codequant.quant.options import AQLM_INITS


@dataclass
class FitOptions:
    init: str = "kmeans"  # the start: residual k-means on the weights, or "oa-em" on the XTX-weighted error (oa_em.py)
    em_iters: int = 2  # oa-em only: E/M rounds on the full XTX per codebook
    beam_size: int = 1
    kmeans_iters: int = 8
    kmeans_sample: int | None = None  # k-means on at most this many groups per centroid; None: on every group
    adam_steps: int = 10  # per round
    lr: float = 5e-3
    betas: tuple[float, float] = (0.9, 0.999)
    tol: float = 0.01
    max_rounds: int = 6
    damping: float = (
        0.3  # ridge added to XTX, relative to its mean diagonal (chosen on held-out rows: docs/aqlm.md)
    )
    threads: int | None = None  # CPU threads while fitting; None keeps torch's setting (see `cpu_threads`)

    def __post_init__(self) -> None:
        if self.init not in AQLM_INITS:
            raise ValueError(f"init must be one of {', '.join(AQLM_INITS)}, got {self.init!r}")
        if self.em_iters < 0:
            raise ValueError(f"em_iters must be >= 0, got {self.em_iters}")


@dataclass
class FitResult:
    codes: torch.Tensor  # [out, G, M] int64
    codebooks: torch.Tensor  # [M, K, g]
    scales: torch.Tensor  # [out]
    history: list[float] = field(default_factory=list)  # relative objective after init and after each round


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's CPU threads. The fit is thousands of small ops; on a busy machine, 2+ OpenMP
    threads wait on each other and run them up to 50x slower than one thread (measured on the 2-core box)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _normalised_xtx(xtx: torch.Tensor, device: torch.device) -> torch.Tensor:
    h = xtx.to(device=device, dtype=torch.float32)
    return h / h.diagonal().mean().clamp_min(1e-12)  # the objective's scale is irrelevant; keep it near 1


def loss_and_grads(
    weight: torch.Tensor,
    h: torch.Tensor,
    assign: Assignment,
    flat_books: torch.Tensor,
    base: torch.Tensor,
    factor: torch.Tensor,
    norm: float,
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Objective tr(E H E^T) / norm with E = diag(base * factor) U - W, U = assign.decode(flat_books), and its
    gradients in flat_books [M*K, g] and factor [out].

    Written out rather than taken by autograd (3-4x faster on CPU): with G = 2 E H / norm,
    d/d factor_o = base_o <G_o, U_o> and d/d codeword = sum of s_o G_(o,j) over the groups (o, j) using it.
    """
    g = flat_books.shape[1]
    s = base * factor
    u = assign.decode(flat_books).reshape(weight.shape)  # [out, in], unscaled
    err = u * s[:, None] - weight
    eh = err @ h
    loss = float((eh * err).sum()) / norm
    grad = eh * (2 / norm)
    g_factor = (grad * u).sum(1) * base
    g_books = assign.scatter((grad * s[:, None]).reshape(-1, g))
    return loss, g_books, g_factor


def _adam(
    weight,
    h,
    books,
    scales,
    codes,
    steps: int,
    lr: float,
    norm: float,
    betas: tuple[float, float] = (0.9, 0.999),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on codebooks and (relative) scales with codes fixed; returns the best pair seen (the start counts)."""
    m, size, g = books.shape
    assign = Assignment.from_codes(codes, size, books.dtype)  # codes are fixed here: decode by sparse matmuls
    base = scales.clone()
    params = [books.reshape(m * size, g).clone(), torch.ones_like(base)]  # scales relative to their start
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    (beta1, beta2), eps = betas, 1e-8
    best = (float("inf"), params[0].clone(), base.clone())
    for step in range(steps + 1):
        loss, g_books, g_factor = loss_and_grads(weight, h, assign, params[0], base, params[1], norm)
        if loss < best[0]:
            best = (loss, params[0].clone(), base * params[1])
        if step == steps:
            break
        for p, gr, (m1, m2) in zip(params, (g_books, g_factor), moments, strict=True):
            m1.mul_(beta1).add_(gr, alpha=1 - beta1)
            m2.mul_(beta2).addcmul_(gr, gr, value=1 - beta2)
            denom = (m2 / (1 - beta2 ** (step + 1))).sqrt_().add_(eps)
            p.addcdiv_(m1, denom, value=-lr / (1 - beta1 ** (step + 1)))
    return best[1].reshape(m, size, g), best[2]


def fit_weight(
    weight: torch.Tensor,
    xtx: torch.Tensor,
    num_codebooks: int,
    nbits: int,
    group_size: int,
    options: FitOptions | None = None,
    generator: torch.Generator | None = None,
) -> FitResult:
    """Quantize weight [out, in] (any float dtype/device) given XTX [in, in]."""
    opts = options or FitOptions()
    with cpu_threads(opts.threads if weight.device.type == "cpu" else None):
        return _fit(weight, xtx, num_codebooks, nbits, group_size, opts, generator)


def _fit(weight, xtx, num_codebooks, nbits, group_size, opts: FitOptions, generator) -> FitResult:
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    w = weight.detach().float()
    out_features, in_features = w.shape
    num_groups = in_features // group_size
    h = _normalised_xtx(xtx, w.device)  # mean diagonal 1, so `damping` is relative to it
    h_fit = h + opts.damping * torch.eye(in_features, device=w.device) if opts.damping > 0 else h
    norm = float(weighted_energy(w, h).clamp_min(1e-30))
    norm_fit = float(weighted_energy(w, h_fit).clamp_min(1e-30))

    scales = w.norm(dim=1) / in_features**0.5
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    if opts.init == "oa-em":
        books, codes = oa_em_init(
            w, h_fit, scales, (num_codebooks, 2**nbits, group_size), opts.kmeans_iters, opts.em_iters, gen
        )
    else:
        groups = (w / scales[:, None]).reshape(-1, group_size)
        sample = opts.kmeans_sample if opts.kmeans_sample else None
        books, codes = residual_kmeans(groups, num_codebooks, 2**nbits, opts.kmeans_iters, gen, sample)
        codes = codes.reshape(out_features, num_groups, num_codebooks)

    def rel(books, scales, codes, h, norm) -> float:
        return float(weighted_energy(decode(codes, books) * scales[:, None] - w, h)) / norm

    # Both phases can only lower the damped objective (Adam keeps its best point, the search keeps the current
    # code as a candidate), so the last round is the best one; the tolerance is on that objective too.
    history = [rel(books, scales, codes, h, norm)]
    fitted = [rel(books, scales, codes, h_fit, norm_fit)]
    for _ in range(opts.max_rounds):
        books, scales = _adam(w, h_fit, books, scales, codes, opts.adam_steps, opts.lr, norm_fit, opts.betas)
        order = torch.randperm(num_groups, generator=gen)
        codes = beam_search(w, h_fit, books, scales, codes, opts.beam_size, order)
        history.append(rel(books, scales, codes, h, norm))
        fitted.append(rel(books, scales, codes, h_fit, norm_fit))
        if fitted[-2] - fitted[-1] < opts.tol * fitted[-2]:
            break
    return FitResult(codes=codes, codebooks=books.detach(), scales=scales.detach(), history=history)
