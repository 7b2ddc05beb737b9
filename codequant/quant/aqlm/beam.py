"""Beam search over codes with the exact XTX-weighted objective.

For one row with error `e = s * sum_m C_m[codes] - w` the objective is `e H e^T` (H = XTX). Changing the code of
codebook m in group j by `d = s (v - u)` (new codeword v, old u) on the group's inputs J changes it by exactly

    2 d . (e H)_J + d^T H_JJ d

so keeping `r = e H` per row (and updating it by `d H_J,:` after each accepted change) makes every candidate's
score exact, cross terms with all other groups included. Rows are independent, so all rows (and all beam
hypotheses of each row) are searched at once; groups and codebooks are visited one at a time, every one of the
2^B codewords scored by two small batched matmuls. The current code is always a candidate, so the best
hypothesis never gets worse: the objective falls monotonically.

Speed (the search is most of the fit): the inputs are permuted so that groups are visited in memory order, and
`r` is updated lazily by blocks of groups, as GPTQ does: inside a block only the block's own columns of `r` are
kept current (small matmuls), and the block's accumulated change updates all of `r` with one matmul at its end.
The result is the same search, with an [rows, in] pass per block instead of per visit.
"""

from __future__ import annotations

import torch

from codequant.quant.objective import weighted_energy

_CHUNK = 1 << 23  # score entries (rows x beam x 2^B) per row chunk
_BLOCK = 128  # inputs per lazy update block of r


@torch.no_grad()
def beam_search(
    weight: torch.Tensor,
    xtx: torch.Tensor,
    codebooks: torch.Tensor,
    scales: torch.Tensor,
    codes: torch.Tensor,
    beam_size: int = 1,
    order: torch.Tensor | None = None,
) -> torch.Tensor:
    """Better codes [out, G, M] (int64) for weight [out, in] given codebooks [M, K, g] and scales [out].

    `order`: the groups to visit, in that order (default all, 0..G-1); groups it leaves out keep their codes.
    """
    out_features, num_groups, m = codes.shape
    size = codebooks.shape[1]
    rows = max(1, _CHUNK // (beam_size * size))
    order = torch.arange(num_groups) if order is None else order
    parts = [
        _search_rows(
            weight[i : i + rows], xtx, codebooks, scales[i : i + rows], codes[i : i + rows], beam_size, order
        )
        for i in range(0, out_features, rows)
    ]
    return torch.cat(parts)


def _search_rows(w, h, books, s, codes, k, order) -> torch.Tensor:
    n, num_groups, m = codes.shape
    size, g = books.shape[1], books.shape[2]
    dev = w.device
    # visit order -> memory order: column block j of the permuted problem is group perm[j]; `order` may name only
    # some groups (the others keep their codes but still count in the objective), they go last and are not visited
    order = order.to(dev)
    visited = int(order.numel())
    rest = torch.ones(num_groups, dtype=torch.bool, device=dev)
    rest[order] = False
    perm = torch.cat([order, rest.nonzero().flatten()])
    cols = (perm[:, None] * g + torch.arange(g, device=dev)).reshape(-1)
    w, h, codes = w[:, cols], h[cols][:, cols], codes[:, perm]
    s = s.reshape(n, 1, 1)
    # hypotheses: codes q [n, k, G, M] and r = e H [n, k, in] with e = W' - W; only hypothesis 0 is alive at first
    e = decode(codes, books) * s.reshape(n, 1) - w
    r = (e @ h).unsqueeze(1)
    loss = (e.unsqueeze(1) * r).sum(-1)  # [n, 1]
    del e
    q = codes.unsqueeze(1).clone()
    if k > 1:
        q, r = q.expand(n, k, num_groups, m).clone(), r.expand(n, k, -1).clone()
        loss = torch.cat([loss, torch.full((n, k - 1), float("inf"), device=dev, dtype=loss.dtype)], 1)
    kk = q.shape[1]
    rows = torch.arange(n, device=dev)[:, None]
    # Score of codeword v for the visited (group, codebook), up to a per-row constant:
    #   2 s v.(r_j - s H_jj u) + s^2 v H_jj v  =  [2 s a, s^2] . [v, vHv],  a = r_j - s H_jj u.
    # The current codeword u scores exactly the current loss, so "score(v) - score(u)" is the change of the loss.
    x = torch.empty(n, kk, g + 1, device=dev, dtype=w.dtype)
    x[..., g] = (s * s).reshape(n, 1)
    xa, two_s = x[..., :g], 2 * s
    per_block = max(1, _BLOCK // g)
    for b0 in range(0, visited, per_block):
        b1 = min(visited, b0 + per_block)
        bcols = slice(b0 * g, b1 * g)
        h_b = h[bcols]  # [Bg, in]
        h_diag = h_b.view(b1 - b0, g, -1, g)[
            torch.arange(b1 - b0), :, torch.arange(b0, b1)
        ]  # [Bj, g, g] = H_jj
        vhv = torch.einsum("mkg,jgh,mkh->jmk", books, h_diag, books)  # [Bj, M, K]
        rhs = torch.cat([books.transpose(1, 2).unsqueeze(0).expand(b1 - b0, -1, -1, -1), vhv.unsqueeze(2)], 2)
        r_b = r[:, :, bcols].clone()  # the block's columns of r, kept current inside the block
        d_b = torch.zeros_like(r_b)  # accumulated change of e on the block's columns
        for j in range(b0, b1):
            lc = slice((j - b0) * g, (j - b0 + 1) * g)
            h_jj, h_jb = h_diag[j - b0], h_b[lc, bcols]
            for c in range(m):
                book = books[c]  # [K, g]
                cur = q[:, :, j, c]  # [n, k]
                u = book[cur]  # [n, k, g]
                torch.mul(torch.addcmul(r_b[:, :, lc], s, u @ h_jj, value=-1), two_s, out=xa)
                total = x @ rhs[j - b0, c]  # [n, k, K]
                if k == 1:
                    code = total.argmin(-1)
                else:
                    gain = total - total.gather(-1, cur.unsqueeze(-1))
                    loss, pick = torch.topk(
                        (gain + loss.unsqueeze(-1)).reshape(n, -1), k, dim=1, largest=False
                    )
                    parent, code = pick // size, pick % size
                    q, r, u, r_b, d_b = (
                        q[rows, parent],
                        r[rows, parent],
                        u[rows, parent],
                        r_b[rows, parent],
                        d_b[rows, parent],
                    )
                q[:, :, j, c] = code
                delta = ((book[code] - u) * s).reshape(n * kk, g)
                r_b.view(n * kk, -1).addmm_(delta, h_jb)
                d_b.view(n * kk, -1)[:, lc] += delta
        r.view(n * kk, -1).addmm_(d_b.view(n * kk, -1), h_b)
    out = torch.empty_like(codes)
    out[:, perm] = q[:, 0]
    return out


def decode(codes: torch.Tensor, books: torch.Tensor) -> torch.Tensor:
    """sum_m books[m, codes[..., m]] as [n, G*g] (unscaled)."""
    n, num_groups, m = codes.shape
    parts = books[torch.arange(m, device=codes.device), codes]  # [n, G, M, g]
    return parts.sum(2).reshape(n, -1)


@torch.no_grad()
def objective(
    weight: torch.Tensor,
    xtx: torch.Tensor,
    codebooks: torch.Tensor,
    scales: torch.Tensor,
    codes: torch.Tensor,
) -> float:
    """tr((W' - W) H (W' - W)^T) for codebooks [M, K, g]."""
    return float(weighted_energy(decode(codes, codebooks) * scales.reshape(-1, 1) - weight, xtx))
