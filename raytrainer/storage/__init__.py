"""Storage locations as URLs: every path a user gives goes through fsspec here.

This package owns turning a location (``/abs/path``, ``rel/path``, ``file://``, ``memory://``,
``s3://bucket/key`` ...) into an fsspec filesystem plus path, and the file operations the engine
needs on it: with retries for transient failures, errors that name the location, secrets kept
out of logs, appendable logs on object stores, and the pyarrow filesystem Ray is given. Nothing
else in raytrainer opens user-given paths with ``open`` or ``os``.

Modules: ``options`` (default fsspec options, ``RAYTRAINER_STORAGE_OPTIONS``), ``location``
(URL → filesystem, ``join``), ``redaction`` (``redact``, ``describe``), ``errors``
(``StorageError``, ``is_transient``), ``s3`` (S3 timeouts and HTTP session defaults),
``retry`` (``call_with_retries``), ``files`` (whole-file
operations, ``file_crc32``, ``local_path``), ``streams`` (output/input/append streams),
``arrow`` (``to_pyarrow``, the retrying ``RetryingFSSpecHandler`` Ray is given).
"""
import fsspec

from .arrow import to_pyarrow
from .errors import (
    StorageError,
    StorageNotFoundError,
    StoragePermissionError,
    error_code,
    is_transient,
)
from .files import (
    exists,
    file_crc32,
    file_size,
    get_file,
    is_dir,
    listdir,
    local_path,
    makedirs,
    open_file,
    put_file,
    read_bytes,
    read_text,
    remove,
    write_bytes,
    write_text,
)
from .location import get_filesystem, is_url, join
from .options import (
    ENV_VAR,
    reset_storage_options,
    resolved_storage_options,
    set_storage_options,
    split_storage_options,
    storage_options_for,
)
from .redaction import describe, redact, redact_exception, redact_text
from .retry import call_with_retries, last_attempts_only, one_attempt, set_retry_policy
from .streams import (
    OutputStream,
    SyncedTextFile,
    open_input_stream,
    open_output_stream,
    open_text_for_append,
    set_sync_interval,
)

__all__ = [
    "ENV_VAR", "OutputStream", "StorageError", "StorageNotFoundError", "StoragePermissionError",
    "SyncedTextFile", "call_with_retries", "describe", "error_code", "exists", "file_crc32",
    "file_size", "fsspec", "get_file", "get_filesystem", "is_dir", "is_transient", "is_url",
    "join", "last_attempts_only", "listdir", "local_path", "makedirs", "one_attempt",
    "open_file", "open_input_stream",
    "open_output_stream", "open_text_for_append", "put_file", "read_bytes", "read_text",
    "redact", "redact_exception", "redact_text", "remove", "reset_storage_options",
    "resolved_storage_options",
    "set_retry_policy", "set_storage_options",
    "set_sync_interval", "split_storage_options", "storage_options_for", "to_pyarrow",
    "write_bytes", "write_text",
]
