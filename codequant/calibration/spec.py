"""Which calibration set to draw, as one frozen settings object.

The same five or six values (kind, rows, tokens per row, held-out rows, seed, sources) used to travel as loose
keywords through `codequant quantize`, `codequant finetune`, `codequant calibration build`, a study's calibrate,
quantize and finetune steps, `QuantRun` and `finetune()`. `CalibrationSpec` carries them once and checks the sizes
once, so the CLI and a study YAML's `calibration:` are refused by the same lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from codequant.calibration.build import resolve_val_samples
from codequant.calibration.resolve import resolve_calibration
from codequant.errors import CodequantError


@dataclass(frozen=True)
class CalibrationSpec:
    """A calibration set to draw (or to read, when `kind` is the folder of a built set).

    kind: "code" | "mixed" | "random" (docs/calibration.md), "local" (with `sources`), or a PATH: a built set
        (`codequant calibration build --out`) or a source folder/file drawn as "local".
    samples: rows N, training and held-out together.
    seq_len: tokens per row L.
    val_samples: the last rows held out (never steer a fit; give held-out errors and keep-best selection);
        None: `default_val_samples(samples)` (an eighth).
    seed: which rows are drawn (the same seed, kind, sizes and tokenizer give the same set, cached).
    sources: replace the kind's built-in sources (names, folders, files, hub:DATASET); None: the built-in ones.
    """

    kind: str = "code"
    samples: int = 128
    seq_len: int = 512
    val_samples: int | None = None
    seed: int = 0
    sources: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.sources, str):
            raise CodequantError(
                f"calibration sources are a list of sources, not the string {self.sources!r}"
            )
        if self.sources is not None:
            object.__setattr__(self, "sources", tuple(str(s) for s in self.sources))
        if self.samples < 1 or self.seq_len < 2 or not 0 <= self.held_out < self.samples:
            raise CodequantError(
                f"bad sizes samples={self.samples} seq_len={self.seq_len} "
                f"val_samples={self.held_out}: need samples >= 1, seq_len >= 2 and "
                "0 <= val_samples < samples"
            )

    @property
    def held_out(self) -> int:
        """The held-out rows, with None resolved to the default for `samples`."""
        return resolve_val_samples(self.samples, self.val_samples)

    def resolve(self, tokenizer: Any) -> Any:
        """The set (a `CalibrationSet`): read when `kind` is a built set, else drawn with `tokenizer` (cached)."""
        return resolve_calibration(
            self.kind,
            tokenizer,
            samples=self.samples,
            seq_len=self.seq_len,
            seed=self.seed,
            val_samples=self.held_out,
            sources=self.sources,
        )

    @classmethod
    def of(cls, values: dict[str, Any], sources: Sequence[str] | None = None) -> CalibrationSpec:
        """A spec from a record holding kind, samples, seq_len, val_samples and seed (a study step's config or
        result); other keys are ignored."""
        keys = ("kind", "samples", "seq_len", "val_samples", "seed")
        return cls(**{k: values[k] for k in keys if k in values}, sources=tuple(sources) if sources else None)
