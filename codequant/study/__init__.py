"""Studies: a YAML grid of models x quantizations x benchmarks x decodings, run step by step with every artifact
cached by the hash of its inputs, resumable after a kill, results in SQLite (study.db)."""

from codequant.study.config import StudyConfig, load_config, parse_config, study_dir
from codequant.study.plan import Plan, Step, Variant, build_plan, content_key
from codequant.study.runner import run_study, study_status
from codequant.study.store import StudyStore

__all__ = [
    "Plan",
    "Step",
    "StudyConfig",
    "StudyStore",
    "Variant",
    "build_plan",
    "content_key",
    "load_config",
    "parse_config",
    "run_study",
    "study_dir",
    "study_status",
]
