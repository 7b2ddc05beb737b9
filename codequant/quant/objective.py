"""The XTX-weighted output error every method is judged by, in one place.

For a weight W, its quantized W' and the Gram matrix H = XTX of the layer's inputs X,
||(W' - W) X||^2 = tr(E H E^T) with E = W' - W. Divided by ||W X||^2 it reads as the fraction of the layer's output
energy lost, comparable across layers and methods. Measured with the calibration XTX it is in-sample (what the fit
minimised); with the XTX of held-out rows it tells whether the fit generalises (issue: in-sample error hid a 2x
gap on real layers).
"""

from __future__ import annotations

import torch


def weighted_energy(e: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """tr(E H E^T) for E [out, in] and H [in, in] (a 0-d tensor in E's dtype)."""
    return ((e @ h) * e).sum()


def relative_output_error(weight: torch.Tensor, quantized: torch.Tensor, xtx: torch.Tensor) -> float:
    """||(W' - W) X||^2 / ||W X||^2, computed in float64 on the CPU."""
    w = weight.detach().double().cpu()
    h = xtx.detach().double().cpu()
    e = quantized.detach().double().cpu() - w
    return float(weighted_energy(e, h) / weighted_energy(w, h).clamp_min(1e-30))
