"""k-means init, exact beam search and the per-layer fit: monotone, exact, better with more codebooks, seeded; the
hand-written codebook/scale gradient against autograd, and Adam (codes fixed) lowering the objective."""

from __future__ import annotations

import itertools

import pytest
import torch

from codequant.quant.aqlm.assign import Assignment
from codequant.quant.aqlm.beam import beam_search, objective
from codequant.quant.aqlm.fit import FitOptions, _adam, fit_weight, loss_and_grads
from codequant.quant.aqlm.kmeans import kmeans, residual_kmeans


def problem(out=12, inn=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inn, generator=g)
    x = torch.randn(200, inn, generator=g) @ (torch.eye(inn) + 0.5 * torch.randn(inn, inn, generator=g))
    return w, x.T @ x


def test_kmeans_finds_well_separated_clusters():
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = centres.repeat_interleave(50, 0) + 0.1 * torch.randn(150, 2, generator=g)
    found, assign = kmeans(points, 3, 10, g)
    assert torch.cdist(found, centres).min(0).values.max() < 0.1
    assert len(set(assign.tolist())) == 3


def test_residual_kmeans_each_codebook_lowers_the_error():
    g = torch.Generator().manual_seed(0)
    groups = torch.randn(500, 4, generator=g)
    books, codes = residual_kmeans(groups, 3, 8, 5, g)
    errs = []
    for m in range(4):
        approx = sum((books[i][codes[:, i]] for i in range(m)), torch.zeros_like(groups))
        errs.append(float(((groups - approx) ** 2).sum()))
    assert errs[0] > errs[1] > errs[2] > errs[3]


@pytest.mark.parametrize("beam", [1, 3])
def test_beam_search_lowers_the_objective_monotonically(beam):
    w, h = problem()
    g = torch.Generator().manual_seed(2)
    books = torch.randn(2, 4, 4, generator=g)
    scales = w.norm(dim=1) / 4
    codes = torch.randint(4, (12, 4, 2), generator=g)
    values = [objective(w, h, books, scales, codes)]
    for _ in range(4):
        codes = beam_search(w, h, books, scales, codes, beam)
        values.append(objective(w, h, books, scales, codes))
    assert all(b <= a + 1e-4 * abs(a) for a, b in itertools.pairwise(values))
    assert values[-1] < 0.8 * values[0]


def test_beam_search_finds_the_exact_optimum_on_a_brute_forceable_case():
    # M=2, B=2, g=2, one row of 2 groups: 4^4 = 256 code assignments, the XTX couples the two groups
    w, h = problem(out=1, inn=4, seed=3)
    g = torch.Generator().manual_seed(3)
    books = torch.randn(2, 4, 2, generator=g)
    scales = torch.ones(1)
    best = min(
        (objective(w, h, books, scales, torch.tensor(c).reshape(1, 2, 2)), c)
        for c in itertools.product(range(4), repeat=4)
    )
    start = torch.zeros(1, 2, 2, dtype=torch.long)
    codes = beam_search(
        w, h, books, scales, start, beam_size=16
    )  # wide enough to keep every partial assignment
    for _ in range(3):
        codes = beam_search(w, h, books, scales, codes, beam_size=16)
    assert objective(w, h, books, scales, codes) == pytest.approx(best[0], rel=1e-5)


def test_fit_improves_on_its_kmeans_start_and_more_codebooks_help():
    w, h = problem(out=32, inn=32)
    opts = FitOptions(max_rounds=4, tol=0.0)
    one = fit_weight(w, h, 1, 4, 4, opts, torch.Generator().manual_seed(0))
    two = fit_weight(w, h, 2, 4, 4, opts, torch.Generator().manual_seed(0))
    assert one.history[-1] < one.history[0]
    assert two.history[-1] < 0.8 * one.history[-1]
    assert all(b <= a * (1 + 1e-4) for a, b in itertools.pairwise(one.history[1:]))


def test_fit_is_deterministic_for_a_seed():
    w, h = problem(out=16, inn=16)
    a = fit_weight(w, h, 2, 3, 4, FitOptions(max_rounds=2), torch.Generator().manual_seed(5))
    b = fit_weight(w, h, 2, 3, 4, FitOptions(max_rounds=2), torch.Generator().manual_seed(5))
    c = fit_weight(w, h, 2, 3, 4, FitOptions(max_rounds=2), torch.Generator().manual_seed(6))
    assert torch.equal(a.codes, b.codes) and torch.equal(a.codebooks, b.codebooks)
    assert not torch.equal(a.codes, c.codes)


def _greedy_reference(w, h, books, scales, codes, order):
    """Coordinate descent with the full objective recomputed for every candidate codeword (slow, obviously right)."""
    codes = codes.clone()
    for j in order.tolist():
        for c in range(books.shape[0]):
            for row in range(codes.shape[0]):
                scores = []
                for v in range(books.shape[1]):
                    codes[row, j, c] = v
                    scores.append(
                        objective(w[row : row + 1], h, books, scales[row : row + 1], codes[row : row + 1])
                    )
                codes[row, j, c] = int(torch.tensor(scores).argmin())
    return codes


def test_blocked_beam_search_makes_the_same_choices_as_full_recomputation():
    # 40 groups of 4 span two lazy-update blocks (32 groups each): the block-end update of r must be exact
    w, h = problem(out=5, inn=160, seed=5)
    w, h = w.double(), h.double()
    g = torch.Generator().manual_seed(5)
    books = torch.randn(2, 8, 4, generator=g, dtype=torch.float64)
    scales = w.norm(dim=1) / 4
    codes = torch.randint(8, (5, 40, 2), generator=g)
    order = torch.randperm(40, generator=g)
    assert torch.equal(
        beam_search(w, h, books, scales, codes, 1, order),
        _greedy_reference(w, h, books, scales, codes, order),
    )


def test_beam_search_over_some_groups_leaves_the_others_alone():
    w, h = problem(out=6, inn=64, seed=6)
    g = torch.Generator().manual_seed(6)
    books = torch.randn(2, 4, 4, generator=g)
    scales = w.norm(dim=1) / 4
    codes = torch.randint(4, (6, 16, 2), generator=g)
    some = torch.tensor([9, 2, 5])
    found = beam_search(w, h, books, scales, codes, 2, some)
    others = torch.ones(16, dtype=torch.bool)
    others[some] = False
    assert torch.equal(found[:, others], codes[:, others])
    assert not torch.equal(found[:, some], codes[:, some])
    assert objective(w, h, books, scales, found) <= objective(w, h, books, scales, codes)


def _dense_objective(w, h, books, codes, base, factor, norm):
    """tr(E H E^T) / norm with E = diag(base * factor) U - W, U gathered densely (no sparse matrices): autograd's."""
    out, groups, m = codes.shape
    u = sum(books[c][codes[..., c]] for c in range(m)).reshape(out, -1)  # [out, in]
    err = u * (base * factor)[:, None] - w
    return ((err @ h) * err).sum() / norm


def test_hand_written_codebook_and_scale_gradients_equal_autograd():
    g = torch.Generator().manual_seed(7)
    out, inn, m, size, gs = (
        6,
        16,
        2,
        4,
        4,
    )  # 24 groups share 4 codewords per codebook: the scatter must sum them
    w = torch.randn(out, inn, generator=g, dtype=torch.float64)
    mix = torch.randn(inn, inn, generator=g, dtype=torch.float64)
    x = torch.randn(40, inn, generator=g, dtype=torch.float64) @ mix
    h = x.T @ x
    books = torch.randn(m, size, gs, generator=g, dtype=torch.float64)
    codes = torch.randint(size, (out, inn // gs, m), generator=g)
    base = torch.rand(out, generator=g, dtype=torch.float64) + 0.5
    factor = 1 + 0.1 * torch.randn(out, generator=g, dtype=torch.float64)
    norm = 3.7
    loss, g_books, g_factor = loss_and_grads(
        w,
        h,
        Assignment.from_codes(codes, size, torch.float64),
        books.reshape(m * size, gs),
        base,
        factor,
        norm,
    )
    books_ = books.clone().requires_grad_(True)
    factor_ = factor.clone().requires_grad_(True)
    ref = _dense_objective(w, h, books_, codes, base, factor_, norm)
    ref.backward()
    assert loss == pytest.approx(float(ref.detach()), rel=1e-12)
    assert torch.allclose(g_books, books_.grad.reshape(m * size, gs), rtol=1e-10, atol=1e-12)
    assert torch.allclose(g_factor, factor_.grad, rtol=1e-10, atol=1e-12)
    assert (
        float(g_factor.abs().max()) > 1e-3 and float(g_books.abs().max()) > 1e-3
    )  # a non-trivial comparison


def test_adam_steps_alone_lower_the_objective_and_keep_the_best():
    w, h = problem(out=16, inn=32, seed=8)
    g = torch.Generator().manual_seed(8)
    books = torch.randn(2, 8, 4, generator=g) * 0.5
    scales = w.norm(dim=1) / 32**0.5
    codes = beam_search(
        w, h, books, scales, torch.randint(8, (16, 8, 2), generator=g), 1
    )  # codes fixed from here
    norm = float(
        objective(w, h, books, torch.zeros_like(scales), codes)
    )  # tr(W H W^T): the relative objective
    before = objective(w, h, books, scales, codes) / norm
    new_books, new_scales = _adam(w, h, books, scales, codes, steps=30, lr=1e-2, norm=norm)
    after = objective(w, h, new_books, new_scales, codes) / norm
    assert after < 0.9 * before, (before, after)
    assert not torch.equal(new_books, books) and not torch.equal(new_scales, scales)
    # the start counts: zero steps give back the start itself
    same_books, same_scales = _adam(w, h, books, scales, codes, steps=0, lr=1e-2, norm=norm)
    assert torch.equal(same_books, books) and torch.equal(same_scales, scales)
