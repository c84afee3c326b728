"""Running the authors' code from the user's own checkout, never from this repository.

Each driver names the repository and commit it was written against (``OFFICIAL``); ``working_copy`` copies the
user's checkout to a temporary folder, checks the commit when the checkout is a git clone, and applies the
documented patches there (each must match exactly once, so a changed upstream file stops the run instead of
being patched somewhere else). ``authors_modules`` imports the authors' modules from that copy (their names -
``model``, ``utils``, ``config`` - clash across repositories and with nothing else once removed again), with
``.cuda()`` a no-op so their code runs on the CPU unchanged.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Official:
    """The authors' repository a driver runs, at the commit its patches and its reading of the code fit."""

    repository: str
    commit: str


OFFICIAL: dict[str, Official] = {
    "um": Official("Pilhyeon/WTAL-Uncertainty-Modeling", "f8e52f5"),
    "basnet": Official("Pilhyeon/BaSNet-pytorch", "c8c6bbd"),
    "backtal": Official("VividLe/BackTAL", "17161fc"),
    "cmcs": Official("Finspire13/CMCS-Temporal-Action-Localization", "d03f480"),
    "case": Official("Qinying-Liu/CASE", "b7c34da"),
}

Patch = tuple[str, str, str]  # (file in the checkout, text, replacement)


def checked_commit(checkout: Path, method: str) -> str:
    """The checkout's commit; a git clone at another commit stops the run (its code may differ from what the
    driver was written against). A checkout without git history is accepted and said to be unchecked."""
    expected = OFFICIAL[method]
    if not (checkout / ".git").exists():
        print(f"note: {checkout} is not a git clone; cannot check it is {expected.repository}@{expected.commit}")
        return "unchecked"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True).stdout.strip()
    if not head.startswith(expected.commit):
        raise SystemExit(
            f"{checkout} is at {head[:7]}, not {expected.repository}@{expected.commit}: "
            f"git -C {checkout} checkout {expected.commit}"
        )
    return head


def working_copy(checkout: Path, method: str, patches: list[Patch]) -> Path:
    """A patched copy of the authors' checkout in a temporary folder (removed when the process exits)."""
    if not checkout.is_dir():
        raise SystemExit(f"{checkout}: no such folder (clone {OFFICIAL[method].repository} there)")
    checked_commit(checkout, method)
    copy = Path(tempfile.mkdtemp(prefix=f"official-{method}-"))
    shutil.copytree(checkout, copy, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
    _remove_at_exit(copy)
    for name, text, replacement in patches:
        path = copy / name
        source = path.read_text()
        if source.count(text) != 1:
            raise SystemExit(f"patch for {name} does not apply (found {source.count(text)} times): {text!r}")
        path.write_text(source.replace(text, replacement))
    return copy


def _remove_at_exit(folder: Path) -> None:
    import atexit

    atexit.register(shutil.rmtree, folder, ignore_errors=True)


@contextlib.contextmanager
def authors_modules(
    copy: Path, *paths: str, stubs: dict[str, types.ModuleType] | None = None
) -> Iterator[types.SimpleNamespace]:
    """Import modules from the authors' copy (``paths``: folders under it, searched first) with ``.cuda()`` a
    no-op and ``stubs`` standing in for modules that cannot run here (MATLAB, loggers); yields ``load``, a
    function importing a module by name. Every module imported from the copy is forgotten afterwards."""
    before = set(sys.modules)
    folders = [str(copy / p) for p in paths] or [str(copy)]
    saved_path, saved = list(sys.path), (torch.Tensor.cuda, torch.nn.Module.cuda)
    sys.path[:0] = folders
    sys.modules.update(stubs or {})
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield types.SimpleNamespace(load=importlib.import_module)
    finally:
        torch.Tensor.cuda, torch.nn.Module.cuda = saved  # type: ignore[method-assign]
        sys.path[:] = saved_path
        for name in set(sys.modules) - before:  # theirs and the stubs; libraries they pulled in stay loaded
            module = sys.modules[name]
            # a folder without __init__.py (CASE's utils/, config/) is a namespace package: no __file__, a __path__
            origin = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", None) or []), "")
            if name in (stubs or {}) or str(origin).startswith(str(copy)):
                del sys.modules[name]


def stub(name: str, **attributes: object) -> types.ModuleType:
    """A module ``name`` holding ``attributes`` (for imports the authors' code makes but our runs never use)."""
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


@contextlib.contextmanager
def run_as_script(folder: Path, argv: list[str]) -> Iterator[None]:
    """``folder`` (made if missing) the working folder and ``argv`` the command line, as for one of their scripts,
    which write their outputs under the working folder and parse ``sys.argv``."""
    saved_cwd, saved_argv = os.getcwd(), sys.argv
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
    sys.argv = argv
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
