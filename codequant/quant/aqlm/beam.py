"""Beam search over codes with the exact XTX-weighted objective.

For one row with error `e = s * sum_m C_m[codes] - w` the objective is `e H e^T` (H = XTX). Changing the code of
codebook m in group j by `d = s (v - u)` (new codeword v, old u) on the group's inputs J changes it by exactly

    2 d . (e H)_J + d^T H_JJ d

so keeping `r = e H` per row (and updating it by `d H_J,:` after each accepted change) makes every candidate's
score exact, cross terms with all other groups included. Rows are independent, so all rows (and all beam
hypotheses of each row) are searched at once; groups and codebooks are visited one at a time, every one of the
2^B codewords scored by two small batched matmuls. The current code is always a candidate, so the best
hypothesis never gets worse: the objective falls monotonically.
"""

from __future__ import annotations

import torch

_CHUNK = 1 << 23  # score entries (rows x beam x 2^B) per row chunk


@torch.no_grad()
def beam_search(weight: torch.Tensor, xtx: torch.Tensor, codebooks: torch.Tensor, scales: torch.Tensor,
                codes: torch.Tensor, beam_size: int = 1, order: torch.Tensor | None = None) -> torch.Tensor:
    """Better codes [out, G, M] (int64) for weight [out, in] given codebooks [M, K, g] and scales [out].

    `order`: the order groups are visited in (default 0..G-1).
    """
    out_features, num_groups, m = codes.shape
    size = codebooks.shape[1]
    rows = max(1, _CHUNK // (beam_size * size))
    order = torch.arange(num_groups) if order is None else order
    parts = [
        _search_rows(weight[i : i + rows], xtx, codebooks, scales[i : i + rows], codes[i : i + rows], beam_size, order)
        for i in range(0, out_features, rows)
    ]
    return torch.cat(parts)


def _search_rows(w, h, books, s, codes, k, order) -> torch.Tensor:
    n, num_groups, m = codes.shape
    size, g = books.shape[1], books.shape[2]
    dev = w.device
    s = s.reshape(n, 1, 1)
    # hypotheses: codes q [n, k, G, M] and r = e H [n, k, in] with e = W' - W; only hypothesis 0 is alive at first
    e = (_decode(codes, books) * s.reshape(n, 1) - w).unsqueeze(1)
    r = e @ h
    loss = (e * r).sum(-1)  # [n, 1]
    del e
    q = codes.unsqueeze(1).clone()
    if k > 1:
        q, r = q.expand(n, k, num_groups, m).clone(), r.expand(n, k, -1).clone()
        loss = torch.cat([loss, torch.full((n, k - 1), float("inf"), device=dev, dtype=loss.dtype)], 1)
    rows = torch.arange(n, device=dev)[:, None]
    ones = torch.ones(size, 1, device=dev, dtype=w.dtype)
    s2 = (s * s).expand(n, q.shape[1], 1)
    for j in order.tolist():
        cols = slice(j * g, (j + 1) * g)
        h_jj, h_j = h[cols, cols], h[cols]
        for c in range(m):
            book = books[c]  # [K, g]
            vhv = ((book @ h_jj) * book).sum(-1, keepdim=True)  # [K, 1]
            u = book[q[:, :, j, c]]  # [n, k, g] current codewords
            r_j = r[:, :, cols]
            uh = u @ h_jj
            # new loss for codeword v = loss + 2s(v - u).r_j + s^2 (vHv - 2 v.Hu + uHu), as one matmul:
            # [2s r_j - 2s^2 Hu, s^2, loss - 2s u.r_j + s^2 uHu] . [v, vHv, 1]
            const = loss.unsqueeze(-1) + s * ((s * uh - 2 * r_j) * u).sum(-1, keepdim=True)
            coef = torch.cat([2 * s * (r_j - s * uh), s2, const], -1)
            total = (coef @ torch.cat([book, vhv, ones], 1).T).reshape(n, -1)
            if k == 1:
                loss, pick = total.min(1, keepdim=True)
            else:
                loss, pick = torch.topk(total, k, dim=1, largest=False, sorted=True)
            parent, code = pick // size, pick % size
            if k > 1:
                q, r, u = q[rows, parent], r[rows, parent], u[rows, parent]
            q[:, :, j, c] = code
            r += (s * (book[code] - u)) @ h_j
    return q[:, 0]


def _decode(codes: torch.Tensor, books: torch.Tensor) -> torch.Tensor:
    """sum_m books[m, codes[..., m]] as [n, G*g] (unscaled)."""
    n, num_groups, m = codes.shape
    parts = books[torch.arange(m, device=codes.device), codes]  # [n, G, M, g]
    return parts.sum(2).reshape(n, -1)


@torch.no_grad()
def objective(weight: torch.Tensor, xtx: torch.Tensor, codebooks: torch.Tensor, scales: torch.Tensor,
              codes: torch.Tensor) -> float:
    """tr((W' - W) H (W' - W)^T) for codebooks [M, K, g]."""
    e = _decode(codes, codebooks) * scales.reshape(-1, 1) - weight
    return float(((e @ xtx) * e).sum())
