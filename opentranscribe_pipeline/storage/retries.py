"""Retries and storage errors, in one place: which errors are worth another attempt, the
backoff every storage call shares, and the one-line errors an operator reads.

Only *transient* trouble is retried: connection errors, timeouts, S3 5xx and throttling, and
the ``OSError`` numbers a network file system returns while it recovers (``EIO``,
``ETIMEDOUT``, ``ESTALE``, ...). Everything else fails at once with its own message:

==========================  =====================================================
error                       what the operator reads
==========================  =====================================================
:class:`StorageUnreachable`  ``cannot reach ... after N attempts over S s``
:class:`AccessDenied`        ``access denied ...: check AWS_ACCESS_KEY_ID / ...``
:class:`NoSuchBucket`        ``bucket 'x' does not exist at ...``
:class:`InvalidKey`          ``invalid key ...: '.' and '..' segments ...``
:class:`NotADirectory`       ``... is not a directory``
:class:`DiskFull`            ``disk full writing <path> ...``
:class:`CorruptTable`        ``table 'media' batch ...: cannot read <path> ...``
==========================  =====================================================

All are :class:`StorageError`; all but :class:`CorruptTable` are :class:`StorageUnavailable`
(the store cannot be used as configured: the CLI exits 2).

The backoff (:class:`RetryPolicy`): exponential from 0.25 s, doubling, capped at 8 s per wait,
each wait drawn between half and all of that (jitter, so many workers do not retry in step),
until the time budget is spent: 30 s by default, ``OPENTRANSCRIBE_STORAGE_RETRY_S`` to change
it. A store that is back within the budget costs the step nothing but the wait.

Two entry points share one loop (:func:`retry`):

- :func:`with_retries` for file-like calls (the local backend): ``OSError`` classified by
  errno; a missing file is raised at once as FileNotFoundError;
- :func:`s3_call` for botocore calls (botocore's own retries are off, see
  :func:`~.backends.s3_client`); ``NoSuchKey``/404 becomes ``FileNotFoundError``.
"""

from __future__ import annotations

import errno
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_RETRY_S = 30.0


# -- errors -----------------------------------------------------------------------------------
class StorageError(RuntimeError):
    """A storage failure an operator must see; the message is one line naming what and where.

    ``attempts`` is how many times the call was tried before this error was raised (1: not
    retried), set by :func:`retry` on the errors it makes."""

    attempts: int = 1


class StorageUnavailable(StorageError):
    """The store cannot be used as configured (unreachable, refused, missing, full, ...)."""


class StorageUnreachable(StorageUnavailable):
    """Transient trouble that outlasted the retry budget."""


class AccessDenied(StorageUnavailable):
    """The store refused our credentials or permissions."""


class NoSuchBucket(StorageUnavailable):
    """The bucket does not exist."""


class InvalidKey(StorageUnavailable, ValueError):
    """A path that is not a valid object key (``.``/``..`` segments, NUL, no bucket)."""


class NotADirectory(StorageUnavailable):
    """A local root (or a folder on the way) is an existing file."""


class DiskFull(StorageUnavailable):
    """No space (or quota) left where we write; ``path`` names the file being written."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.path = path


class CorruptTable(StorageError):
    """A Parquet part that exists but cannot be read (truncated, damaged)."""

    def __init__(self, message: str, *, table: str | None, batch_id: str | None, path: str):
        super().__init__(message)
        self.table = table
        self.batch_id = batch_id
        self.path = path


# -- the backoff ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter inside a time budget; ``max_attempts`` caps the
    attempts as well when set.

    ``clock`` and ``sleep`` are the time source and the wait (default :func:`time.monotonic`
    and :func:`time.sleep`, looked up at each call); a test passes its own to count the waits
    and to spend the budget without waiting."""

    budget_s: float = DEFAULT_RETRY_S
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_attempts: int | None = None
    clock: Callable[[], float] | None = field(default=None, compare=False, repr=False)
    sleep: Callable[[float], object] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        from .. import settings

        return cls(budget_s=settings.storage_retry_s())

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (1-based): half to all of the
        exponential step (equal jitter)."""
        step = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return step * random.uniform(0.5, 1.0)


def retry(
    fn: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy,
    transient: Callable[[BaseException], bool],
    give_up: Callable[[BaseException, int, float], BaseException],
) -> T:
    """Run ``fn``; while it raises an error ``transient`` accepts and the budget allows, wait
    and try again. Then raise ``give_up(error, attempts, seconds)`` (the error itself when
    ``give_up`` returns it unchanged). The budget counts both the waits and the time the
    attempts took, so a hanging endpoint (connect timeouts) is not retried for longer. A
    :class:`StorageError` made by ``give_up`` carries the number of attempts."""
    clock = policy.clock or time.monotonic
    sleep = policy.sleep or time.sleep
    started = clock()
    slept = 0.0
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            spent = max(slept, clock() - started)
            left = policy.budget_s - spent
            capped = policy.max_attempts is not None and attempt >= policy.max_attempts
            if transient(exc) and not capped and left > 0.05:
                delay = min(policy.delay(attempt), left)
                log.info("%s failed (%s: %s), retry %d in %.2f s", what, type(exc).__name__, exc, attempt, delay)
                sleep(delay)
                slept += delay
                continue
            final = give_up(exc, attempt, spent)
            if final is exc:
                raise
            if isinstance(final, StorageError):
                final.attempts = attempt
            raise final from None


def _policy(policy: RetryPolicy | None, attempts: int | None, base_delay: float | None) -> RetryPolicy:
    policy = policy or RetryPolicy.from_settings()
    if attempts is not None or base_delay is not None:
        policy = replace(
            policy,
            base_delay=policy.base_delay if base_delay is None else base_delay,
            max_attempts=attempts if attempts is not None else policy.max_attempts,
        )
    return policy


def _after(attempts: int, seconds: float) -> str:
    return f"after {attempts} attempt{'s' if attempts != 1 else ''} over {seconds:.1f} s"


# -- file-like calls --------------------------------------------------------------------------
# What a network file system (NFS, SMB, FUSE) says while it recovers; a local disk says none
# of these for a usage error.
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EIO",
        "EAGAIN",
        "EBUSY",
        "EINTR",
        "ETIMEDOUT",
        "ESTALE",
        "ECONNRESET",
        "ECONNREFUSED",
        "ECONNABORTED",
        "ENETDOWN",
        "ENETUNREACH",
        "ENETRESET",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ENOTCONN",
        "EPIPE",
        "ENOLCK",
        "EREMOTEIO",
        "ECOMM",
    )
    if hasattr(errno, name)
)
DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)


def os_transient(exc: BaseException) -> bool:
    """Worth another attempt: connection trouble, timeouts, network file system hiccups."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def describe_os_error(exc: OSError, *, what: str, endpoint: str, path: str | None = None) -> BaseException:
    """The one-line error for a non-transient ``OSError`` of a local store (or ``exc``);
    ``path`` is the object being written, named by a :class:`DiskFull`."""
    name = exc.filename or path or endpoint
    if exc.errno in DISK_FULL_ERRNOS:
        target = str(path or name)
        code = errno.errorcode.get(exc.errno, exc.errno)
        where = "" if target in what else f" holding {target}"
        return DiskFull(f"{what}: disk full: no space left on the device{where} ({code})", target)
    if isinstance(exc, NotADirectoryError | FileExistsError) or exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return NotADirectory(f"{what}: {name} is not a directory (a file is in the way under {endpoint})")
    if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        return AccessDenied(f"{what}: access denied by {endpoint} ({exc})")
    if isinstance(exc, IsADirectoryError):
        return StorageUnavailable(f"{what}: {name} is a directory, expected a file")
    return exc


def with_retries(
    fn: Callable[[], T],
    *,
    what: str,
    endpoint: str,
    policy: RetryPolicy | None = None,
    attempts: int | None = None,
    base_delay: float | None = None,
    path: str | None = None,
) -> T:
    """Run ``fn``; retry transient I/O errors with the shared backoff; give up with a
    :class:`StorageUnreachable` naming the endpoint. A missing file is raised at once; a full
    disk, a file in the way of a folder and a refusal each get their own error at once;
    other exceptions pass through unchanged."""

    def give_up(exc: BaseException, n: int, seconds: float) -> BaseException:
        if os_transient(exc):
            return StorageUnreachable(
                f"{what}: cannot reach {endpoint} {_after(n, seconds)} ({type(exc).__name__}: {exc})"
            )
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            return describe_os_error(exc, what=what, endpoint=endpoint, path=path)
        return exc

    return retry(fn, what=what, policy=_policy(policy, attempts, base_delay), transient=os_transient, give_up=give_up)


# -- botocore calls ---------------------------------------------------------------------------
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
        "RequestTimeTooSkewed",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "429",
    }
)
AUTH_S3_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "AllAccessDisabled",
        "403",
    }
)
# A GET or HEAD of a key that is not there.
NOT_FOUND_S3_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
INVALID_KEY_S3_CODES = frozenset({"InvalidRequest", "KeyTooLongError", "InvalidObjectName", "InvalidURI"})
NO_BUCKET_S3_CODES = frozenset({"NoSuchBucket", "InvalidBucketName"})


def s3_error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None if code is None else str(code)


def _s3_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status else None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: connection trouble, timeouts, S3 5xx and throttling."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError  # connection closed, read timeouts

    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True
    code = s3_error_code(exc)
    if code is not None:
        if code in TRANSIENT_S3_CODES:
            return True
        status = _s3_status(exc)
        # an unknown code with a 5xx status is server trouble too (S3-compatible stores
        # invent codes); a known client error never is
        known = code in AUTH_S3_CODES | NOT_FOUND_S3_CODES | INVALID_KEY_S3_CODES | NO_BUCKET_S3_CODES
        return status is not None and status >= 500 and not known
    return os_transient(exc)


def s3_error(
    exc: BaseException, *, what: str, endpoint: str, bucket: str | None, attempts: int = 1, seconds: float = 0.0
) -> BaseException:
    """The one-line :class:`StorageError` an operator can act on: what failed, where, the fix."""
    from botocore.exceptions import BotoCoreError, NoCredentialsError, PartialCredentialsError

    where = f"bucket {bucket!r} at {endpoint}" if bucket else endpoint
    code = s3_error_code(exc)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AccessDenied(f"{what}: no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if code in AUTH_S3_CODES:
        return AccessDenied(
            f"{what}: access denied to {where} ({code}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        )
    if code in NO_BUCKET_S3_CODES and bucket:
        return NoSuchBucket(f"{what}: bucket {bucket!r} does not exist at {endpoint} ({code})")
    if code in INVALID_KEY_S3_CODES:
        return InvalidKey(f"{what}: {where} rejected the key ({code}: {exc})")
    if is_transient(exc):
        return StorageUnreachable(
            f"{what}: cannot reach {where} {_after(attempts, seconds)} ({code or type(exc).__name__}: {exc})"
        )
    if isinstance(exc, BotoCoreError):
        return StorageUnavailable(f"{what}: {where}: {type(exc).__name__}: {exc}")
    return StorageUnavailable(f"{what}: S3 error from {where} ({code or type(exc).__name__}: {exc})")


def describe_s3_error(exc: BaseException, *, endpoint: str, bucket: str | None) -> str:
    """One line an operator can act on (without the operation): kept for callers that
    build their own messages."""
    return str(s3_error(exc, what="S3", endpoint=endpoint, bucket=bucket)).removeprefix("S3: ")


def s3_call(
    fn: Callable[[], T],
    *,
    what: str,
    endpoint: str,
    bucket: str | None = None,
    policy: RetryPolicy | None = None,
    attempts: int | None = None,
    base_delay: float | None = None,
) -> T:
    """Run one botocore call; retry transient errors with the shared backoff; turn the rest
    into a :class:`StorageError` naming the endpoint and bucket. ``NoSuchKey`` / 404 on an
    object is raised as FileNotFoundError. ``attempts`` / ``base_delay`` override the policy
    (tests)."""

    def transient(exc: BaseException) -> bool:
        return s3_error_code(exc) not in NOT_FOUND_S3_CODES and is_transient(exc)

    def give_up(exc: BaseException, n: int, seconds: float) -> BaseException:
        if s3_error_code(exc) in NOT_FOUND_S3_CODES:  # HEAD or GET of a missing object
            return FileNotFoundError(what)
        if isinstance(exc, StorageError | FileNotFoundError):
            return exc
        from botocore.exceptions import BotoCoreError, ClientError

        if not isinstance(exc, BotoCoreError | ClientError | OSError):
            return exc  # a bug, not the store: keep its traceback
        return s3_error(exc, what=what, endpoint=endpoint, bucket=bucket, attempts=n, seconds=seconds)

    return retry(fn, what=what, policy=_policy(policy, attempts, base_delay), transient=transient, give_up=give_up)
