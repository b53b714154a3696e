"""The resources of the code location carry the values a run uses: real defaults from the
settings (the UI shows them), endpoints and secrets as ``dg.EnvVar`` (the UI shows the
variable's name; the run resolves its value)."""

from __future__ import annotations

import dagster as dg

from opentranscribe_pipeline.resources import SearchResource, TextEmbeddingResource, WarehouseResource


def test_code_location_resources_hold_values_and_env_vars(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENTRANSCRIBE_WAREHOUSE", str(tmp_path / "wh"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "a-secret-key")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("OPENSEARCH_PASSWORD", "a-password")
    for name in ("OPENSEARCH_URL", "OPENSEARCH_USER", "OPENTRANSCRIBE_SEARCH_BACKEND", "OPENSEARCH_INDEX_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OPENTRANSCRIBE_TEXT_EMBEDDING_MODEL", raising=False)

    warehouse = WarehouseResource.from_settings()
    assert warehouse.root == str(tmp_path / "wh")
    assert isinstance(warehouse.s3_secret_access_key, dg.EnvVar)
    assert warehouse.s3_secret_access_key.env_var_name == "AWS_SECRET_ACCESS_KEY"
    assert warehouse.s3_access_key_id is None  # unset: no EnvVar that would fail the run

    search = SearchResource.from_settings()
    assert (search.backend, search.index_prefix, search.lancedb_uri) == ("lancedb", "opentranscribe", None)
    assert search.opensearch_password.env_var_name == "OPENSEARCH_PASSWORD" and search.opensearch_url is None
    assert TextEmbeddingResource().model == "packaged:all-minilm-l6-v2"  # a real default, not None

    seen = {}

    @dg.asset
    def probe(warehouse: WarehouseResource, search: SearchResource) -> None:
        seen.update(root=warehouse.get().root_uri, key=warehouse.s3_secret_access_key, pw=search.opensearch_password)

    assert dg.materialize([probe], resources={"warehouse": warehouse, "search": search}).success
    assert seen["key"] == "a-secret-key" and seen["pw"] == "a-password"  # resolved when the run starts
    assert seen["root"].rstrip("/").endswith("wh")
