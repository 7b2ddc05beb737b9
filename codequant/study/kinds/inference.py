"""inference: prefill and decode speed and peak RSS of one version per backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codequant.errors import CodequantError
from codequant.study.kinds.common import model_spec, variant_key, version_columns
from codequant.study.plan import Planning, Step


def plan(planning: Planning) -> None:
    """The inference cost of every version, where the study has an `inference:` section (`canonical`: no
    model to time)."""
    config = planning.config
    if config.inference is None or planning.model == "canonical":
        return
    for variant, source in planning.versions():
        planning.add(
            "inference",
            f"{planning.name}-{variant.label}",
            {
                **config.inference.model_dump(),
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
    """Time the version the evaluations ran (fp, or the dequantized export) and, with `kernels`, its AQLM codes
    through the `aqlm` kernels; each backend in a fresh process so that its peak RSS is its own."""
    from codequant.metrics.inference import InferenceSettings, backends, measure_isolated

    cfg = step.config
    spec = model_spec(step, inputs)
    options = InferenceSettings(
        cfg["prompt_tokens"],
        cfg["new_tokens"],
        tuple(cfg["batches"]),
        0,
        cfg["device"],
        settings.get("dtype", "auto"),
    )
    todo = [("fp" if cfg.get("model") else "dequantized", spec)]
    if not cfg.get("model") and cfg["kernels"]:
        todo += [(name, path) for name, path in backends(spec) if name == "aqlm-kernels"]
    measured = [measure_isolated(path, options, backend) for backend, path in todo]
    failed = [m for m in measured if "error" in m]
    if failed:
        raise CodequantError(
            f"inference of {failed[0]['spec']} ({failed[0]['backend']}): {failed[0]['error']}"
        )
    for m in measured:  # paths relative to the version's folder, as everywhere in results
        m["spec"] = m["spec"] if cfg.get("model") else str(Path(m["spec"]).relative_to(spec))
    return {"backends": measured}


def ingest(store, step: Step, res: dict[str, Any], artifact: Path, conn) -> None:
    cols = version_columns(step.meta["variant"])
    for m in res["backends"]:
        store.upsert(
            "inference",
            {
                "variant_key": variant_key(step),
                "backend": m["backend"],
                **cols,
                "prefill_tok_s": m["prefill_tok_s"],
                "decode_tok_s": json.dumps(m["decode_tok_s"]),
                "peak_rss_mb": m["peak_rss_mb"],
                "file_bytes": m["file_bytes"],
                "formula_bits": m["formula_bits_per_param"],
                "load_s": m["load_s"],
                "decode_j_per_token": json.dumps(m.get("decode_j_per_token") or {}),
                "energy_method": m.get("energy_method"),
                "settings": json.dumps(
                    {k: step.config[k] for k in ("prompt_tokens", "new_tokens", "device")}
                ),
            },
            conn,
        )
