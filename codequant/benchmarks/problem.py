"""The `Problem` record every benchmark loader produces and every later stage consumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Problem:
    """One benchmark problem.

    `prompt` is what the model continues (a function signature with its docstring); `tests` is the program text
    that checks a solution (for HumanEval: `def check(candidate): ...`); `entry_point` names the function under
    test; `stop` holds the stop sequences for raw continuation. `canonical_solution`, when the benchmark ships one,
    is a completion of `prompt` that passes, and lets a user check the harness itself (`MODEL = canonical`).
    """

    task_id: str
    language: str  # "python" | "java"
    prompt: str
    tests: str
    entry_point: str
    stop: tuple[str, ...] = ()
    canonical_solution: str | None = None
    benchmark: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d
