"""Fixtures for the config tests: writing small config files."""
from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest


@pytest.fixture
def write(tmp_path):
    """``write('a/b.py', text)`` creates the file under ``tmp_path`` and returns its path."""
    def _write(relative: str, text: str) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return _write


@pytest.fixture
def memory_dir():
    """A fresh ``memory://`` folder URL, removed afterwards."""
    from raytrainer import storage

    url = f"memory://raytrainer-config-tests/{uuid.uuid4().hex}"
    yield url
    fs, path = storage.get_filesystem(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)
