"""Output-aware start ("OA-EM"): codebooks and codes fitted to the XTX-weighted error, codebook by codebook.

The k-means start (`kmeans.py`) fits the *weights* in plain Euclidean distance; the fit that follows then has to
undo whatever that metric got wrong about the layer's outputs. This start minimises the fit's own objective
tr(E H E^T), E = diag(s) U - W, from the first step (H = XTX, damped as the fit's; s the row-norm scales, fixed
here). Codebook m is fitted to the residual that codebooks < m left (greedy, as residual k-means), in two stages:

1. **Block-diagonal weighted k-means** on the residual groups r_oj (scale-normalised). With only the diagonal
   blocks H_jj of H (each group's own g x g Gram), the error splits into one term per group,
   s_o^2 (r_oj - c)^T H_jj (r_oj - c), so k-means carries over exactly: the assignment picks the codeword with the
   least H_jj-weighted distance, and the centroid update is the weighted least-squares solution
   c_k = (sum s^2 H_jj)^-1 sum s^2 H_jj r over the groups assigned to k. It starts from k-means++ seeds.
2. **EM on the full H** (`em_iters` rounds), which adds the cross terms between groups that stage 1 leaves out:
   E-step, every group's code of codebook m by the exact coordinate descent of `beam.py` (the earlier codebooks'
   contribution held in the target); M-step, the codebook's least-squares update under the full H by block-Jacobi
   preconditioned gradient steps (preconditioner: stage 1's per-codeword Gram) with an exact line search, which
   on a quadratic objective never raises it.

Every stage can only lower the objective it works on; the k-means++ seeds and the visit orders come from
the caller's generator, so the start is deterministic.
"""

from __future__ import annotations

import torch

from codequant.quant.aqlm.assign import Assignment
from codequant.quant.aqlm.beam import beam_search
from codequant.quant.aqlm.kmeans import init_centroids

_ROWS = 1 << 22  # score entries (rows x groups x K) per chunk of the weighted assignment
_M_STEPS = 3  # preconditioned least-squares steps per M-step


def diagonal_blocks(h: torch.Tensor, group_size: int) -> torch.Tensor:
    """H_jj for every group j of consecutive inputs: [G, g, g]."""
    num_groups = h.shape[0] // group_size
    blocks = h.reshape(num_groups, group_size, num_groups, group_size)
    idx = torch.arange(num_groups, device=h.device)
    return blocks[idx, :, idx]


def weighted_assign(residual: torch.Tensor, h_blocks: torch.Tensor, books: torch.Tensor) -> torch.Tensor:
    """Codes [out, G] minimising (r_oj - c)^T H_jj (r_oj - c) per group for residual [out, G, g], books [K, g]."""
    out_features, num_groups, _ = residual.shape
    hr = torch.einsum("ojg,jgh->ojh", residual, h_blocks)  # H_jj r_oj
    chc = torch.einsum("kg,jgh,kh->jk", books, h_blocks, books)  # c^T H_jj c  [G, K]
    step = max(1, _ROWS // max(1, num_groups * books.shape[0]))
    codes = []
    for i in range(0, out_features, step):  # |r|_H^2 is the same for every codeword: left out
        codes.append((chc - 2 * (hr[i : i + step] @ books.T)).argmin(-1))
    return torch.cat(codes)


def codeword_gram(
    codes: torch.Tensor, h_blocks: torch.Tensor, weights: torch.Tensor, size: int
) -> torch.Tensor:
    """sum over the groups (o, j) using codeword k of weights_o H_jj: [K, g, g] (the block-diagonal Gram)."""
    num_groups = codes.shape[1]
    slot = (torch.arange(num_groups, device=codes.device) * size + codes).reshape(-1)  # (j, k) of every group
    counts = torch.zeros(num_groups * size, device=codes.device, dtype=weights.dtype)
    counts.index_add_(0, slot, weights[:, None].expand(-1, num_groups).reshape(-1))
    return torch.einsum("jk,jgh->kgh", counts.reshape(num_groups, size), h_blocks)


def _solve(gram: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """gram^-1 rhs per codeword, with a tiny ridge so unused codewords (zero Gram) get a zero step."""
    ridge = 1e-6 * gram.diagonal(dim1=1, dim2=2).mean().clamp_min(1e-12)
    eye = torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype)
    return torch.linalg.solve(gram + ridge * eye, rhs.unsqueeze(-1)).squeeze(-1)


def weighted_kmeans(
    residual: torch.Tensor,
    h_blocks: torch.Tensor,
    weights: torch.Tensor,
    size: int,
    iters: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 1: (books [K, g], codes [out, G]) minimising sum_o weights_o sum_j (r_oj - c)^T H_jj (r_oj - c)."""
    g = residual.shape[-1]
    books = init_centroids(residual.reshape(-1, g), size, generator, size <= 4096)
    codes = weighted_assign(residual, h_blocks, books)
    for _ in range(iters):
        gram = codeword_gram(codes, h_blocks, weights, size)
        hr = torch.einsum("ojg,jgh->ojh", residual, h_blocks) * weights[:, None, None]
        rhs = torch.zeros(size, g, device=residual.device, dtype=residual.dtype)
        rhs.index_add_(0, codes.reshape(-1), hr.reshape(-1, g))
        used = torch.bincount(codes.reshape(-1), minlength=size) > 0
        books = torch.where(used[:, None], _solve(gram, rhs), books)  # empty clusters keep their codeword
        new = weighted_assign(residual, h_blocks, books)
        if torch.equal(new, codes):
            break
        codes = new
    return books, codes


def least_squares_codebook(
    target: torch.Tensor,
    h: torch.Tensor,
    scales: torch.Tensor,
    book: torch.Tensor,
    codes: torch.Tensor,
    gram: torch.Tensor,
    steps: int = _M_STEPS,
) -> torch.Tensor:
    """M-step: book [K, g] lowering tr(E H E^T), E = diag(s) book[codes] - target, with codes [out, G] fixed.

    Preconditioned steepest descent (preconditioner `gram`, the block-diagonal part of the exact Hessian) with the
    exact step length of a quadratic, so every step lowers the objective or leaves it."""
    out_features, num_groups = codes.shape
    g = book.shape[1]
    assign = Assignment.from_codes(codes.unsqueeze(-1), book.shape[0], book.dtype)
    s = scales[:, None]
    err = assign.decode(book).reshape(out_features, -1) * s - target
    eh = err @ h
    for _ in range(steps):
        grad = assign.scatter((eh * s).reshape(-1, g))  # half the gradient in the codewords
        direction = -_solve(gram, grad)
        delta = assign.decode(direction).reshape(out_features, -1) * s
        delta_h = delta @ h
        curvature = float((delta_h * delta).sum())
        slope = float((grad * direction).sum())
        if curvature <= 0 or slope >= 0:
            break
        alpha = -slope / curvature
        book = book + alpha * direction
        err, eh = err + alpha * delta, eh + alpha * delta_h
    return book


def oa_em_init(
    weight: torch.Tensor,
    h: torch.Tensor,
    scales: torch.Tensor,
    layout: tuple[int, int, int],
    kmeans_iters: int,
    em_iters: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codebooks [M, K, g] and codes [out, G, M] for weight [out, in] under H [in, in] and fixed scales [out];
    `layout` = (M codebooks, K codewords each, g inputs per group)."""
    num_codebooks, size, group_size = layout
    out_features, in_features = weight.shape
    num_groups = in_features // group_size
    h_blocks = diagonal_blocks(h, group_size)
    weights = scales * scales
    residual = (weight / scales[:, None]).reshape(out_features, num_groups, group_size)
    books, codes = [], []
    for _ in range(num_codebooks):
        book, code = weighted_kmeans(residual, h_blocks, weights, size, kmeans_iters, generator)
        target = residual.reshape(out_features, -1) * scales[:, None]  # what this codebook should produce
        for _ in range(em_iters):
            order = torch.randperm(num_groups, generator=generator)
            code = beam_search(target, h, book.unsqueeze(0), scales, code.unsqueeze(-1), 1, order).squeeze(-1)
            gram = codeword_gram(code, h_blocks, weights, size)
            book = least_squares_codebook(target, h, scales, book, code, gram)
        residual = residual - book[code]
        books.append(book)
        codes.append(code)
    return torch.stack(books), torch.stack(codes, -1)
