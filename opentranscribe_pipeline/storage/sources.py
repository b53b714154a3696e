"""Where audio comes from: listing and reading the objects of a source (a local folder or an
``s3://bucket/prefix``), beside the warehouse that stores what is made of them.

- :func:`list_source`: every object below a URI, for registering a whole drop at once (CLI);
- :func:`filesystem` / :func:`iter_chunks`: streaming reads of one source object (fsspec);
- :class:`S3Source` / :class:`LocalSource` (:func:`open_source`): the drop sensor's view of
  the incoming prefix, described below.

Both drop sources answer the same four questions with S3 semantics, so the drop sensor has one
code path:

- ``list_drops(after, limit)``: top-level folder names, in the store's listing order, after
  the drop ``after`` (S3: ``ListObjectsV2`` with ``Delimiter='/'``: one request per 1,000
  drops, never a listing of the objects themselves);
- ``list_drop(drop, start_after, limit)``: the objects of one drop, in listing order, after a
  relative key (S3: ``StartAfter``);
- ``stat(drop, rel)``: one object's metadata or None (S3: ``HeadObject``);
- ``object_uri(drop, rel)``: what the tables record (``s3://bucket/key`` or an absolute path).

"Listing order" is whatever the store uses: AWS S3 sorts keys by their UTF-8 bytes,
SeaweedFS sorts path component by component (``a/b`` before ``a-c``). The sensor never sorts
keys itself; it only remembers the last key a listing returned and asks for what comes after
it, which is correct under either order. The local source sorts like AWS S3.

Nothing outside the configured prefix is ever returned: drop names and relative keys with
empty, ``.`` or ``..`` segments are reported as unsafe (see :func:`safe_relative`), and the
local source neither follows symbolic links nor lists them.

Local folders, in both paths (:func:`list_source` and :class:`LocalSource`), are walked with
``lstat`` and never through a link: symbolic links (to files or folders) and special files
(fifos, sockets, devices) are never opened, and each is reported with its reason
(:func:`skip_reason`). :func:`open_local_regular` opens a listed file for reading without
following a link placed there since, and refuses anything that is not a regular file.
"""

from __future__ import annotations

import os
import posixpath
import stat as stat_mod
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec

from .backends import S3Options, open_backend, s3_client, split_uri
from .retries import RetryPolicy, StorageUnavailable, s3_call

# the drop sensor's listings: a tick is killed at 60 s, and the next tick tries again
SENSOR_RETRY = RetryPolicy(budget_s=5.0)


# -- local files: never through a link -------------------------------------------------------
def skip_reason(st: os.stat_result) -> str | None:
    """Why a local entry (its ``lstat``) is never read, or None for a regular file."""
    mode = st.st_mode
    if stat_mod.S_ISREG(mode):
        return None
    if stat_mod.S_ISLNK(mode):
        return "symbolic link: not followed"
    if stat_mod.S_ISDIR(mode):
        return "a folder, not a file"
    if stat_mod.S_ISFIFO(mode):
        kind = "fifo"
    elif stat_mod.S_ISSOCK(mode):
        kind = "socket"
    elif stat_mod.S_ISCHR(mode) or stat_mod.S_ISBLK(mode):
        kind = "device"
    else:
        kind = "special file"
    return f"not a regular file ({kind}): not read"


class NotRegularFile(OSError):
    """A local source that is (now) a link or a special file: never read. ``str()`` is the
    reason recorded for it."""


def open_local_regular(path: str):
    """Open a local file for reading without following a symbolic link at ``path`` and
    without blocking on a fifo (``O_NOFOLLOW | O_NONBLOCK``); anything but a regular file is
    a :class:`NotRegularFile` (checked before opening with ``lstat`` and after with ``fstat``
    on what was opened, so a file swapped for a link or fifo since it was listed is refused).
    Returns a binary file object whose ``name`` is ``path``."""
    reason = skip_reason(os.lstat(path))
    if reason:
        raise NotRegularFile(reason)
    flags = os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)

    def opener(file: str, mode_flags: int) -> int:
        try:
            fd = os.open(file, mode_flags | flags)
        except OSError:
            if os.path.islink(file):  # swapped for a link between the lstat and the open (ELOOP)
                raise NotRegularFile("symbolic link: not followed") from None
            raise
        try:
            reason = skip_reason(os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        if reason:
            os.close(fd)
            raise NotRegularFile(reason)
        return fd

    return open(path, "rb", opener=opener)


def _walk_local(top: str, strict: bool = True) -> tuple[list[tuple[str, os.stat_result]], list[tuple[str, str]]]:
    """Regular files below ``top`` (path, lstat) and skipped entries (path, reason); never
    descends into a linked folder and never stats through a link. ``top`` itself unreadable:
    an OSError if ``strict``, else nothing found."""
    files, skipped = [], []

    def onerror(exc: OSError) -> None:
        if exc.filename and os.path.abspath(exc.filename) != os.path.abspath(top):
            skipped.append((exc.filename, f"cannot list: {exc.strerror or exc}"))
        elif strict and not isinstance(exc, FileNotFoundError):
            raise exc

    for dirpath, dirnames, filenames in os.walk(top, followlinks=False, onerror=onerror):
        for name in list(dirnames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full):  # os.walk lists a link to a folder among the folders
                dirnames.remove(name)
                skipped.append((full, "symbolic link: not followed"))
        for name in filenames:
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except FileNotFoundError:  # removed (or renamed) while we looked
                continue
            reason = skip_reason(st)
            if reason:
                skipped.append((full, reason))
            else:
                files.append((full, st))
    return files, skipped


# -- whole-source listing and streaming reads -----------------------------------------------
@dataclass(frozen=True)
class SourceObject:
    uri: str  # what is recorded in the tables (s3://bucket/key or an absolute local path)
    relative: str  # path below the drop root, '/'-separated
    size_bytes: int


def list_source(
    source_uri: str, s3: S3Options | None = None, *, skipped: list[tuple[str, str]] | None = None
) -> list[SourceObject]:
    """Every object below ``source_uri`` (recursively), sorted by relative path. A local
    folder that is not there is a FileNotFoundError; the store's trouble a StorageUnavailable
    naming the endpoint.

    In a local folder only regular files are listed: symbolic links and special files are
    never followed nor opened; each is appended to ``skipped`` (if given) as ``(relative
    path, reason)``."""
    backend = open_backend(source_uri, s3)
    root = backend.root
    if backend.is_local:
        if not os.path.isdir(root):
            raise FileNotFoundError(root)
        top = root.rstrip("/") or "/"

        def rel_of(path: str) -> str:
            return posixpath.relpath(path.replace(os.sep, "/"), top)

        try:
            files, passed = _walk_local(top)
        except OSError as exc:
            raise StorageUnavailable(f"listing {source_uri}: {type(exc).__name__}: {exc}") from None
        if skipped is not None:
            skipped.extend(sorted((rel_of(p), why) for p, why in passed))
        out = [
            SourceObject(uri=backend.uri(p.replace(os.sep, "/")), relative=rel_of(p), size_bytes=st.st_size)
            for p, st in files
        ]
        return sorted(out, key=lambda o: o.relative)
    try:
        found = backend.listing(root)
    except (StorageUnavailable, FileNotFoundError):
        raise
    except Exception as exc:  # anything the retries did not classify
        raise StorageUnavailable(f"listing {source_uri} at {backend.endpoint}: {type(exc).__name__}: {exc}") from None
    out = []
    for path, size in found:
        rel = path[len(root) :].lstrip("/")
        if not rel or rel.endswith("/"):  # folder placeholders some tools create
            continue
        out.append(SourceObject(uri=backend.uri(path), relative=rel, size_bytes=size))
    return sorted(out, key=lambda o: o.relative)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def filesystem(uri: str, s3: S3Options | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """An fsspec filesystem and path for streaming one source object (``fs.open``)."""
    protocol, path = split_uri(uri)
    if protocol == "file":
        return fsspec.filesystem("file", auto_mkdir=True), path
    if protocol in ("s3", "s3a"):
        return fsspec.filesystem("s3", **(s3 or S3Options()).storage_options()), path
    return fsspec.filesystem(protocol), path


def iter_chunks(f, size: int = 8 << 20) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk


# -- drop sources (the drop sensor) ---------------------------------------------------------
# After this character no other can follow in a key, so "<drop>/" + LAST sorts after every
# key of the drop and before the next drop, under byte order and SeaweedFS's per-folder order.
LAST = "\U0010ffff"
PAGE = 1000  # keys per ListObjectsV2 response


@dataclass(frozen=True)
class Entry:
    """One object of a drop, as listed."""

    rel: str  # key below the drop folder, '/'-separated
    size: int
    mtime: float  # seconds since the epoch (S3 LastModified)
    etag: str  # changes whenever the content does (local: mtime_ns + size)

    @property
    def signature(self) -> str:
        return f"{self.etag}|{self.size}|{self.mtime:.3f}"


def safe_relative(rel: str) -> bool:
    """True if ``rel`` stays below its folder: no empty, ``.`` or ``..`` segment, no NUL.

    S3 keys are plain strings, so ``incoming/drop/../../etc/x.wav`` is a legal key whose
    path-like reading escapes the prefix; such a key is never registered (readers that
    normalise paths would open something else than what was listed)."""
    if not rel or "\x00" in rel:
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


class S3Source:
    local = False

    def __init__(self, uri: str, s3: S3Options):
        protocol, path = split_uri(uri)
        bucket, _, prefix = path.partition("/")
        if not bucket:
            raise ValueError(f"incoming URI {uri!r} names no bucket")
        self.uri = uri
        self.bucket = bucket
        self.prefix = (prefix.strip("/") + "/") if prefix.strip("/") else ""
        self.s3 = s3
        self.endpoint = s3.endpoint_url or "AWS S3"
        self.client = s3_client(s3)

    def _call(self, what: str, fn):
        return s3_call(fn, what=what, endpoint=self.endpoint, bucket=self.bucket, policy=SENSOR_RETRY)

    def drop_key(self, drop: str) -> str:
        return f"{self.prefix}{drop}/"

    def list_drops(self, after: str | None, limit: int) -> tuple[list[str], bool]:
        """Up to ``limit`` drop names after drop ``after`` (None: from the start); ``more``
        says whether the listing went on."""
        kwargs = {"Bucket": self.bucket, "Prefix": self.prefix, "Delimiter": "/"}
        if after is not None:
            kwargs["StartAfter"] = self.drop_key(after) + LAST
        names: list[str] = []
        while True:
            kwargs["MaxKeys"] = max(1, min(1000, limit - len(names)))
            page = self._call(
                f"listing s3://{self.bucket}/{self.prefix}", lambda: self.client.list_objects_v2(**kwargs)
            )
            names += [p["Prefix"][len(self.prefix) : -1] for p in page.get("CommonPrefixes", [])]
            more = bool(page.get("IsTruncated"))
            if not more or len(names) >= limit:
                return names[:limit], more or len(names) > limit
            kwargs.pop("StartAfter", None)
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def list_drop(self, drop: str, start_after: str | None, limit: int | None = None) -> tuple[list[Entry], bool]:
        """Objects of ``drop`` after relative key ``start_after``, whole pages until at least
        ``limit`` (None: all); ``more`` says whether the listing went on."""
        base = self.drop_key(drop)
        kwargs = {"Bucket": self.bucket, "Prefix": base}
        if start_after:
            kwargs["StartAfter"] = base + start_after
        out: list[Entry] = []
        while True:
            page = self._call(f"listing s3://{self.bucket}/{base}", lambda: self.client.list_objects_v2(**kwargs))
            for o in page.get("Contents", []):
                rel = o["Key"][len(base) :]
                if rel:  # "drop/" itself: a folder placeholder some tools create
                    out.append(Entry(rel, int(o.get("Size", 0)), o["LastModified"].timestamp(), o.get("ETag", "")))
            more = bool(page.get("IsTruncated"))
            if not more or (limit is not None and len(out) >= limit):
                return out, more
            kwargs.pop("StartAfter", None)
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def stat(self, drop: str, rel: str) -> Entry | None:
        key = self.drop_key(drop) + rel
        try:
            h = self._call(
                f"reading s3://{self.bucket}/{key}", lambda: self.client.head_object(Bucket=self.bucket, Key=key)
            )
        except FileNotFoundError:
            return None
        return Entry(rel, int(h.get("ContentLength", 0)), h["LastModified"].timestamp(), h.get("ETag", ""))

    def drop_uri(self, drop: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{drop}"

    def object_uri(self, drop: str, rel: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{drop}/{rel}"


class LocalSource:
    """A local folder with S3's semantics (byte order, StartAfter); listings cost no requests."""

    local = True

    def __init__(self, uri: str):
        _, path = split_uri(uri)
        self.uri = uri
        self.root = posixpath.normpath(path)
        self.endpoint = self.root
        self.bucket = None
        # (drop, relative path) -> why it was not listed (links, special files), per walk
        self.skipped: dict[tuple[str, str], str] = {}

    def _root_entries(self) -> list[os.DirEntry]:
        try:
            with os.scandir(self.root) as it:
                return list(it)
        except FileNotFoundError:
            raise StorageUnavailable(f"incoming folder {self.root} does not exist") from None
        except (PermissionError, NotADirectoryError) as exc:
            raise StorageUnavailable(f"cannot list incoming folder {self.root}: {exc}") from None

    def list_drops(self, after: str | None, limit: int) -> tuple[list[str], bool]:
        names = sorted(
            (e.name for e in self._root_entries() if e.is_dir(follow_symlinks=False)), key=lambda n: (n + "/").encode()
        )
        if after is not None:
            cut = (after + "/").encode()
            names = [n for n in names if (n + "/").encode() > cut]
        return names[:limit], len(names) > limit

    def _walk(self, drop: str) -> list[Entry]:
        top = posixpath.join(self.root, drop)
        files, skipped = _walk_local(top, strict=False)

        def rel_of(full: str) -> str:
            return posixpath.relpath(full, top).replace(os.sep, "/")

        self.skipped = {k: v for k, v in self.skipped.items() if k[0] != drop}
        self.skipped.update({(drop, rel_of(p)): why for p, why in skipped})
        out = [Entry(rel_of(p), st.st_size, st.st_mtime, f"{st.st_mtime_ns}-{st.st_size}") for p, st in files]
        out.sort(key=lambda e: e.rel.encode("utf-8", "surrogateescape"))
        return out

    def list_drop(self, drop: str, start_after: str | None, limit: int | None = None) -> tuple[list[Entry], bool]:
        entries = self._walk(drop)
        if start_after:
            cut = start_after.encode("utf-8", "surrogateescape")
            entries = [e for e in entries if e.rel.encode("utf-8", "surrogateescape") > cut]
        if limit is not None:  # whole "pages", as S3 returns them
            limit = -(-limit // PAGE) * PAGE
            if len(entries) > limit:
                return entries[:limit], True
        return entries, False

    def stat(self, drop: str, rel: str) -> Entry | None:
        try:
            st = os.lstat(posixpath.join(self.root, drop, rel))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat_mod.S_ISREG(st.st_mode):
            return None
        return Entry(rel, st.st_size, st.st_mtime, f"{st.st_mtime_ns}-{st.st_size}")

    def drop_uri(self, drop: str) -> str:
        return posixpath.join(self.root, drop)

    def object_uri(self, drop: str, rel: str) -> str:
        return posixpath.join(self.root, drop, rel)


def open_source(uri: str, s3: S3Options) -> S3Source | LocalSource:
    protocol, _ = split_uri(uri)
    if protocol == "file":
        return LocalSource(uri)
    if protocol in ("s3", "s3a"):
        return S3Source(uri, s3)
    raise ValueError(f"incoming URI {uri!r}: only s3:// and local folders are watched")
