"""Session-wide test fixtures."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import pytest

from raytrainer.logging import MessageHub, MMLogger
from raytrainer.utils.net import free_port
from raytrainer.visualization import Visualizer


def pytest_collection_modifyitems(config, items):
    """Deselect the ``gpu`` tests unless ``-m`` names them (``pytest -m gpu`` on a GPU
    machine), whatever else ``-m`` says.

    Mark ``ray`` every test that uses Ray: those that join the session's test cluster (the
    ``ray_cluster`` fixture) or run a command with ``launcher='ray'``, besides those marked by
    hand (a test that starts a private instance). A ``ray`` test counts as ``slow`` too, so
    ``pytest -m "not ray and not slow"`` (or just ``-m "not slow"``) is the quick loop.
    """
    if "gpu" not in (config.option.markexpr or ""):  # GPU tests run only when asked for
        gpu = [item for item in items if item.get_closest_marker("gpu") is not None]
        if gpu:
            config.hook.pytest_deselected(items=gpu)
            items[:] = [item for item in items if item.get_closest_marker("gpu") is None]
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "ray_cluster" in item.fixturenames or params.get("launcher") == "ray":
            item.add_marker(pytest.mark.ray)
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.slow)


def _snapshot() -> dict:
    return {cls: (dict(cls._instances), cls._current)
            for cls in (MMLogger, MessageHub, Visualizer)}


def _forget_new_instances(before: dict) -> None:
    for cls, (instances, current) in before.items():
        for name in list(cls._instances):
            if name not in instances:
                created = cls._instances[name]
                if hasattr(created, "close"):
                    created.close()
                cls.drop_instance(name)
        cls._current = current if current in cls._instances else None


@pytest.fixture(autouse=True)
def _forget_global_instances():
    """Drop loggers, message hubs and visualizers a test created, so none leaks into the next
    test (a leaked 'current' logger would swallow another test's printed warnings)."""
    before = _snapshot()
    yield
    _forget_new_instances(before)


@pytest.fixture(autouse=True)
def _storage_retries_as_configured():
    """A command that failed in this process (``cli.main`` called by a test) switches storage
    to last attempts for the rest of the process; the next test starts with retries again."""
    from raytrainer.storage import retry

    yield
    retry._ending = False


@pytest.fixture(autouse=True, scope="module")
def _forget_module_instances():
    """The same for instances made by module-scoped fixtures (a shared trained runner)."""
    before = _snapshot()
    yield
    _forget_new_instances(before)


# --------------------------------------------------------------------------- storage backends
# S3 is a real S3 endpoint on loopback (moto's server), reached through s3fs with endpoint_url:
# nothing in s3fs, botocore or fsspec is mocked.

_FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # never read a developer's real ~/.aws files in tests
    "AWS_CONFIG_FILE": os.path.join(os.path.dirname(__file__), "no-such-aws-config"),
    "AWS_SHARED_CREDENTIALS_FILE": os.path.join(os.path.dirname(__file__), "no-such-aws-creds"),
}
_UNSET_AWS_ENV = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 (a free port) for the whole session; yields its URL.

    Fake AWS credentials are in the environment while it runs (subprocesses inherit them);
    the previous environment is restored at the end of the session.
    """
    from moto.server import ThreadedMotoServer

    names = (*_FAKE_AWS_ENV, *_UNSET_AWS_ENV)
    saved = {name: os.environ.get(name) for name in names}
    for name in _UNSET_AWS_ENV:
        os.environ.pop(name, None)
    os.environ.update(_FAKE_AWS_ENV)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def _s3_admin(s3_server):
    """An s3fs client of the test server for the fixtures' own requests (creating buckets)."""
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=s3_server, skip_instance_cache=True)


@pytest.fixture
def s3_bucket(s3_server, _s3_admin, monkeypatch):
    """A fresh bucket on the test S3 server; yields ``'s3://<bucket>'``.

    ``storage`` is pointed at the server (``set_storage_options`` and, for subprocesses,
    ``RAYTRAINER_STORAGE_OPTIONS``); afterwards the options are reset and s3fs's instance cache
    is cleared. The bucket stays until the server stops: loggers a test leaves open upload
    their last lines when the autouse fixture closes them, after this teardown.
    """
    import s3fs

    from raytrainer import storage

    bucket = f"raytrainer-test-{uuid.uuid4().hex[:16]}"
    _s3_admin.mkdir(bucket)
    monkeypatch.setenv(storage.ENV_VAR, json.dumps({"s3": {"endpoint_url": s3_server}}))
    storage.set_storage_options({"endpoint_url": s3_server}, protocol="s3")
    try:
        yield f"s3://{bucket}"
    finally:
        storage.reset_storage_options()
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def memory_root():
    """A fresh ``memory://`` root, removed afterwards."""
    import fsspec

    root = f"memory://raytrainer-tests/{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    path = fs._strip_protocol(root)
    if fs.exists(path):
        fs.rm(path, recursive=True)


@pytest.fixture(params=["local", "memory", "s3"])
def storage_root(request, tmp_path):
    """A root location on each storage backend in turn: local disk, ``memory://`` and S3."""
    if request.param == "local":
        yield str(tmp_path / "storage-root")
    elif request.param == "memory":
        yield request.getfixturevalue("memory_root")
    else:
        yield request.getfixturevalue("s3_bucket")


# --------------------------------------------------------------------------- the Ray test cluster
# One cluster for the whole session, started like a user would: `ray start --head`.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def _wait_until_started(output, process: subprocess.Popen, timeout: float = 300.0) -> None:
    """Wait for `ray start --block` to say the cluster is up (it then blocks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Ray runtime started" in output.read_text():
            return
        if process.poll() is not None:
            raise RuntimeError(f"`ray start` exited with {process.returncode}: "
                               f"{output.read_text()[-2000:]}")
        time.sleep(0.2)
    stop_process_tree(process.pid)
    raise TimeoutError(f"the test Ray cluster did not start in {timeout:g} s")


def stop_process_tree(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM ``pid`` and every process below it, then SIGKILL what is left."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    processes = [root, *root.children(recursive=True)]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=timeout)


@pytest.fixture(scope="session")
def ray_cluster(s3_server, tmp_path_factory):
    """``ray start --head`` with 2 CPUs on loopback; the driver in this process joins it.

    Workers inherit this environment: the repository on PYTHONPATH (for test hooks), the fake
    AWS credentials of the S3 fixture, and a short worker-group start timeout.
    """
    import ray

    port, dashboard = free_port(), free_port()
    # Token authentication is off for this loopback-only test cluster: the driver process may
    # have cached another session's token before `ray start` wrote a new one.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get(
        "PYTHONPATH")])), RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S="60", RAY_AUTH_MODE="disabled",
        PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    # --block keeps `ray start` as the parent of every process of this cluster, so teardown
    # stops exactly those (never `ray stop`, which kills every Ray instance on the machine).
    output = tmp_path_factory.mktemp("ray-head") / "ray-start.log"
    with open(output, "w") as sink:
        head = subprocess.Popen(
            [RAY, "start", "--head", "--block", "--num-cpus=2", f"--port={port}",
             "--node-ip-address=127.0.0.1", "--include-dashboard=true",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
             "--disable-usage-stats"], env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True)
    address = f"127.0.0.1:{port}"
    _wait_until_started(output, head)
    saved = {name: os.environ.get(name) for name in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    os.environ.update(RAY_ADDRESS=address, RAY_AUTH_MODE="disabled")
    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    try:
        yield SimpleNamespace(address=address, dashboard=f"http://127.0.0.1:{dashboard}",
                              env=env)
    finally:
        ray.shutdown()
        stop_process_tree(head.pid, timeout=5)  # the test cluster holds nothing to keep
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
