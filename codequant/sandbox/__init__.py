"""Execute untrusted generated programs: isolated processes, hard limits, a status for every way they end."""

from codequant.sandbox.limits import Limits
from codequant.sandbox.result import ExecResult, Status
from codequant.sandbox.runner import run_program, run_programs

__all__ = ["ExecResult", "Limits", "Status", "run_program", "run_programs"]
