"""Where the accounts live: ``OPENTRANSCRIBE_ACCOUNTS_URL``; else the PostgreSQL database of
the Dagster instance when its ``dagster.yaml`` configures one; else the SQLite file
``accounts.sqlite`` beside the instance (``$DAGSTER_HOME``, or ``./.dagster`` as the CLI uses).

Read without importing Dagster: the ``storage: postgres:`` block (or the older
``run_storage`` of ``dagster_postgres``) with ``postgres_url`` or ``postgres_db`` fields,
whose values may be ``{env: NAME}`` as Dagster allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from .. import settings
from .model import AccountError

SQLITE_FILE = "accounts.sqlite"
POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg2://")


@dataclass(frozen=True)
class Location:
    kind: str  # "sqlite" | "postgresql"
    target: str  # a file path, or a libpq URL without the SQLAlchemy "+psycopg2"
    shown: str  # for messages: the URL with its password hidden


def instance_home() -> Path:
    return settings.dagster_home() or Path.cwd() / ".dagster"


def locate(url: str | None = None) -> tuple[Location, bool]:
    """The store ``url`` names (a PostgreSQL URL, ``sqlite:///path``, a file, or a folder that
    gets ``accounts.sqlite``), or the default one; and whether it is the default."""
    url = url or settings.accounts_url()
    if url:
        return _from_url(url), False
    home = instance_home()
    pg = postgres_url_of_instance(home / "dagster.yaml")
    if pg:
        return _from_url(pg), True
    return Location("sqlite", str(home / SQLITE_FILE), str(home / SQLITE_FILE)), True


def _from_url(url: str) -> Location:
    lowered = url.lower()
    if lowered.startswith(POSTGRES_SCHEMES):
        libpq = "postgresql://" + url.split("://", 1)[1]
        return Location("postgresql", libpq, _hide_password(libpq))
    if lowered.startswith("sqlite:///"):
        url = url[len("sqlite:///") :]  # SQLAlchemy's form: sqlite:///relative, sqlite:////absolute
    elif "://" in url:
        raise AccountError(f"accounts URL {url.split('://')[0]}://... is neither postgresql:// nor a SQLite path")
    path = Path(url).expanduser()
    if path.is_dir():
        path = path / SQLITE_FILE
    return Location("sqlite", str(path), str(path))


def _hide_password(url: str) -> str:
    head, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        return f"{head}{sep}{userinfo.split(':', 1)[0]}:***@{host}"
    return url


def postgres_url_of_instance(dagster_yaml: Path) -> str | None:
    """The PostgreSQL URL the instance's storage uses, or None (SQLite, or no file)."""
    if not dagster_yaml.is_file():
        return None
    import yaml

    try:
        config = yaml.safe_load(dagster_yaml.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AccountError(f"cannot read {dagster_yaml}: {exc}") from None
    block = None
    storage = config.get("storage") or {}
    if isinstance(storage, dict) and isinstance(storage.get("postgres"), dict):
        block = storage["postgres"]
    else:
        run_storage = config.get("run_storage") or {}
        if isinstance(run_storage, dict) and "postgres" in str(run_storage.get("module", "")):
            block = run_storage.get("config") or {}
    if not block:
        return None
    if block.get("postgres_url"):
        return _value(block["postgres_url"], dagster_yaml)
    db = {k: _value(v, dagster_yaml) for k, v in (block.get("postgres_db") or {}).items()}
    if not db.get("username"):
        raise AccountError(f"{dagster_yaml}: storage postgres_db has no username")
    user = quote(str(db["username"]))
    if db.get("password"):
        user += ":" + quote(str(db["password"]))
    url = f"postgresql://{user}@{db.get('hostname', '')}:{db.get('port') or 5432}/{db.get('db_name', '')}"
    params = db.get("params")
    return f"{url}?{urlencode(params, quote_via=quote)}" if isinstance(params, dict) and params else url


def _value(value, source: Path):
    """A config value, resolving Dagster's ``{env: NAME}``."""
    if isinstance(value, dict) and set(value) == {"env"}:
        resolved = settings.env(str(value["env"]))
        if resolved is None:
            raise AccountError(f"{source} reads the environment variable {value['env']}, which is not set")
        return resolved
    return value
