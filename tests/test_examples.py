"""The examples run, and the MMEngine tutorial runs unchanged on both engines."""
import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples",
                                                                     f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_mmengine_tutorial_trains_on_raytrainer(tmp_path):
    metrics = _load("mmengine_tutorial").main(["--work-dir", str(tmp_path), "--epochs", "3"])
    assert float(metrics["accuracy"]) > 85.0


@pytest.mark.slow
def test_the_same_tutorial_file_runs_on_mmengine(tmp_path):
    pytest.importorskip("mmengine")
    metrics = _load("mmengine_tutorial").main(["--work-dir", str(tmp_path), "--epochs", "3",
                                               "--engine", "mmengine"])
    assert float(metrics["accuracy"]) > 85.0


def test_the_tutorial_says_that_engine_mmengine_needs_mmengine(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mmengine", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "mmengine.runner", raising=False)
    with pytest.raises(SystemExit) as exited:
        _load("mmengine_tutorial").main(["--work-dir", str(tmp_path), "--engine", "mmengine"])
    assert str(exited.value).startswith("--engine mmengine needs MMEngine, which raytrainer "
                                        "does not depend on (")
    assert str(exited.value).endswith("install it with: pip install mmengine==0.10.7")
    assert not os.listdir(tmp_path)  # nothing trained
