"""The method-specific options of a quantization, typed: one frozen dataclass per method.

`QuantConfig.options` stays a plain dict (it is what quantize.json, the checkpoint fingerprint and a study's
artifact keys hold, so equal settings keep their keys); `parse_options` turns it into the method's dataclass,
checked once. The CLI's flags and a study YAML's `options:` go through this same function, so a misspelt key
(`act_ordr`) or a key of another method (`act_order` with rtn) is the same one-line error from both: it names
the key, the closest allowed one, and every allowed key. Quantizers read typed fields, never `dict.get(key,
default)`, so a typo can no longer run the default silently.

A field's `flag` metadata is its `codequant quantize` flag; `docs/quantization.md` lists every field (checked by a
test against `option_table`).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from codequant.errors import CodequantError

ZERO_POINTS = ("float", "int")
CLIPS = ("minmax", "mse")
KMEANS_ALL = ("all", "none")  # kmeans_sample values meaning "every group" (as 0 does)
RESOLVED = (
    "resolved"  # what `resolve_aqlm_config` adds to an AQLM config's options: a record, not a user option
)


def _opt(doc: str, flag: str | None = None, unset: str = "the effort's") -> dict[str, str]:
    """A field's metadata: what it sets, its `codequant quantize` flag, and what None means (the docs' default)."""
    return {"doc": doc, "unset": unset, **({"flag": flag} if flag else {})}


@dataclass(frozen=True)
class RtnOptions:
    """Round-to-nearest's options (`QuantConfig.options` of `method: rtn`).

    zero_point: "float" (fp16 offset per group) | "int" (integer zero point, as GPTQ's reference stores it).
    clip: the grid's range: "minmax" (default) | "mse" (per group, the range shrink minimising |error|^clip_norm).
    clip_grid / clip_maxshrink / clip_norm: the mse search: shrink factors tried, the smallest factor 1 - maxshrink,
        the p-norm of the error.
    """

    zero_point: str = field(
        default="float", metadata=_opt('the grid\'s offset: "float" (fp16) or "int" (integer zero point)')
    )
    clip: str = field(
        default="minmax", metadata=_opt('the grid\'s range: "minmax" or "mse" (searched shrink)', "--clip")
    )
    clip_grid: int = field(default=100, metadata=_opt("mse: shrink factors tried per group"))
    clip_maxshrink: float = field(
        default=0.8, metadata=_opt("mse: the largest shrink of the range, in [0, 1)")
    )
    clip_norm: float = field(default=2.4, metadata=_opt("mse: the p of the p-norm error minimised"))

    def __post_init__(self) -> None:
        if self.zero_point not in ZERO_POINTS:
            raise CodequantError(f"zero_point must be one of {ZERO_POINTS}, got {self.zero_point!r}")
        if self.clip not in CLIPS:
            raise CodequantError(f"clip must be one of {', '.join(CLIPS)}, got {self.clip!r}")
        if self.clip_grid < 1:
            raise CodequantError(f"clip_grid must be a positive integer, got {self.clip_grid!r}")
        if not 0 <= self.clip_maxshrink < 1:
            raise CodequantError(f"clip_maxshrink must be in [0, 1), got {self.clip_maxshrink!r}")
        if not self.clip_norm > 0:
            raise CodequantError(f"clip_norm must be positive, got {self.clip_norm!r}")

    @property
    def clip_knobs(self) -> dict[str, Any]:
        """The mse search's settings, as `grid.grid_params` and `describe()` take them."""
        return {
            "clip_grid": self.clip_grid,
            "clip_maxshrink": self.clip_maxshrink,
            "clip_norm": self.clip_norm,
        }


@dataclass(frozen=True)
class GptqOptions(RtnOptions):
    """GPTQ's options: RTN's grid options, and

    percdamp: damping added to the Hessian's diagonal, relative to its mean, in [0, 1) (retried x10 if singular).
    blocksize: columns updated together (lazy batch updates; rounded up to a multiple of the group size).
    act_order: quantize columns by decreasing Hessian diagonal (activation size).
    static_groups: with act_order, fix every group's grid up front on the contiguous columns (plain layout).
    """

    percdamp: float = field(default=0.01, metadata=_opt("Hessian damping, relative to its mean diagonal"))
    blocksize: int = field(default=128, metadata=_opt("columns per lazy update block"))
    act_order: bool = field(
        default=False, metadata=_opt("columns by decreasing activation size", "--act-order")
    )
    static_groups: bool = field(
        default=False, metadata=_opt("act_order: contiguous groups, grids fixed up front", "--static-groups")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.percdamp < 1:
            raise CodequantError(f"gptq: percdamp must be in [0, 1), got {self.percdamp}")
        if self.blocksize < 1:
            raise CodequantError(f"gptq: blocksize must be positive, got {self.blocksize}")
        if self.static_groups and not self.act_order:
            raise CodequantError(
                "gptq: --static-groups only applies with --act-order (the option static_groups "
                "only applies with act_order: without it the groups are already contiguous); "
                "add --act-order or drop --static-groups"
            )


AQLM_INITS = ("kmeans", "oa-em")  # how a linear's fit starts (quant/aqlm/fit.py, oa_em.py)
# what block tuning matches (quant/pipeline.py): the fp block on the block's own, already-perturbed inputs, or
# the fp model's hidden states after the block
TUNE_TARGETS = ("block", "model")


@dataclass(frozen=True)
class AqlmOptions:
    """AQLM's options. None (the default of all but `effort`) takes the effort preset's value
    (`quant.aqlm.effort.EFFORTS`, whose `fast` is `FitOptions`' and `TuneOptions`' own defaults).

    effort: named preset of everything below: "fast" | "reference" (the AQLM reference's defaults).
    beam_size .. threads: the per-linear fit (`FitOptions`); tune_*: block tuning (`TuneOptions`).
    bits_tolerance: how far over `--bits` a preset's real bits/param may go before a smaller one is picked.
    """

    effort: str = field(
        default="fast", metadata=_opt('preset of the others: "fast" or "reference"', "--effort")
    )
    beam_size: int | None = field(default=None, metadata=_opt("beam width of the code search", "--beam-size"))
    init: str | None = field(
        default=None,
        metadata=_opt(
            'start of each fit: "kmeans" (residual k-means on the weights) or "oa-em" (EM on the XTX-weighted error)',
            "--init",
            unset='"kmeans"',
        ),
    )
    em_iters: int | None = field(
        default=None, metadata=_opt("oa-em only: E/M rounds per codebook", unset="2")
    )
    kmeans_iters: int | None = field(default=None, metadata=_opt("Lloyd iterations of the codebook init"))
    kmeans_sample: int | str | None = field(
        default=None, metadata=_opt('groups per centroid the k-means sees; 0, "all" or "none": every group')
    )
    adam_steps: int | None = field(default=None, metadata=_opt("Adam steps per round"))
    lr: float | None = field(default=None, metadata=_opt("Adam learning rate of the fit"))
    tol: float | None = field(default=None, metadata=_opt("stop when a round gains less than this share"))
    max_rounds: int | None = field(default=None, metadata=_opt("beam-search rounds at most"))
    damping: float | None = field(
        default=None, metadata=_opt("ridge added to XTX, relative to its mean diagonal")
    )
    threads: int | None = field(default=None, metadata=_opt("CPU threads while fitting"))
    tune_epochs: int | None = field(default=None, metadata=_opt("block tuning epochs at most"))
    tune_lr: float | None = field(default=None, metadata=_opt("block tuning learning rate"))
    tune_batch: int | None = field(default=None, metadata=_opt("block tuning rows per step"))
    tune_early_stop: int | None = field(default=None, metadata=_opt("epochs without a better held-out error"))
    tune_targets: str | None = field(
        default=None,
        metadata=_opt(
            'what block tuning matches: "block" (the fp block on its quantized inputs, as AQLM) or "model" '
            "(the fp model's hidden states, so each block also absorbs the error of the blocks before it)",
            unset='"block"',
        ),
    )
    bits_tolerance: float | None = field(
        default=None,
        metadata=_opt("slack over --bits when resolving a preset", unset="presets.DEFAULT_TOLERANCE"),
    )

    def __post_init__(self) -> None:
        from codequant.quant.aqlm.effort import EFFORTS

        if self.effort not in EFFORTS:
            raise CodequantError(f"unknown AQLM effort {self.effort!r}; choose one of {', '.join(EFFORTS)}")
        if self.init is not None and self.init not in AQLM_INITS:
            raise CodequantError(f"init must be one of {', '.join(AQLM_INITS)}, got {self.init!r}")
        if self.tune_targets is not None and self.tune_targets not in TUNE_TARGETS:
            raise CodequantError(
                f"tune_targets must be one of {', '.join(TUNE_TARGETS)}, got {self.tune_targets!r}"
            )
        if self.em_iters is not None and self.em_iters < 0:
            raise CodequantError(f"em_iters must be >= 0, got {self.em_iters}")
        if self.beam_size is not None and self.beam_size < 1:
            raise CodequantError(f"beam_size must be at least 1, got {self.beam_size}")
        sample = self.kmeans_sample
        if (
            isinstance(sample, str)
            and sample.lower() not in KMEANS_ALL
            or isinstance(sample, int)
            and sample < 0
        ):
            raise CodequantError(
                f"bad AQLM option kmeans_sample: a number of groups, 0 or 'all', got {sample!r}"
            )

    def explicit(self) -> dict[str, Any]:
        """The options set here (not None), without `effort`: they override the effort preset's values."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "effort" and v is not None}


def aqlm_options(raw: dict[str, Any]) -> AqlmOptions:
    """The typed options of an AQLM config's options, without the `resolved` record a resolved config carries."""
    return parse_options("aqlm", {k: v for k, v in raw.items() if k != RESOLVED})


OPTIONS: dict[str, type] = {"rtn": RtnOptions, "gptq": GptqOptions, "aqlm": AqlmOptions}


def option_names(method: str) -> list[str]:
    """The keys `options:` of `method` accepts, in declaration order."""
    return [f.name for f in dataclasses.fields(OPTIONS[method])]


def parse_options(method: str, raw: dict[str, Any] | None) -> Any:
    """The options dataclass of `method` from a dict (a YAML's `options:`, the CLI's flags, `QuantConfig.options`).
    A key set to None counts as not given. An unknown key is one CodequantError line naming it, the closest
    allowed key and all allowed keys; a key of another method says which method it belongs to."""
    if method not in OPTIONS:
        raise CodequantError(f"unknown quantization method {method!r}; choose one of {', '.join(OPTIONS)}")
    if raw is not None and not isinstance(raw, dict):
        raise CodequantError(f"{method} options must be a mapping of option: value, got {raw!r}")
    cls, given = OPTIONS[method], {k: v for k, v in (raw or {}).items() if v is not None}
    allowed = option_names(method)
    for key in given:
        if key not in allowed:
            raise CodequantError(_unknown_key(method, str(key), allowed))
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    return cls(**{k: _coerce(method, k, v, str(hints[k])) for k, v in given.items()})


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`--option KEY=VALUE` items as a dict; VALUE is read as a YAML scalar (true, 0.05, mse), as in a study file."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CodequantError(f"--option takes KEY=VALUE (e.g. percdamp=0.05), got {item!r}")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def cli_options(method: str, given: dict[str, Any]) -> dict[str, Any]:
    """`QuantConfig.options` from the flags given on the command line, checked as a study's `options:` are. The dict
    keeps the shape it always had, so the config (and the checkpoint fingerprint) of equal settings is unchanged:
    gptq always records act_order and static_groups, and `clip: minmax` (the default) is left out. An unknown
    method is left to `quant.run.build_config`, which names the methods."""
    if method not in OPTIONS:
        return dict(given)
    parse_options(method, given)
    options = {"act_order": False, "static_groups": False} if method == "gptq" else {}
    options.update(given)
    if options.get("clip") == "minmax":
        del options["clip"]
    return options


def _unknown_key(method: str, key: str, allowed: list[str]) -> str:
    owners = [m for m in OPTIONS if m != method and key in option_names(m)]
    if owners:
        why = f": {_owned_by(key, owners)}"
    else:
        close = difflib.get_close_matches(key, allowed, n=1)
        why = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {method} option {key!r}{why}; the {method} options are {', '.join(allowed)}"


def _owned_by(key: str, owners: list[str]) -> str:
    """'--act-order and --static-groups are GPTQ options': the flags of every option with the same owners (or the
    key alone when it has no flag)."""
    who = "/".join(m.upper() for m in owners)
    flag = _flag(owners[0], key)
    if flag is None:
        return f"{key} is a {who} option"
    same = [f for m in owners for f in _flags(m) if _owners(f[0]) == owners]
    names = list(dict.fromkeys(flag for _, flag in same))
    if len(names) == 1:
        return (
            f"{names[0]} is an {who} option" if who[0] in "AEFHILMNORSX" else f"{names[0]} is a {who} option"
        )
    return f"{', '.join(names[:-1])} and {names[-1]} are {who} options"


def _flags(method: str) -> list[tuple[str, str]]:
    return [(f.name, f.metadata["flag"]) for f in dataclasses.fields(OPTIONS[method]) if "flag" in f.metadata]


def _flag(method: str, key: str) -> str | None:
    return dict(_flags(method)).get(key)


def _owners(key: str) -> list[str]:
    return [m for m in OPTIONS if key in option_names(m)]


def _coerce(method: str, key: str, value: Any, hint: str) -> Any:
    """`value` as the field's type: numbers from YAML strings or ints, bools only as bools."""
    kinds = [k.strip() for k in hint.split("|")]
    if isinstance(value, str) and "str" in kinds:
        return value
    try:
        if "bool" in kinds:
            if not isinstance(value, bool):
                raise ValueError("true or false")
            return value
        if "int" in kinds and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("a whole number")
            return int(value)
        if "float" in kinds and not isinstance(value, bool):
            return float(value)
    except (TypeError, ValueError) as exc:
        raise CodequantError(
            f"bad {method.upper()} option {key}: expected {hint}, got {value!r} ({exc})"
        ) from None
    raise CodequantError(f"bad {method.upper()} option {key}: expected {hint}, got {value!r}")


def option_table(method: str) -> list[tuple[str, str, str, str]]:
    """(key, default, CLI flag, what it does) for every option of `method`: the rows of the docs' tables."""
    rows = []
    for f in dataclasses.fields(OPTIONS[method]):
        default = f.metadata["unset"] if f.default is None else repr(f.default).replace("'", '"')
        rows.append((f.name, default, f.metadata.get("flag", ""), f.metadata["doc"]))
    return rows


TABLE_BITS = (8, 6, 4)
DEFAULT_TABLE_GROUP = 64  # +0.5 bit per weight for fp16 scale and offset, as RTN/GPTQ's default groups


@dataclass(frozen=True)
class TableSpec:
    """What to do with the token tables: bits of the embedding and of the head (None: keep them fp) and the
    grid's group size (-1: one grid per row). Checked once here, from the CLI, the API and a study alike."""

    embedding_bits: int | None = None
    head_bits: int | None = None
    group_size: int = DEFAULT_TABLE_GROUP

    def __post_init__(self) -> None:
        for name in ("embedding_bits", "head_bits"):
            bits = getattr(self, name)
            if bits is not None and bits not in TABLE_BITS:
                raise CodequantError(
                    f"{name} must be one of {', '.join(map(str, TABLE_BITS))} (or unset for fp), got {bits!r}"
                )
        if not isinstance(self.group_size, int) or (self.group_size < 1 and self.group_size != -1):
            raise CodequantError(
                f"table group size must be a positive integer or -1 (per row), got {self.group_size!r}"
            )

    @property
    def active(self) -> bool:
        return self.embedding_bits is not None or self.head_bits is not None
