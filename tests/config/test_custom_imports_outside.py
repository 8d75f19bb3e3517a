"""``custom_imports`` of a project outside the repository, run with the installed
``raytrainer`` command (which, unlike ``python -m``, puts no working directory on
``sys.path``): modules import from the working directory and from the config's directory."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from raytrainer.checkpoint import load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMAND = os.path.join(os.path.dirname(sys.executable), "raytrainer")

MODEL = '''
import torch.nn as nn
from raytrainer.model import BaseModel
from raytrainer.registry import MODELS


@MODELS.register_module()
class ProjectNet(BaseModel):
    def __init__(self, data_preprocessor=None):
        super().__init__(data_preprocessor)
        self.fc = nn.Linear(64, 10)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        logits = self.fc(inputs.flatten(1))
        if mode == "loss":
            return dict(loss=nn.functional.cross_entropy(logits, data_samples))
        return (logits, data_samples) if mode == "predict" else logits
'''


@pytest.mark.slow
def test_a_project_outside_the_repository_imports_its_modules(tmp_path):
    # the README's set-up (pip install -e) installs the command: its absence is a failure
    assert os.path.exists(COMMAND), f"{COMMAND} is not installed"
    project = tmp_path / "myproj"
    (project / "mypkg").mkdir(parents=True)
    (project / "mypkg" / "__init__.py").write_text("")
    (project / "mypkg" / "parts.py").write_text(MODEL)
    (project / "configs").mkdir()
    (project / "configs" / "hooks_here.py").write_text("LOADED = True\n")  # beside the config
    (project / "configs" / "cfg.py").write_text(
        f"_base_ = [{os.path.join(ROOT, 'configs/digits/mlp.py')!r}]\n"
        "custom_imports = dict(imports=['mypkg.parts', 'hooks_here'])\n"
        "model = dict(_delete_=True, type='ProjectNet')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    env["PYTHONPATH"] = ROOT  # raytrainer itself, nothing of the project
    done = subprocess.run(
        [COMMAND, "train", "configs/cfg.py", "--launcher", "none", "--work-dir", "work",
         "--cfg-options", "train_cfg.max_epochs=1"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # the project's model was built and trained: its weights are in the checkpoint
    saved = load_checkpoint(str(project / "work" / "checkpoints" / "epoch_1"))
    assert sorted(saved["state_dict"]) == ["fc.bias", "fc.weight"]
