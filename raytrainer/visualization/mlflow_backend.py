"""MLflowVisBackend: the run's config, scalars and log files in an MLflow run.

This module owns talking to MLflow (the ``mlflow`` extra: ``pip install 'raytrainer[mlflow]'``)
through an explicit ``MlflowClient`` and run id, so several backends (Tune trials in one
process) never share MLflow's global active run. Like every backend it is only used on rank 0
(the Visualizer's rule); MLflow is imported and the run created on first use, so other ranks
create nothing.
"""
from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from raytrainer import storage
from raytrainer.registry import VISBACKENDS

from .vis_backend import BaseVisBackend, _check_scalars, _config_text, to_number

MAX_PARAM_LENGTH = 6000  # MLflow refuses longer parameter values


def _flatten(values: Mapping, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


@VISBACKENDS.register_module()
class MLflowVisBackend(BaseVisBackend):
    """Log to MLflow with MMEngine's arguments.

    Without ``tracking_uri`` the run goes to a local file store in ``<save_dir>/mlruns``; no
    server is needed. MLflow 3 keeps its file store behind ``MLFLOW_ALLOW_FILE_STORE=true``,
    which this backend sets for that default only. Other stores: ``tracking_uri='http://...'``
    (a server) or ``'sqlite:///mlflow.db'`` (needs ``sqlalchemy`` and ``alembic``).

    ``add_config`` logs the config flattened to parameters (``optim_wrapper.optimizer.lr``)
    and its text as the artifact ``config.py``; scalars become metrics at their step; ``close``
    (end of the run) uploads the files of the run's log directory whose names end with
    ``artifact_suffix`` (the log, ``scalars.json`` ...) and ends the MLflow run.

    Args:
        save_dir: The backend's directory (``<work_dir>/<timestamp>/vis_data``); its parent is
            the log directory whose files become artifacts.
        exp_name: MLflow experiment (created if missing); default ``'Default'``.
        run_name: The MLflow run's name.
        tags: Tags of the run.
        params: Parameters logged when the run starts.
        tracking_uri: Where MLflow stores runs; default a file store under ``save_dir``.
        artifact_suffix: Suffixes of the files uploaded by ``close``.
        tracked_config_keys: Top-level config keys logged as parameters; None logs all.
        artifact_location: Where a newly created experiment stores artifacts.

    Raises:
        ImportError: MLflow is not installed (says how to install it).
        ValueError: ``save_dir`` is not local and no ``tracking_uri`` was given.
    """

    def __init__(self, save_dir: str, exp_name: str | None = None, run_name: str | None = None,
                 tags: dict | None = None, params: dict | None = None,
                 tracking_uri: str | None = None,
                 artifact_suffix: str | Sequence[str] = (".json", ".log", ".py", "yaml"),
                 tracked_config_keys: Sequence[str] | None = None,
                 artifact_location: str | None = None):
        if save_dir is None:
            raise ValueError("MLflowVisBackend needs a save_dir")
        super().__init__(save_dir)
        if tracking_uri is None and storage.local_path(self._save_dir) is None:
            raise ValueError(f"MLflowVisBackend: save_dir {storage.describe(self._save_dir)} is "
                             "not a local directory, so MLflow cannot keep its file store "
                             "there; set tracking_uri (an MLflow server, or "
                             "'sqlite:///<local path>/mlflow.db')")
        self._exp_name = exp_name or "Default"
        self._run_name, self._tags, self._params = run_name, tags, params
        self._tracking_uri = tracking_uri
        self._artifact_suffix = (artifact_suffix,) if isinstance(artifact_suffix, str) \
            else tuple(artifact_suffix)
        self._tracked_config_keys = tracked_config_keys
        self._artifact_location = artifact_location
        self._client = None
        self._run_id: str | None = None
        self._closed = False

    def _store_uri(self) -> str:
        if self._tracking_uri is not None:
            return self._tracking_uri
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        store = os.path.join(storage.local_path(self._save_dir), "mlruns")
        os.makedirs(store, exist_ok=True)
        return "file://" + os.path.abspath(store)

    def _start(self) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError as exc:
            raise ImportError("MLflowVisBackend needs MLflow: pip install "
                              "'raytrainer[mlflow]' (or mlflow)") from exc
        self._client = MlflowClient(self._store_uri())
        experiment = self._client.get_experiment_by_name(self._exp_name)
        experiment_id = experiment.experiment_id if experiment is not None else \
            self._client.create_experiment(self._exp_name,
                                           artifact_location=self._artifact_location)
        run = self._client.create_run(experiment_id, run_name=self._run_name,
                                      tags={str(k): str(v) for k, v in (self._tags or {}).items()})
        self._run_id = run.info.run_id
        if self._params:
            self._log_params(self._params)

    @property
    def experiment(self) -> Any:
        """The ``MlflowClient`` (MMEngine returns the ``mlflow`` module); see :attr:`run_id`."""
        if self._client is None:
            self._start()
        return self._client

    @property
    def run_id(self) -> str:
        """The MLflow run's id (the run is created on first use)."""
        if self._client is None:
            self._start()
        return self._run_id

    def _log_params(self, values: Mapping) -> None:
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in _flatten(values).items()]
        for start in range(0, len(params), 100):  # MLflow's limit per batch
            self.experiment.log_batch(self.run_id, params=params[start:start + 100])

    def add_config(self, config: Any, **kwargs) -> None:
        """Log the config as parameters (all, or ``tracked_config_keys``) and as ``config.py``."""
        text = _config_text(config)
        values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        if self._tracked_config_keys is not None:
            missing = [k for k in self._tracked_config_keys if k not in values]
            if missing:
                raise KeyError(f"MLflowVisBackend: tracked_config_keys {missing} are not in the "
                               "config")
            values = {k: values[k] for k in self._tracked_config_keys}
        self._log_params(values)
        self.experiment.log_text(self.run_id, text, "config.py")

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs) -> None:
        self.experiment.log_metric(self.run_id, name, to_number(name, value), step=step)

    def add_scalars(self, scalar_dict: Mapping[str, Any], step: int = 0,
                    file_path: str | None = None, **kwargs) -> None:
        """Log each scalar as a metric at ``step``; ``file_path`` is not used here."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, float(value), now, step)
                   for name, value in _check_scalars(scalar_dict).items()]
        self.experiment.log_batch(self.run_id, metrics=metrics)

    def _upload_logs(self) -> None:
        log_dir = posixpath.dirname(self._save_dir.rstrip("/"))
        fs, root = storage.get_filesystem(log_dir)
        root = root.rstrip("/")
        store = posixpath.join(root, posixpath.basename(self._save_dir.rstrip("/")), "mlruns")
        with tempfile.TemporaryDirectory() as scratch:
            for path in sorted(fs.find(root)):
                if path.startswith(store + "/") or not path.endswith(self._artifact_suffix):
                    continue
                relative = path[len(root) + 1:]
                local = os.path.join(scratch, relative)
                storage.get_file(storage.join(log_dir, relative), local)
                folder = posixpath.dirname(relative) or None
                self._client.log_artifact(self._run_id, local, folder)

    def close(self) -> None:
        """Upload the log directory's files and end the MLflow run (once)."""
        if self._client is None or self._closed:
            return
        self._closed = True
        self._upload_logs()
        self._client.set_terminated(self._run_id)
