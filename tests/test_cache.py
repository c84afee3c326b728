"""Cache primitives: atomic writes, streamed .npy, stale temporary files, keys."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from wtal_pipe.cache import (
    NpyStreamWriter,
    atomic_path,
    atomic_save_npy,
    file_identity,
    read_json,
    stage_key,
    sweep_stale_tmp,
)


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    final = tmp_path / "out.npy"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert not final.exists() and list(tmp_path.iterdir()) == []


def test_atomic_save_replaces_only_when_complete(tmp_path):
    final = tmp_path / "x.npy"
    atomic_save_npy(final, np.arange(3))
    atomic_save_npy(final, np.arange(5))
    np.testing.assert_array_equal(np.load(final), np.arange(5))
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]


@pytest.mark.parametrize("rows", [0, 1, 1234])
def test_streamed_npy_is_a_valid_npy(tmp_path, rows):
    path = tmp_path / "s.npy"
    data = np.random.default_rng(0).integers(0, 255, (rows, 4, 5, 3), dtype=np.uint8)
    with open(path, "wb") as fh:
        writer = NpyStreamWriter(fh, (4, 5, 3), np.uint8)
        for row in data:
            writer.append(row)
        writer.close()
    np.testing.assert_array_equal(np.load(path), data)
    assert np.load(path, mmap_mode="r").shape == (rows, 4, 5, 3)


def test_stale_temporaries_of_dead_processes_are_swept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "cache" / f".flow-abc.npy.tmp-{dead.stdout.strip()}"
    stale.parent.mkdir()
    stale.write_bytes(b"partial")
    import os

    alive = tmp_path / f".x.npy.tmp-{os.getpid()}"
    alive.write_bytes(b"being written")
    assert sweep_stale_tmp(tmp_path) == 1
    assert not stale.exists() and alive.exists()


def test_identity_follows_content_not_name(tmp_path):
    a, b, c = tmp_path / "a.bin", tmp_path / "b.bin", tmp_path / "c.bin"
    payload = np.random.default_rng(0).bytes(3 << 20)
    a.write_bytes(payload)
    b.write_bytes(payload)
    c.write_bytes(payload[:-1] + b"x")
    assert file_identity(a) == file_identity(b) != file_identity(c)


def test_stage_key_depends_on_every_parameter():
    @dataclass(frozen=True)
    class Params:
        x: int = 1
        y: str = "a"

    assert stage_key("s", Params()) == stage_key("s", Params())
    assert stage_key("s", Params()) != stage_key("s", Params(x=2))
    assert stage_key("s", Params()) != stage_key("t", Params())


def test_read_json_treats_garbage_as_missing(tmp_path):
    (tmp_path / "bad.json").write_text("{half")
    assert read_json(tmp_path / "bad.json") is None and read_json(tmp_path / "none.json") is None
