"""Default fsspec options: RAYTRAINER_STORAGE_OPTIONS, set_storage_options, fsspec's own env."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from raytrainer import storage
from raytrainer.storage.s3 import S3_DEFAULTS, NoExpectContinueSession


@pytest.fixture
def clean_options(monkeypatch):
    monkeypatch.delenv(storage.ENV_VAR, raising=False)
    storage.reset_storage_options()
    yield monkeypatch
    storage.reset_storage_options()


def test_env_options_flat_and_per_protocol(clean_options):
    clean_options.setenv(storage.ENV_VAR, json.dumps({
        "anon": False, "config_kwargs": {"retries": {"total_max_attempts": 2}},
        "s3": {"endpoint_url": "http://127.0.0.1:9000"}, "gs": {"project": "p"}}))
    assert storage.storage_options_for("s3://bucket/key") == {
        "anon": False, "endpoint_url": "http://127.0.0.1:9000",
        "config_kwargs": {"connect_timeout": 5, "read_timeout": 10,
                          "retries": {"total_max_attempts": 2},
                          "http_session_cls": NoExpectContinueSession}}
    assert storage.storage_options_for("gs://bucket/key")["project"] == "p"
    assert "endpoint_url" not in storage.storage_options_for("gs://bucket/key")
    assert storage.storage_options_for("/local/path") == {}
    assert storage.storage_options_for("memory://root") == {}


def test_s3_requests_time_out_by_default_and_each_layer_sets_single_timeouts(clean_options):
    assert storage.storage_options_for("s3://b/k") == {"config_kwargs": {
        "connect_timeout": 5, "read_timeout": 10, "retries": {"total_max_attempts": 1},
        "http_session_cls": NoExpectContinueSession}}
    clean_options.setenv(storage.ENV_VAR, json.dumps({"s3": {"config_kwargs": {
        "read_timeout": 120}}}))
    storage.reset_storage_options()
    storage.set_storage_options({"config_kwargs": {"connect_timeout": 2}})
    assert storage.storage_options_for("s3://b/k")["config_kwargs"] == {
        "connect_timeout": 2, "read_timeout": 120, "retries": {"total_max_attempts": 1},
        "http_session_cls": NoExpectContinueSession}
    assert storage.resolved_storage_options(
        {"config_kwargs": {"read_timeout": 7}, "s3": {"config_kwargs": {"connect_timeout": 3}}}
    ) == {"config_kwargs": {"read_timeout": 7}, "s3": {"config_kwargs": {"connect_timeout": 3}}}
    assert storage.storage_options_for("gs://b/k") == {"config_kwargs": {"connect_timeout": 2}}


def test_the_timeouts_reach_botocore(clean_options):
    storage.set_storage_options({"config_kwargs": {"read_timeout": 3}}, protocol="s3")
    fs, _ = storage.get_filesystem("s3://bucket/key")
    assert fs.config_kwargs == {"connect_timeout": 5, "read_timeout": 3,
                                "retries": {"total_max_attempts": 1},
                                "http_session_cls": NoExpectContinueSession}


def test_env_is_read_at_first_use_and_again_after_reset(clean_options):
    clean_options.setenv(storage.ENV_VAR, json.dumps({"s3": {"endpoint_url": "http://a"}}))
    assert storage.storage_options_for("s3://b")["endpoint_url"] == "http://a"
    clean_options.setenv(storage.ENV_VAR, json.dumps({"s3": {"endpoint_url": "http://b"}}))
    assert storage.storage_options_for("s3://b")["endpoint_url"] == "http://a"
    storage.reset_storage_options()
    assert storage.storage_options_for("s3://b")["endpoint_url"] == "http://b"


def test_explicit_options_override_the_environment(clean_options):
    clean_options.setenv(storage.ENV_VAR, json.dumps({
        "profile": "env", "s3": {"endpoint_url": "http://env", "key": "from-env"}}))
    storage.set_storage_options({"endpoint_url": "http://code"})
    storage.set_storage_options({"key": "from-code"}, protocol="s3")
    assert storage.storage_options_for("s3://b") == {
        "profile": "env", "endpoint_url": "http://code", "key": "from-code", **S3_DEFAULTS}
    assert storage.storage_options_for("s3://b", {"key": "per-call"})["key"] == "per-call"


def test_nested_protocol_sections_in_set_storage_options(clean_options):
    storage.set_storage_options({"s3": {"endpoint_url": "http://x"},
                                 "client_kwargs": {"region_name": "eu-west-1"}})
    assert storage.storage_options_for("s3://b") == {
        "client_kwargs": {"region_name": "eu-west-1"}, "endpoint_url": "http://x",
        **S3_DEFAULTS}
    assert storage.split_storage_options({"s3": {"a": 1}, "config_kwargs": {"b": 2}}) == (
        {"config_kwargs": {"b": 2}}, {"s3": {"a": 1}})


def test_invalid_env_json_names_the_variable(clean_options):
    clean_options.setenv(storage.ENV_VAR, "{not json")
    with pytest.raises(ValueError, match="RAYTRAINER_STORAGE_OPTIONS must be a JSON object"):
        storage.storage_options_for("s3://b")
    clean_options.setenv(storage.ENV_VAR, "[1, 2]")
    storage.reset_storage_options()
    with pytest.raises(ValueError, match="got list"):
        storage.storage_options_for("s3://b")


def _run_python(code: str, env_updates: dict[str, str], drop: tuple[str, ...] = ()):
    import os

    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_updates)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=120)


def test_subprocess_reaches_s3_through_the_env_option(s3_bucket):
    location = storage.join(s3_bucket, "from-child.txt")
    done = _run_python(f"""
        from raytrainer import storage
        storage.write_text({location!r}, "child")
        print(storage.storage_options_for({location!r}))
    """, {})  # s3_bucket set RAYTRAINER_STORAGE_OPTIONS for subprocesses
    assert done.returncode == 0, done.stderr
    assert "endpoint_url" in done.stdout
    assert storage.read_text(location) == "child"


def test_fsspec_env_config_keeps_working(s3_bucket, s3_server):
    location = storage.join(s3_bucket, "via-fsspec-env.txt")
    done = _run_python(f"""
        from raytrainer import storage
        from raytrainer.storage.s3 import S3_DEFAULTS
        assert storage.storage_options_for({location!r}) == S3_DEFAULTS
        storage.write_text({location!r}, "fsspec env")
    """, {"FSSPEC_S3_ENDPOINT_URL": s3_server}, drop=(storage.ENV_VAR,))
    assert done.returncode == 0, done.stderr
    assert storage.read_text(location) == "fsspec env"


def test_resolved_options_put_the_configs_section_over_the_environment(clean_options,
                                                                       monkeypatch):
    monkeypatch.setenv(storage.ENV_VAR, json.dumps(
        {"anon": False, "s3": {"endpoint_url": "http://env:1", "key": "K"}}))
    resolved = storage.resolved_storage_options(
        {"s3": {"endpoint_url": "http://config:2"}, "gs": {"project": "p"}})
    assert resolved == {"anon": False, "s3": {"endpoint_url": "http://config:2", "key": "K"},
                        "gs": {"project": "p"}}
    storage.set_storage_options(resolved)
    assert storage.storage_options_for("s3://b/k") == {
        "anon": False, "endpoint_url": "http://config:2", "key": "K", **S3_DEFAULTS}


def test_a_flat_config_option_wins_over_the_environments_protocol_section(clean_options,
                                                                         monkeypatch):
    monkeypatch.setenv(storage.ENV_VAR, json.dumps({"s3": {"endpoint_url": "http://env:9000"}}))
    storage.set_storage_options(storage.resolved_storage_options(
        {"endpoint_url": "http://config:1"}))
    assert storage.storage_options_for("s3://b/k")["endpoint_url"] == "http://config:1"
