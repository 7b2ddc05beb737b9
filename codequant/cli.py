"""The `codequant` command line: one Typer app, thin over the Python API.

Every command delegates to a function of the package; this module only parses options and prints. Errors of
type `CodequantError` become one `error: ...` line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import typer

from codequant.errors import CodequantError

app = typer.Typer(
    name="codequant",
    help="Quantize code LLMs (AQLM, GPTQ, RTN), run them on executed benchmarks, and tell what each bit cost.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def main() -> None:
    """Entry point: run the app, turning user errors into one line."""
    try:
        app()
    except CodequantError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


# ---- commands are added below, one section per concept (keep sections independent) ----
