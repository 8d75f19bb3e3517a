"""Secrets never reach logs: redacted copies of options and configs, log-safe locations."""
from __future__ import annotations

import pytest

from raytrainer import storage
from raytrainer.config import Config, ConfigDict


def test_nested_dicts_and_lists_are_redacted_without_touching_the_original():
    options = {
        "s3": {"key": "AKIA123", "secret": "s3cr3t", "token": "t0k",
               "endpoint_url": "http://127.0.0.1:9000",
               "client_kwargs": {"aws_access_key_id": "AKIA", "aws_secret_access_key": "x",
                                 "aws_session_token": "y", "region_name": "us-east-1"}},
        "gs": [{"credentials": {"private_key": "-----BEGIN"}}, {"project": "p"}],
        "db_password": "pw", "passwd": "pw", "SessionToken": "tok", "hf_token": None,
    }
    redacted = storage.redact(options)
    assert redacted == {
        "s3": {"key": "***", "secret": "***", "token": "***",
               "endpoint_url": "http://127.0.0.1:9000",
               "client_kwargs": {"aws_access_key_id": "***", "aws_secret_access_key": "***",
                                 "aws_session_token": "***", "region_name": "us-east-1"}},
        "gs": [{"credentials": "***"}, {"project": "p"}],
        "db_password": "***", "passwd": "***", "SessionToken": "***", "hf_token": None,
    }
    assert options["s3"]["key"] == "AKIA123"
    assert options["gs"][0]["credentials"]["private_key"] == "-----BEGIN"


def test_ml_words_that_merely_contain_token_or_key_are_kept():
    cfg = {"tokenizer": "bpe", "max_tokens": 512, "key_prefix": "run", "keys": ["a"],
           "monkey": 1}
    assert storage.redact(cfg) == cfg


def test_config_and_config_dict_are_redacted():
    cfg = Config(dict(work_dir="s3://runs/exp",
                      storage=dict(s3=dict(endpoint_url="http://h:9000", secret="abc")),
                      model=dict(type="MLP", hidden=[64, 32])))
    redacted = storage.redact(cfg)
    assert redacted["storage"]["s3"] == {"endpoint_url": "http://h:9000", "secret": "***"}
    assert redacted["model"] == {"type": "MLP", "hidden": [64, 32]}
    assert cfg.storage.s3.secret == "abc"
    assert storage.redact(ConfigDict(password="p", n=1)) == {"password": "***", "n": 1}


def test_credentials_in_urls_are_redacted():
    assert storage.redact({"work_dir": "s3://user:pass@bucket/run"}) == {
        "work_dir": "s3://***@bucket/run"}
    assert storage.redact(["see http://admin:hunter2@host:9000/x and ftp://u@h/y"]) == [
        "see http://***@host:9000/x and ftp://***@h/y"]
    assert storage.redact("https://h/o?X-Amz-Credential=AK&X-Amz-Signature=sig&part=1") == \
        "https://h/o?X-Amz-Credential=***&X-Amz-Signature=sig&part=1"


def test_describe_strips_credentials_from_locations():
    assert storage.describe("s3://user:pass@bucket/iter_20") == "s3://bucket/iter_20"
    assert storage.describe("s3://bucket/iter_20") == "s3://bucket/iter_20"
    assert storage.describe("/plain/path") == "/plain/path"
    assert storage.describe("https://h/x?token=abc&v=2") == "https://h/x?token=***&v=2"


def test_storage_errors_never_show_url_credentials():
    # s3fs does not parse user:password@ in s3:// URLs: botocore rejects the "bucket" name and
    # echoes it back in its message
    with pytest.raises(storage.StorageError) as info:
        storage.write_text("s3://AKIAEXAMPLE:wJalrSECRET@bucket/run/meta.json", "{}")
    assert str(info.value).startswith("storage: cannot write s3://bucket/run/meta.json: ")
    assert "wJalrSECRET" not in str(info.value) and "AKIAEXAMPLE" not in str(info.value)


def test_retry_logs_never_show_url_credentials(capsys):
    def unreachable():
        raise ConnectionResetError("reset while talking to http://admin:hunter2@10.0.0.1:9000")

    with pytest.raises(storage.StorageError) as info:
        storage.call_with_retries(unreachable, description="read s3://k:hunter2@b/x",
                                  attempts=2, base_delay=0.001)
    printed = capsys.readouterr().out
    assert "failed (attempt 1/2)" in printed
    for text in (str(info.value), printed):
        assert "hunter2" not in text and "http://***@10.0.0.1:9000" in text


def test_an_exception_and_its_chain_lose_url_credentials_in_place():
    from mlflow.exceptions import MlflowException

    try:
        try:
            raise ConnectionRefusedError(111, "refused http://user:s3cr3t@127.0.0.1:9")
        except OSError as cause:
            raise MlflowException("API request to http://user:s3cr3t@127.0.0.1:9/api "
                                  "failed") from cause
    except MlflowException as exc:
        raised = exc
    assert storage.redact_exception(raised) is raised
    assert isinstance(raised, MlflowException) and raised.error_code
    assert str(raised) == "API request to http://***@127.0.0.1:9/api failed"
    assert raised.message == "API request to http://***@127.0.0.1:9/api failed"
    assert str(raised.__cause__) == "[Errno 111] refused http://***@127.0.0.1:9"
    assert raised.__cause__.errno == 111


def test_log_lines_never_show_url_credentials(tmp_path, capsys):
    from raytrainer.logging import MMLogger

    log_file = tmp_path / "run.log"
    logger = MMLogger.get_instance("redaction-test", log_file=str(log_file))
    logger.error("tracking at http://user:s3cr3t@127.0.0.1:9 failed")
    logger.close()
    for text in (log_file.read_text(), capsys.readouterr().out):
        assert "tracking at http://***@127.0.0.1:9 failed" in text
        assert "s3cr3t" not in text
