"""Storage credentials given in a config reach S3 but never logs, dumps or checkpoints."""
from __future__ import annotations

from raytrainer import storage
from raytrainer.config import Config
from raytrainer.runner import Runner

from ..runner.helpers import runner_kwargs

SECRET = "SUPERSECRETVALUE-93f1"


def _all_text_under(root: str) -> str:
    texts = []
    fs, path = storage.get_filesystem(root)
    for name in fs.find(path):
        location = storage.join(root, name[len(path):].lstrip("/"))
        texts.append(storage.read_bytes(location).decode("utf-8", "replace"))
    return "\n".join(texts)


def test_credentials_are_used_but_never_written(s3_bucket, s3_server, capsys):
    work_dir = storage.join(s3_bucket, "secret-run")
    kwargs = runner_kwargs(work_dir, epochs=1, default_hooks=dict(
        checkpoint=dict(type="CheckpointHook", interval=1)))
    kwargs["storage"] = dict(s3=dict(endpoint_url=s3_server, key="AKIDLEAKCHECK",
                                     secret=SECRET))
    cfg = Config(kwargs)
    runner = Runner.from_cfg(cfg)
    runner.train()
    for logger_handler in runner.logger.handlers:
        logger_handler.flush()
    runner.logger.close()
    runner.visualizer.close()

    written = _all_text_under(work_dir)
    assert "meta.json" in str(storage.listdir(storage.join(work_dir, "checkpoints", "epoch_1")))
    assert "AKIDLEAKCHECK" not in written and SECRET not in written
    assert "'***'" in written  # the dumped config shows that a secret was set
    assert SECRET not in capsys.readouterr().out
    assert SECRET not in runner.cfg.pretty_text
