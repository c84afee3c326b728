"""The ``wtal`` Typer app, the options several commands share, and the error boundary (:func:`main`).

Commands live in one module per stage (``extract.py``, ``train.py``, ``localize.py``, ``imports.py``,
``tools.py``); each parses its options, calls a library function and prints what it returned. Heavy
imports (torch, cv2, av) happen inside the commands so ``wtal --help`` stays instant. Defaults come
from the settings dataclasses; choices from the ``Literal`` types and registries that own them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .. import __version__
from ..device import DeviceName
from ..methods.names import MethodName

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain text: "wtal-pipe[dask]" must print as written
    help="Weakly-supervised temporal action localization: video -> features -> model -> mAP.",
)
import_app = typer.Typer(
    help="Bring other published layouts into a DATA_DIR or RUN_DIR.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(import_app, name="import")
features_app = typer.Typer(help="Inspect feature sets.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(features_app, name="features")
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

Data = Annotated[Path, typer.Option("--data", "-d", help="Dataset folder: features/, annotations.json, cache/, ...")]
Device = Annotated[
    DeviceName, typer.Option(help="Where to run: cpu, cuda, or auto (CUDA when a GPU is visible, else the CPU).")
]
Method = Annotated[MethodName, typer.Option(help="The method (backtal is trained with background clicks).")]
Run = Annotated[Path, typer.Option("--run", "-r", help="Run folder written by wtal train or wtal import checkpoint.")]
Settings = Annotated[
    list[str] | None,
    typer.Option("--set", help="Any method setting, e.g. --set nms_threshold=0.5 (repeatable; JSON values)."),
]
Workers = Annotated[int, typer.Option(min=0, help="Flow worker processes (default: one per core).")]


def warn(message: str) -> None:
    err_console.print(f"[bold yellow]WARNING[/]: {escape(message)}")


def random_weights_warning(what: str) -> None:
    from ..features.weights import MODELS_RULE

    warn(
        f"no I3D weights given: {what} use RANDOM (seeded) weights. They exercise the pipeline but "
        f"carry no semantics. Put rgb_imagenet.pt / flow_imagenet.pt in {MODELS_RULE}, and pass "
        "--rgb-weights rgb_imagenet --flow-weights flow_imagenet (wtal weights shows what is there)."
    )


def progress_bars():
    """Rich progress bars on stderr, with the time elapsed and left (off when stderr is not a terminal)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )


def _version(value: bool) -> None:
    if value:
        console.print(f"wtal-pipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Weakly-supervised temporal action localization: video -> features -> model -> mAP."""


def main() -> None:
    """Console entry point. Every error ends as one line on stderr (``WTAL_DEBUG=1`` re-raises it):
    exit 2 for bad input, options or a full disk, 3 for an unexpected internal error, 130 on Ctrl-C;
    per-video failures are reported by the commands themselves (exit 1)."""
    import signal
    import warnings

    from ..errors import WtalError

    def show_warning(message, category, *args, **kwargs):
        warn(str(message))

    warnings.showwarning = show_warning
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # unwind: temporaries are removed

    def fail(message: str, code: int) -> None:
        err_console.print(f"[bold red]error[/]: {escape(message)}  [dim](WTAL_DEBUG=1 for details)[/]")
        sys.exit(code)

    debug = bool(os.environ.get("WTAL_DEBUG"))
    try:
        code = app(standalone_mode=False, prog_name="wtal")
    except typer.Abort:
        err_console.print("interrupted")
        sys.exit(130)
    except WtalError as exc:
        if debug:
            raise
        fail(exc.one_line(), 2)
    except OSError as exc:
        if debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc} (free disk space, or check the path and its permissions)", 2)
    except Exception as exc:
        if debug:
            raise
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # the command line parser's usage errors
            context = getattr(exc, "ctx", None)
            if context is not None and not exc.format_message():  # a command group given no command: its help
                console.print(context.get_help())
                sys.exit(2)
            command = getattr(context, "command_path", "wtal") or "wtal"
            message = exc.format_message().replace("Value error, ", "")  # Typer validates with pydantic
            fail(f"{message} (see {command} --help)", 2)
        fail(f"unexpected {exc.__class__.__name__}: {exc} (please report it)", 3)  # a bug: still one line
    sys.exit(code if isinstance(code, int) else 0)
