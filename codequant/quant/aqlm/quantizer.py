"""`AqlmQuantizer`: the AQLM method behind the pipeline's `Quantizer` interface.

Per linear: `fit.fit_weight` (k-means init, then Adam on codebooks/scales alternating with exact beam search
over codes). Per block: `tune.tune_block` (Adam on codebooks, scales and norms against the fp block outputs, or
with `tune_targets: model` against the fp model's hidden states after the block).
Options: `quant.options.AqlmOptions` (`QuantConfig.options`, parsed and checked by `parse_options`): an effort
preset (`effort.EFFORTS`) and explicit options that override the effort's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from codequant.errors import CodequantError
from codequant.quant.aqlm.effort import resolve_effort
from codequant.quant.aqlm.fit import FitOptions, fit_weight
from codequant.quant.aqlm.linear import AqlmLinear, aqlm_storage
from codequant.quant.aqlm.presets import validate_spec
from codequant.quant.aqlm.tune import TuneOptions, tune_block
from codequant.quant.base import QuantConfig, Quantizer
from codequant.quant.options import KMEANS_ALL, RESOLVED, aqlm_options
from codequant.seeds import derive_seed

_FIT_KEYS = (
    "init",
    "em_iters",
    "beam_size",
    "kmeans_iters",
    "kmeans_sample",
    "adam_steps",
    "lr",
    "tol",
    "max_rounds",
    "damping",
    "threads",
)
_TUNE_KEYS = {
    "tune_epochs": "epochs",
    "tune_lr": "lr",
    "tune_batch": "batch_size",
    "tune_early_stop": "early_stop",
}


def _kmeans_sample(value: int | str | None) -> int | None:
    """None (every group) for 0, "all" and "none"; else the number of groups per centroid."""
    return None if value is None or str(value).lower() in (*KMEANS_ALL, "0") else int(value)


class AqlmQuantizer(Quantizer):
    method: ClassVar[str] = "aqlm"
    # AQLM's reference collects every XTX of a block in one fp pass (its --true-sequential is off by default); block
    # tuning then fixes the interactions. On SmolLM2 (2x8, 3 blocks) one pass gave equal or lower block output
    # error than true-sequential and saves three partial forwards per block (~7 s of ~36 s on 2 cores).
    true_sequential: ClassVar[bool] = False
    tunes_blocks: ClassVar[bool] = True

    def __init__(self, config: QuantConfig):
        super().__init__(config)
        m, b, g = config.num_codebooks, config.codebook_bits, config.group_size
        if m is None or b is None or g is None:
            raise CodequantError(
                "AqlmQuantizer needs num_codebooks, codebook_bits and group_size; resolve --bits "
                "for the model first with codequant.quant.aqlm.resolve_aqlm_config"
            )
        validate_spec(m, b, g, [])
        self.num_codebooks, self.nbits, self.group_size = m, b, g
        options = aqlm_options(config.options)
        self.effort, opts = resolve_effort({"effort": options.effort, **options.explicit()})
        if "kmeans_sample" in opts:
            opts["kmeans_sample"] = _kmeans_sample(opts["kmeans_sample"])
        self.fit_options = FitOptions(**{k: opts[k] for k in _FIT_KEYS if k in opts})
        self.tune_options = TuneOptions(**{n: opts[k] for k, n in _TUNE_KEYS.items() if k in opts})
        self.block_targets = opts.get("tune_targets") or "block"

    def check_linear(self, name: str, linear: nn.Linear) -> None:
        if linear.in_features % self.group_size:
            raise CodequantError(
                f"--group-size {self.group_size} does not divide {name}'s {linear.in_features} "
                "inputs; pick a divisor of every layer's input size"
            )

    def quantize_linear(self, name: str, linear: nn.Linear, xtx: torch.Tensor) -> AqlmLinear:
        self.check_linear(name, linear)
        # a per-layer seed from the run seed and the layer's name: deterministic, and independent of call order
        seed = derive_seed(self.config.seed, name)
        result = fit_weight(
            linear.weight,
            xtx,
            self.num_codebooks,
            self.nbits,
            self.group_size,
            self.fit_options,
            torch.Generator().manual_seed(seed),
        )
        q = AqlmLinear(
            result.codes,
            result.codebooks.unsqueeze(2),
            result.scales,
            bias=linear.bias,
            dtype=linear.weight.dtype,
        ).to(linear.weight.device)
        q.round_to_fp16()
        q.fit_history = result.history
        q.fit_info = {
            "init": self.fit_options.init,
            "damping": self.fit_options.damping,
            "rounds": len(result.history) - 1,
            "objective_init": result.history[0],
            "objective_final": result.history[-1],
        }
        return q

    def tune_block(
        self,
        block: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        block_kwargs: dict[str, Any],
        val_inputs: torch.Tensor | None = None,
        val_targets: torch.Tensor | None = None,
    ) -> dict[str, float]:
        return tune_block(block, inputs, targets, block_kwargs, val_inputs, val_targets, self.tune_options)

    def _fit_description(self) -> dict[str, Any]:
        """The fit options; the start's only when it is not the default k-means, so the fingerprints (and resumes)
        of runs from before `init` existed are unchanged."""
        fit = dataclasses.asdict(self.fit_options)
        if fit["init"] == "kmeans":
            del fit["init"], fit["em_iters"]
        return fit

    def describe(self) -> dict[str, Any]:
        cost = aqlm_storage(4096, 4096, self.num_codebooks, self.nbits, self.group_size)
        out: dict[str, Any] = {
            "method": self.method,
            "num_codebooks": self.num_codebooks,
            "nbits_per_codebook": self.nbits,
            "in_group_size": self.group_size,
            "out_group_size": 1,
            "nominal_bits_per_param": self.num_codebooks * self.nbits / self.group_size,
            "bits_per_param_4096x4096": cost.formula_bits / cost.params,
            "effort": self.effort,
            "fit": self._fit_description(),
            # the targets only when not AQLM's own, so older fingerprints (and their resumes) stay valid
            "tune": dataclasses.asdict(self.tune_options)
            | ({"targets": self.block_targets} if self.block_targets != "block" else {}),
            # flat copies kept for readers of older quantize.json files
            "beam_size": self.fit_options.beam_size,
            "tol": self.fit_options.tol,
            "tune_epochs": self.tune_options.epochs,
        }
        resolved = self.config.options.get(RESOLVED)
        if resolved:
            out["resolved"] = resolved
        return out
