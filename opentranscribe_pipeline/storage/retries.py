"""Retries, in one place: which storage errors are worth another attempt, the backoff, and the
one-line :class:`StorageUnavailable` an operator reads when we give up.

Two entry points share one loop (:func:`retry`):

- :func:`with_retries` for file-like calls (the local backend, fsspec streams): ``OSError``
  and its kin are transient, a missing file is raised at once, a refused one is "access denied";
- :func:`s3_call` for botocore calls: S3 5xx, throttling and connection trouble are transient,
  ``NoSuchKey``/404 becomes ``FileNotFoundError``, everything else a :class:`StorageUnavailable`
  naming the endpoint and bucket with the likely fix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE = (ConnectionError, TimeoutError, OSError)


class StorageUnavailable(RuntimeError):
    """The object store cannot be reached or refuses us; the message names the endpoint."""


def retry(
    fn: Callable[[], T],
    *,
    what: str,
    attempts: int,
    base_delay: float,
    transient: Callable[[BaseException], bool],
    give_up: Callable[[BaseException], BaseException],
) -> T:
    """Run ``fn``; while it raises an error ``transient`` accepts, wait ``base_delay * 2**n``
    and try again, ``attempts`` times in all. Then raise ``give_up(error)`` (the error itself
    when ``give_up`` returns it unchanged)."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if transient(exc) and attempt < attempts:
                delay = base_delay * 2 ** (attempt - 1)
                log.warning("%s failed (%s), retrying in %.1f s", what, exc, delay)
                time.sleep(delay)
                continue
            final = give_up(exc)
            if final is exc:
                raise
            raise final from None
    raise AssertionError("unreachable")


# -- file-like calls ------------------------------------------------------------------------
def _os_transient(exc: BaseException) -> bool:
    return isinstance(exc, RETRYABLE) and not isinstance(exc, FileNotFoundError | PermissionError)


def with_retries(fn: Callable[[], T], *, what: str, endpoint: str, attempts: int = 4, base_delay: float = 0.5) -> T:
    """Run ``fn``; retry transient I/O errors with exponential backoff; name the endpoint when
    giving up (a missing file is not transient and is raised at once; other exceptions pass
    through unchanged)."""

    def give_up(exc: BaseException) -> BaseException:
        if isinstance(exc, PermissionError):
            return StorageUnavailable(f"{what}: access denied by {endpoint} ({exc})")
        if _os_transient(exc):
            return StorageUnavailable(
                f"{what}: cannot reach {endpoint} after {attempts} attempts ({type(exc).__name__}: {exc})"
            )
        return exc

    return retry(fn, what=what, attempts=attempts, base_delay=base_delay, transient=_os_transient, give_up=give_up)


# -- botocore calls -------------------------------------------------------------------------
# S3 error codes worth another attempt: server-side trouble and throttling.
TRANSIENT_S3_CODES = frozenset(
    {
        "500",
        "502",
        "503",
        "504",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
    }
)
AUTH_S3_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AuthorizationHeaderMalformed",
        "403",
    }
)
# A GET or HEAD of a key that is not there.
NOT_FOUND_S3_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def s3_error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None if code is None else str(code)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: connection trouble, timeouts, S3 5xx and throttling."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError  # connection closed, read timeouts

    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True
    code = s3_error_code(exc)
    if code is not None:
        return code in TRANSIENT_S3_CODES
    return _os_transient(exc)


def describe_s3_error(exc: BaseException, *, endpoint: str, bucket: str | None) -> str:
    """One line an operator can act on: what failed, where, and the likely fix."""
    from botocore.exceptions import BotoCoreError, NoCredentialsError

    where = f"bucket {bucket!r} at {endpoint}" if bucket else endpoint
    code = s3_error_code(exc)
    if code == "NoSuchBucket" and bucket:
        return f"bucket {bucket!r} does not exist at {endpoint}"
    if isinstance(exc, NoCredentialsError):
        return f"no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if code in AUTH_S3_CODES:
        return f"access denied to {where} ({code}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
    if isinstance(exc, BotoCoreError | OSError):
        return f"cannot reach {where} ({type(exc).__name__}: {exc})"
    return f"S3 error from {where} ({code or type(exc).__name__}: {exc})"


def s3_call(
    fn: Callable[[], T],
    *,
    what: str,
    endpoint: str,
    bucket: str | None = None,
    attempts: int = 3,
    base_delay: float = 0.5,
) -> T:
    """Run one botocore call; retry transient errors with exponential backoff (botocore's
    own retries are off: see :func:`~.backends.s3_client`); turn the rest into
    :class:`StorageUnavailable` naming the endpoint and bucket. ``NoSuchKey`` / 404 on an
    object is raised as FileNotFoundError."""

    def transient(exc: BaseException) -> bool:
        return s3_error_code(exc) not in NOT_FOUND_S3_CODES and is_transient(exc)

    def give_up(exc: BaseException) -> BaseException:
        if s3_error_code(exc) in NOT_FOUND_S3_CODES:  # HEAD or GET of a missing object
            return FileNotFoundError(what)
        message = describe_s3_error(exc, endpoint=endpoint, bucket=bucket)
        if is_transient(exc):
            message += f" after {attempts} attempts"
        return StorageUnavailable(f"{what}: {message}")

    return retry(fn, what=what, attempts=attempts, base_delay=base_delay, transient=transient, give_up=give_up)
