"""`opentranscribe doctor`: one line per check; against a healthy setup every line is ok
(exit 0), and each broken part fails its own line, with a fix, without printing a secret."""

import pytest

from opentranscribe_pipeline.cli import main

from . import seaweed as seaweed_server
from .conftest import write_instance_yaml
from .seaweed import free_port

SECRET = "s3cr3t-doctor-value-9f1c"
PG_PASSWORD = "pg-pass-never-shown-77"
CHECKS = ("python", "models", "device", "instance", "warehouse", "search", "gpu pool", "disk")


def doctor(capsys, *args) -> tuple[int, dict[str, str], str]:
    code = main(["doctor", *args])
    out = capsys.readouterr()
    text = out.out + out.err
    lines = {}
    for line in out.out.splitlines():
        for name in CHECKS:
            if line[6:].startswith(name + " ") or line[6:] == name:
                lines[name] = line
    assert set(lines) == set(CHECKS), out.out  # one line per check, always
    return code, lines, text


def failed(lines: dict[str, str]) -> set[str]:
    return {name for name, line in lines.items() if line.startswith("FAIL")}


@pytest.fixture
def healthy(tmp_path, monkeypatch, dagster_home):
    monkeypatch.setenv("OPENTRANSCRIBE_ASR_MODEL", "packaged:tiny.en")
    monkeypatch.setenv("OPENTRANSCRIBE_DIARIZATION", "packaged")
    monkeypatch.setenv("OPENTRANSCRIBE_STORAGE_RETRY_S", "1")
    monkeypatch.delenv("OPENSEARCH_URL", raising=False)
    monkeypatch.setenv("OPENTRANSCRIBE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_healthy_local_setup_passes_every_check(healthy, capsys):
    code, lines, _ = doctor(capsys, "--warehouse", str(healthy / "w"))
    assert code == 0 and not failed(lines), lines
    assert "SQLite instance" in lines["instance"] and "schema current" in lines["instance"]
    assert "limit 1" in lines["gpu pool"]


def test_missing_model_directory_fails_the_models_line(healthy, capsys, monkeypatch):
    monkeypatch.setenv("OPENTRANSCRIBE_ASR_MODEL", str(healthy / "no-such-model"))
    code, lines, _ = doctor(capsys, "--warehouse", str(healthy / "w"))
    assert code == 1 and failed(lines) == {"models"}
    assert "does not exist" in lines["models"] and "fix:" in lines["models"]


def test_unreachable_postgres_fails_the_instance_line_without_its_password(healthy, capsys, monkeypatch):
    home = write_instance_yaml(healthy / "pg_home")
    port = free_port()  # nothing listens there
    (home / "dagster.yaml").write_text(
        (home / "dagster.yaml").read_text()
        + f"""
storage:
  postgres:
    postgres_db:
      hostname: 127.0.0.1
      port: {port}
      username: dagster
      password: {PG_PASSWORD}
      db_name: dagster
      scheme: postgresql+psycopg2
"""
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    code, lines, text = doctor(capsys, "--warehouse", str(healthy / "w"))
    assert code == 1 and "instance" in failed(lines)
    assert failed(lines) <= {"instance", "gpu pool"}  # the pool is read from the instance
    assert "cannot be opened" in lines["instance"] and "fix:" in lines["instance"]
    assert PG_PASSWORD not in text


@pytest.mark.s3
def test_s3_warehouse_healthy_wrong_bucket_and_stopped_server(healthy, capsys, monkeypatch, tmp_path_factory):
    server = seaweed_server.start(tmp_path_factory.mktemp("doctor-seaweed"), access_key="doctorkey", secret_key=SECRET)
    try:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        bucket = server.make_bucket("doctor")
        code, lines, text = doctor(capsys, "--warehouse", f"s3://{bucket}/w")
        assert code == 0 and not failed(lines), lines
        assert server.endpoint in lines["warehouse"] and "AWS_SECRET_ACCESS_KEY" in lines["warehouse"]
        assert SECRET not in text

        code, lines, text = doctor(capsys, "--warehouse", "s3://no-such-bucket-doctor/w")
        assert code == 1 and failed(lines) == {"warehouse", "search"}  # LanceDB lives in the warehouse
        assert "does not exist" in lines["warehouse"] and "create the bucket" in lines["warehouse"]
        assert SECRET not in text
    finally:
        server.stop()
    code, lines, text = doctor(capsys, "--warehouse", f"s3://{bucket}/w")
    assert code == 1 and failed(lines) == {"warehouse", "search"}
    assert "cannot reach" in lines["warehouse"] and "AWS_ENDPOINT_URL" in lines["warehouse"]
    assert SECRET not in text


def test_opensearch_backend_is_checked_when_configured(healthy, capsys, monkeypatch):
    monkeypatch.setenv("OPENSEARCH_URL", f"http://admin:{SECRET}@127.0.0.1:{free_port()}")
    code, lines, text = doctor(capsys, "--warehouse", str(healthy / "w"))
    assert code == 1 and failed(lines) == {"search"}
    assert "OpenSearch at http://127.0.0.1:" in lines["search"] and "unreachable" in lines["search"]
    assert SECRET not in text
