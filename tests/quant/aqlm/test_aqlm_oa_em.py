"""The output-aware EM start: better than weight-space k-means where X is anisotropic, a fixed point of both its
E-step and its M-step, an exact least-squares M-step, seeded, and selectable through the fit and the quantizer."""

from __future__ import annotations

import pytest
import torch

from codequant.errors import CodequantError
from codequant.quant.aqlm.beam import beam_search, objective
from codequant.quant.aqlm.fit import FitOptions, fit_weight
from codequant.quant.aqlm.kmeans import residual_kmeans
from codequant.quant.aqlm.oa_em import codeword_gram, diagonal_blocks, least_squares_codebook, oa_em_init
from codequant.quant.aqlm.quantizer import AqlmQuantizer
from codequant.quant.base import QuantConfig

OUT, IN, G, K = 48, 32, 4, 16


def anisotropic_problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weight [48, 32], XTX of inputs whose energy spans 4 decades in a random rotation (so groups are coupled),
    and the row-norm scales the fit starts from."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(OUT, IN, generator=g)
    rotation = torch.linalg.qr(torch.randn(IN, IN, generator=g))[0]
    x = (torch.randn(400, IN, generator=g) * torch.logspace(0, -2, IN)) @ rotation
    h = x.T @ x
    return w, h / h.diagonal().mean(), w.norm(dim=1) / IN**0.5


def kmeans_start(w, scales, m):
    books, codes = residual_kmeans(
        (w / scales[:, None]).reshape(-1, G), m, K, 8, torch.Generator().manual_seed(0), None
    )
    return books, codes.reshape(OUT, IN // G, m)


@pytest.mark.parametrize("m", [1, 2])
def test_oa_em_start_has_far_less_output_error_than_weight_kmeans(m):
    w, h, scales = anisotropic_problem()
    kb, kc = kmeans_start(w, scales, m)
    books, codes = oa_em_init(w, h, scales, (m, K, G), 8, 2, torch.Generator().manual_seed(0))
    assert books.shape == (m, K, G) and codes.shape == (OUT, IN // G, m)
    # measured 0.26 (M=1) and 0.30 (M=2); without the XTX weighting it is weight-space k-means again (~1)
    assert objective(w, h, books, scales, codes) < 0.5 * objective(w, h, kb, scales, kc)


def test_oa_em_start_is_a_fixed_point_of_its_e_and_m_steps():
    """After enough rounds neither another E-step (exact search over the codes under the full XTX) nor another
    M-step (least squares over the codebook) gains much: the start is a coordinate-wise optimum of the XTX-weighted
    error. With a no-op E-step another search gains ~57%; with a no-op M-step the least squares does."""
    w, h, scales = anisotropic_problem()
    books, codes = oa_em_init(w, h, scales, (1, K, G), 8, 6, torch.Generator().manual_seed(0))
    start = objective(w, h, books, scales, codes)
    searched = beam_search(w, h, books, scales, codes, 1)
    assert objective(w, h, books, scales, searched) > 0.97 * start
    gram = codeword_gram(codes[..., 0], diagonal_blocks(h, G), scales * scales, K)
    solved = least_squares_codebook(w, h, scales, books[0], codes[..., 0], gram, steps=50)
    assert objective(w, h, solved.unsqueeze(0), scales, codes) > 0.97 * start


def test_least_squares_codebook_reaches_the_closed_form_optimum():
    """The M-step against the dense normal equations of the codebook under the full XTX (small enough to build)."""
    w, h, scales = anisotropic_problem(1)
    g = torch.Generator().manual_seed(3)
    codes = torch.randint(K, (OUT, IN // G), generator=g)
    book = torch.randn(K, G, generator=g)
    # W' = diag(s) P vec(book), P [OUT*IN, K*G] one-hot: the loss is quadratic in vec(book)
    p = torch.zeros(OUT, IN // G, G, K, G)
    for o in range(OUT):
        for j in range(IN // G):
            p[o, j, torch.arange(G), codes[o, j], torch.arange(G)] = scales[o]
    p = p.reshape(OUT, IN, K * G).double()
    hd, wd = h.double(), w.double()
    gram = torch.einsum("oia,ij,ojb->ab", p, hd, p)
    rhs = torch.einsum("oia,ij,oj->a", p, hd, wd)
    best = torch.linalg.lstsq(gram, rhs.unsqueeze(-1)).solution.reshape(K, G).float()
    optimum = objective(w, h, best.unsqueeze(0), scales, codes.unsqueeze(-1))
    solved = least_squares_codebook(
        w, h, scales, book, codes, codeword_gram(codes, diagonal_blocks(h, G), scales * scales, K), steps=200
    )
    assert objective(w, h, solved.unsqueeze(0), scales, codes.unsqueeze(-1)) == pytest.approx(
        optimum, rel=1e-3
    )
    few = least_squares_codebook(
        w, h, scales, book, codes, codeword_gram(codes, diagonal_blocks(h, G), scales * scales, K), steps=3
    )
    before = objective(w, h, book.unsqueeze(0), scales, codes.unsqueeze(-1))
    assert objective(w, h, few.unsqueeze(0), scales, codes.unsqueeze(-1)) < optimum + 0.2 * (before - optimum)


def test_oa_em_fit_is_seeded_and_starts_below_the_kmeans_fit():
    w, h, _ = anisotropic_problem(2)
    opts = FitOptions(init="oa-em", max_rounds=3)
    a = fit_weight(w, h, 2, 4, G, opts, torch.Generator().manual_seed(5))
    b = fit_weight(w, h, 2, 4, G, opts, torch.Generator().manual_seed(5))
    assert torch.equal(a.codes, b.codes) and torch.equal(a.codebooks, b.codebooks) and a.history == b.history
    kmeans = fit_weight(w, h, 2, 4, G, FitOptions(max_rounds=3), torch.Generator().manual_seed(5))
    # (the rounds that follow may close the gap: on this problem both end within 3% of each other)
    assert a.history[0] < 0.5 * kmeans.history[0]


def test_init_option_reaches_the_fit_and_is_validated():
    config = QuantConfig(
        "aqlm", num_codebooks=2, codebook_bits=4, group_size=G, options={"init": "oa-em", "em_iters": "3"}
    )
    quantizer = AqlmQuantizer(config)
    assert quantizer.fit_options.init == "oa-em" and quantizer.fit_options.em_iters == 3
    assert quantizer.describe()["fit"]["init"] == "oa-em"
    default = AqlmQuantizer(QuantConfig("aqlm", num_codebooks=2, codebook_bits=4, group_size=G))
    assert default.fit_options.init == "kmeans"
    # the default start leaves describe() (and so a checkpoint's fingerprint) as it was before `init` existed
    assert "init" not in default.describe()["fit"] and "em_iters" not in default.describe()["fit"]
    with pytest.raises(CodequantError, match="init must be one of"):
        AqlmQuantizer(
            QuantConfig("aqlm", num_codebooks=2, codebook_bits=4, group_size=G, options={"init": "em"})
        )
