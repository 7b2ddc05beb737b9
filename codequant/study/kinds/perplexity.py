"""perplexity: held-out perplexity of one version per language."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codequant.study.kinds.common import load_model, model_spec, variant_key, version_columns
from codequant.study.plan import Planning, Step


def plan(planning: Planning) -> None:
    """Held-out perplexity of every version, where the study has a `perplexity:` section."""
    config = planning.config
    if config.perplexity is None:
        return
    for variant, source in planning.versions():
        planning.add(
            "perplexity",
            f"{planning.name}-{variant.label}",
            {
                **config.perplexity.model_dump(),
                "model": planning.model if source is None else None,
                **planning.dtype,
            },
            [source.key] if source else [],
            {"variant": variant.to_dict()},
        )


def run(
    step: Step,
    workdir: Path,
    inputs: dict[str, Path],
    settings: dict[str, Any],
    metas: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    from codequant.calibration import heldout_tokens
    from codequant.metrics.perplexity import perplexity

    cfg = step.config
    model, tokenizer = load_model(
        model_spec(step, inputs), settings.get("device", "cpu"), settings.get("dtype", "auto")
    )
    out = {}
    for language in cfg["languages"]:
        tokens = heldout_tokens(language, tokenizer, n_tokens=cfg["tokens"])
        value = perplexity(model, tokens, seq_len=cfg["seq_len"])
        ppl = value["ppl"] if isinstance(value, dict) else float(value)
        n = value.get("tokens", tokens.numel()) if isinstance(value, dict) else tokens.numel()
        out[language] = {"perplexity": float(ppl), "tokens": int(n)}
    from codequant.models.dtype import dtype_name, model_dtype

    return {"perplexities": out, "dtype": dtype_name(model_dtype(model))}


def ingest(store, step: Step, res: dict[str, Any], artifact: Path, conn) -> None:
    cols = version_columns(step.meta["variant"])
    for language, r in res["perplexities"].items():
        store.upsert(
            "perplexities",
            {
                "variant_key": variant_key(step),
                "language": language,
                **cols,
                "perplexity": r["perplexity"],
                "tokens": r["tokens"],
            },
            conn,
        )
