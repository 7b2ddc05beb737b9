"""Where PV-tuning's V-step keeps its state, and how many bytes that is: the typed settings and the arithmetic
that both the fine-tuning and `study plan` use.

Why: the V-step needs Adam's two moments of dL/dW for every quantized weight, kept across steps. At fp32 that is
8 bytes per weight (~270 GB for a 34B model), more than the 2-bit student itself by 30x, so it decides whether
PV-tuning fits a GPU at all. The state is cut three ways:

- dL/dW is not kept per layer for the whole model: each layer's gradient is folded into its moments by a hook as
  soon as the backward pass produces it, then freed, so one layer's fp32 [out, in] gradient exists at a time.
  Only with `pv_every > 1` (the gradient summed over several P-steps before the moments see it) is a fp32
  accumulator kept per layer: +4 bytes per weight.
- `state_dtype: bfloat16` keeps the moments in bfloat16 (2 x 2 bytes per weight); they are updated in fp32 and
  rounded back.
- `offload: true` keeps the moments in host memory and moves one layer's moments to the device at a time (when
  its gradient arrives, and at its V-step): the device then holds a layer, the host the whole state.
"""

from __future__ import annotations

from dataclasses import dataclass

from codequant.errors import CodequantError

STATE_DTYPE_BYTES = {"float32": 4, "bfloat16": 2}
GRAD_BYTES = 4  # dL/dW in fp32 (the probe is fp32 whatever the model's dtype)
# fp32 [out, in] buffers of one layer alive at once, at most: its moments in fp32 (when kept in bfloat16 or on the
# host), the bias-corrected first moment, the denominator, the step and its square
LAYER_BUFFERS = 6


def check_state_dtype(value: str) -> str:
    """The one check of `pv_state_dtype`, from the CLI, `FinetuneConfig` and a study's `finetune:`."""
    if value not in STATE_DTYPE_BYTES:
        raise CodequantError(
            f"pv_state_dtype must be one of {', '.join(STATE_DTYPE_BYTES)} (the V-step's Adam moments), "
            f"got {value!r}"
        )
    return value


@dataclass(frozen=True)
class PVStateBytes:
    """Bytes of PV-tuning state: kept on the training device, kept in host memory, and the working set of the one
    layer being processed (on the device, on top of `device`)."""

    device: int
    host: int
    layer: int

    @property
    def device_peak(self) -> int:
        return self.device + self.layer


def pv_state_bytes(
    weights: int, largest: int, *, state_dtype: str = "float32", offload: bool = False, every: int = 1
) -> PVStateBytes:
    """The PV state of `weights` quantized weights whose largest layer holds `largest` of them.

    Per weight: the two moments (2 x 4 or 2 x 2 bytes; on the host when `offload`) and, with `every` > 1, the fp32
    gradient accumulator (on the device). Per layer at a time: at most `LAYER_BUFFERS` fp32 buffers of its size."""
    check_state_dtype(state_dtype)
    if every < 1:
        raise CodequantError(f"pv_every must be >= 1, got {every}")
    moments = 2 * STATE_DTYPE_BYTES[state_dtype] * weights
    accumulator = GRAD_BYTES * weights if every > 1 else 0
    layer = LAYER_BUFFERS * GRAD_BYTES * largest
    return PVStateBytes(
        device=accumulator + (0 if offload else moments), host=moments if offload else 0, layer=layer
    )
