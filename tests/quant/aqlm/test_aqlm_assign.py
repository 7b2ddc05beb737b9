"""The sparse codeword assignment: decoding, the codebook gradient and the transposed scatter match dense math."""

from __future__ import annotations

import torch

from codequant.quant.aqlm.assign import Assignment
from codequant.quant.aqlm.linear import decode


def _dense_decode(codes, books):
    m = codes.shape[-1]
    return sum(books[c][codes[..., c]] for c in range(m)).reshape(codes.shape[0], -1)


def test_decode_and_its_gradient_equal_the_dense_gather():
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(16, (7, 5, 3), generator=g)
    books = torch.randn(3, 16, 4, generator=g)
    scales = torch.rand(7, generator=g) + 0.5
    probe = torch.randn(7, 20, generator=g)

    ref_books, ref_scales = books.clone().requires_grad_(), scales.clone().requires_grad_()
    ref = _dense_decode(codes, ref_books) * ref_scales[:, None]
    (ref * probe).sum().backward()

    sp_books, sp_scales = books.clone().unsqueeze(2).requires_grad_(), scales.clone().requires_grad_()
    out = decode(codes, sp_books, sp_scales, Assignment.from_codes(codes, 16))
    (out * probe).sum().backward()

    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(sp_books.grad.squeeze(2), ref_books.grad)
    torch.testing.assert_close(sp_scales.grad, ref_scales.grad)


def test_scatter_sums_each_codewords_groups():
    codes = torch.tensor([[[0, 1]], [[0, 0]], [[2, 1]]])  # 3 rows, 1 group, 2 codebooks of 3 codewords
    grads = torch.tensor([[1.0], [10.0], [100.0]])
    out = Assignment.from_codes(codes, 3).scatter(grads).flatten()
    # codebook 0: word 0 <- rows 0, 1; word 2 <- row 2. codebook 1: word 0 <- row 1; word 1 <- rows 0, 2
    assert out.tolist() == [11.0, 0.0, 100.0, 10.0, 101.0, 0.0]
