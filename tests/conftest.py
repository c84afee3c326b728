"""Shared fixtures: synthetic clips written with PyAV (nothing is downloaded)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from wtal_pipe.tools.synthetic import ACTION_STYLES, PlantedAction, render_frames, write_video


@pytest.fixture
def make_clip(tmp_path):
    """Factory: make_clip(name, seconds, fps, size=(w, h), codec=..., actions=...) -> Path."""

    def make(
        name: str = "clip.mp4",
        seconds: float = 2.0,
        fps: float = 25.0,
        size=(96, 64),
        codec: str = "libx264",
        actions=None,
        seed: int = 0,
        **kwargs,
    ) -> Path:
        if actions is None:
            actions = [PlantedAction(ACTION_STYLES[0], 0.0, seconds)]
        frames = render_frames(seconds, fps, size[0], size[1], actions, seed=seed)
        return write_video(tmp_path / name, frames, fps=fps, codec=codec, **kwargs)

    return make


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run ``wtal ARGS`` in-process through the real entry point; returns (exit code, stdout, stderr)."""
    from wtal_pipe.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["wtal", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def slow_extract_command(clip: Path, data: Path, workers: int) -> list[str]:
    """``wtal extract`` of one clip in a subprocess with TV-L1 at 112x112: seconds of flow work, long
    enough to kill it midway."""
    settings = ["--short-side", "128", "--crop", "112", "--flow", "tvl1", "--workers", str(workers), "--device", "cpu"]
    return [sys.executable, "-m", "wtal_pipe", "extract", str(clip), "--data", str(data), *settings]
