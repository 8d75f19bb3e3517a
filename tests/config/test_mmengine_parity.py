"""Side by side with MMEngine 0.10.7, the behavioural contract, on what both support."""
from __future__ import annotations

import argparse

import pytest

from raytrainer.config import Config, DictAction

mmengine_config = pytest.importorskip("mmengine.config")


def test_fromfile_with_bases_and_delete_matches_mmengine(write):
    write("configs/_base_/models/net.py", """
        model = dict(type='Net', depth=18, norm=dict(type='BN', eps=1e-5),
                     head=dict(type='Head', losses=[dict(type='CE')]))
        """)
    write("configs/_base_/schedule.py", """
        optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9))
        param_scheduler = [dict(type='LinearLR', end=5), dict(type='StepLR', step=3)]
        train_cfg = dict(by_epoch=True, max_epochs=12)
        """)
    write("configs/_base_/runtime.json", '{"default_scope": "mm", "log_level": "INFO"}')
    path = write("configs/exp/child.py", """
        _base_ = ['../_base_/models/net.py', '../_base_/schedule.py',
                  '../_base_/runtime.json']
        model = dict(depth=50, norm=dict(_delete_=True, type='GN', num_groups=32),
                     head=dict(losses=[dict(type='Focal')]))
        optim_wrapper = dict(optimizer=dict(lr={{_base_.train_cfg.max_epochs}}))
        param_scheduler = [dict(type='ConstantLR')]
        train_cfg = dict(max_epochs=24, val_interval=2)
        pipeline = [dict(type='Load'), dict(type='Resize', scale=(224, 224))]
        """)
    ours = Config.fromfile(path).to_dict()
    theirs = mmengine_config.Config.fromfile(str(path)).to_dict()
    assert ours == theirs
    assert ours["model"]["norm"] == {"type": "GN", "num_groups": 32}


def test_merge_from_dict_matches_mmengine():
    source = dict(model=dict(depth=18, norm=dict(type="BN")),
                  pipeline=[dict(type="Load"), dict(type="Resize", size=3)])
    options = {"model.depth": 50, "model.norm.eps": 1e-3, "pipeline.1.size": 5,
               "work_dir": "out", "model.neck.type": "FPN"}
    ours, theirs = Config(source), mmengine_config.Config(source)
    ours.merge_from_dict(options)
    theirs.merge_from_dict(options)
    assert ours.to_dict() == theirs.to_dict()


def test_dict_action_matches_mmengine_on_common_syntax():
    tokens = ["a=1", "b=0.5", "c=1e-3", "d=True", "e=false", "f=None", "g=abc", "h=[1,2]",
              "i=(1,2)", "j=[(1,2),[3,4]]", "k=a,b", "l=[a,[b,(c,d)]]"]

    def parse(action):
        parser = argparse.ArgumentParser()
        parser.add_argument("--cfg-options", nargs="+", action=action)
        return parser.parse_args(["--cfg-options", *tokens]).cfg_options

    assert parse(DictAction) == parse(mmengine_config.DictAction)
