"""``speaker_clusters``, ``speaker_centroids``, ``speaker_suggestions``: archive-wide voices.

Not partitioned. ``mode: incremental`` assigns the speakers of the named batches to existing
voices (run by the ``assign_new_speakers`` sensor whenever ``speaker_embeddings`` lands for
a batch); ``mode: full`` re-clusters everything (the nightly schedule). Both keep ids
stable, and each run commits one generation of the archive-wide state (``speakers/state.py``:
a kill at any point or a second machine never loses or reuses an id). The logic is
Dagster-free, in ``speakers/`` (maths in ``cluster.py``, frames in ``identity.py``, the run
in ``runs.py``, the state in ``state.py``); this module calls it and reports.
"""

import base64
import time
from typing import Literal

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from ..resources import DiarizationModelResource, SpeakerClusteringResource, WarehouseResource
from ..settings import SPEAKER_INDEX_POOL
from ..speakers.identity import Assignment
from ..speakers.lease import SpeakerStateBusy
from ..speakers.names import MAX_NAME_CHARS, markdown_name
from ..speakers.runs import cluster_archive
from ..speakers.speaker_map import speaker_map_png
from ..speakers.state import ConcurrentSpeakerWrite
from .checks import markdown_table, schema_check_result, schema_check_spec, table_schema, table_spec

GROUP = "speakers"
CLUSTER_OP = "cluster_speakers"
PROFILE_IDS_CHECK = "profiles_name_known_speakers"
PROFILE_NAMES_CHECK = "profiles_names_are_valid"


class ClusterConfig(dg.Config):
    mode: Literal["full", "incremental"] = Field(
        default="full", description="full: re-cluster the archive; incremental: assign the speakers of `batch_ids`"
    )
    batch_ids: list[str] = Field(default_factory=list, description="batches to assign (incremental mode)")


def clustering_run_config(mode: Literal["full", "incremental"], batch_ids: list[str] | None = None) -> dict:
    """Run config of a clustering job (the sensor, the schedule's job and the CLI use it)."""
    return {"ops": {CLUSTER_OP: {"config": {"mode": mode, "batch_ids": list(batch_ids or [])}}}}


def _assignment_metadata(outcome: Assignment, batch_ids: list[str]) -> dict:
    report = outcome.report
    if report is None:
        return {"batches": ", ".join(batch_ids)[:2000], "new_local_speakers_assigned": outcome.newly_assigned}
    return {
        "ids_kept": report.kept_ids,
        "ids_new": report.new_ids,
        "merges": dg.MetadataValue.md(
            markdown_table(pl.DataFrame(report.merges, schema=["retired_id", "into"], orient="row"))
        ),
        "splits": dg.MetadataValue.md(
            markdown_table(pl.DataFrame(report.splits, schema=["id", "new_id"], orient="row"))
        ),
    }


def _confidence_metadata(rows: pl.DataFrame) -> dict:
    """How sure this run's memberships are (``speaker_clusters.confidence``), and the least
    sure ones: where a person should look first (``opentranscribe speakers split``)."""
    conf = rows["confidence"].drop_nulls() if rows.height else pl.Series([], dtype=pl.Float64)
    if conf.is_empty():
        return {}
    weakest = (
        rows.sort("confidence").head(10).select("global_speaker_id", "media_id", "speaker", "similarity", "confidence")
    )
    return {
        "membership_confidence_mean": round(float(conf.mean()), 4),
        "membership_confidence_min": round(float(conf.min()), 4),
        "memberships_below_0.5": int((conf < 0.5).sum()),
        "least_sure_memberships": dg.MetadataValue.md(markdown_table(weakest)),
    }


def _speaker_map(rows: pl.DataFrame, emb: pl.DataFrame) -> tuple[bytes, dg.MetadataValue]:
    vectors = rows.join(emb.select("media_id", "speaker", "embedding"), on=["media_id", "speaker"])["embedding"]
    png = speaker_map_png(np.asarray(vectors.to_numpy()), rows["global_speaker_id"].to_list())
    return png, dg.MetadataValue.md(f"![speaker map](data:image/png;base64,{base64.b64encode(png).decode()})")


def _spec(table: str, description: str, deps: list[str]) -> dg.AssetSpec:
    return table_spec(table, description, group=GROUP, deps=deps)


@dg.multi_asset(
    name=CLUSTER_OP,
    specs=[
        _spec(
            "speaker_clusters",
            "Archive-wide: the global speaker id of every (media, local speaker).",
            ["speaker_embeddings", "speaker_profiles"],
        ),
        _spec(
            "speaker_centroids",
            "Clustering state: one centroid per global id; merged ids point to their heir.",
            ["speaker_embeddings"],
        ),
        _spec(
            "speaker_suggestions",
            "Unnamed global speakers close to a named one, with a confidence.",
            ["speaker_profiles"],
        ),
    ],
    check_specs=[
        schema_check_spec("speaker_clusters"),
        schema_check_spec("speaker_centroids"),
        schema_check_spec("speaker_suggestions"),
        dg.AssetCheckSpec(
            PROFILE_IDS_CHECK,
            asset="speaker_suggestions",
            description="Every name in speaker_profiles refers to a global id the clustering knows.",
        ),
        dg.AssetCheckSpec(
            PROFILE_NAMES_CHECK,
            asset="speaker_suggestions",
            description=(
                f"Every name in speaker_profiles is one line of visible text of at most {MAX_NAME_CHARS} "
                "characters (no control or format characters); refused names are never shown."
            ),
        ),
    ],
    pool=SPEAKER_INDEX_POOL,
)
def cluster_speakers(
    context: dg.AssetExecutionContext,
    config: ClusterConfig,
    warehouse: WarehouseResource,
    diarization: DiarizationModelResource,
    clustering: SpeakerClusteringResource,
):
    """Global speaker ids: assign new batches (incremental) or re-cluster everything (full)."""
    wh = warehouse.get()
    model = diarization.embedding_model()
    params = clustering.params(model)
    started = time.perf_counter()
    try:
        run = cluster_archive(
            wh,
            mode=config.mode,
            model=model,
            params=params,
            accept_threshold=params.accept_threshold,
            suggest_threshold=params.suggest_threshold,
            batch_ids=config.batch_ids,
        )
    except ValueError as exc:  # incremental without batch ids
        raise dg.Failure(f"{exc} (the sensor and the CLI pass them)") from None
    except (ConcurrentSpeakerWrite, SpeakerStateBusy) as exc:
        raise dg.Failure(str(exc)) from None
    other = run.other_models
    if other.height:
        context.log.warning(
            "%d speaker embeddings were made by another model than %s (batches %s): they are not "
            "clustered (vectors of different models are never compared); re-materialize "
            "`diarization` for those batches to include them",
            other.height,
            model,
            sorted(set(other["batch_id"].to_list()))[:20],
        )
    rows = run.outcome.rows
    meta = {
        "mode": config.mode,
        "model": model,
        "threshold": params.threshold,
        "local_speakers_this_run": rows.height,
        "global_speakers_active": len(run.outcome.index),
        "embeddings_of_other_models_skipped": other.height,
        "generation": run.generation.number,
        "commit_attempts": run.attempts,
        "elapsed_s": round(time.perf_counter() - started, 3),
        **_assignment_metadata(run.outcome, sorted(config.batch_ids)),
    }
    meta |= _confidence_metadata(rows)
    if rows.height:
        png, meta["speaker_map"] = _speaker_map(rows, run.embeddings)
        wh.put_bytes(wh.path("_reports", "speaker_map.png"), png)
    yield dg.MaterializeResult(asset_key="speaker_clusters", metadata={**meta, "dagster/row_count": rows.height})
    yield dg.MaterializeResult(
        asset_key="speaker_centroids", metadata={"dagster/row_count": run.centroids.height, "model": model}
    )
    yield dg.MaterializeResult(
        asset_key="speaker_suggestions",
        metadata={
            "dagster/row_count": run.suggestions.height,
            "named_speakers": run.profiles.height,
            "name_conflicts_on_merge": dg.MetadataValue.md(
                "\n".join(f"- {markdown_name(c, limit=1000)}" for c in run.name_conflicts) or "(none)"
            ),
        },
    )
    yield schema_check_result("speaker_clusters", rows)
    yield schema_check_result("speaker_centroids", run.centroids)
    yield schema_check_result("speaker_suggestions", run.suggestions)
    yield dg.AssetCheckResult(
        asset_key="speaker_suggestions",
        check_name=PROFILE_IDS_CHECK,
        passed=not run.unknown_profile_ids,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"unknown_ids": ", ".join(run.unknown_profile_ids) or "(none)"},
    )
    for row in run.refused_names:
        context.log.warning(
            "speaker_profiles: the name of %s is refused and not used: %s", row.global_speaker_id, row.reason
        )
    yield dg.AssetCheckResult(
        asset_key="speaker_suggestions",
        check_name=PROFILE_NAMES_CHECK,
        passed=not run.refused_names,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "refused": len(run.refused_names),
            "refused_ids": ", ".join(r.global_speaker_id for r in run.refused_names) or "(none)",
            "reasons": dg.MetadataValue.md(
                "\n".join(f"- {markdown_name(r.line(), limit=1000)}" for r in run.refused_names[:100]) or "(none)"
            ),
        },
    )


speaker_profiles = dg.AssetSpec(
    "speaker_profiles",
    description="Names people gave to global speakers (`opentranscribe speakers name ID NAME`).",
    kinds={"parquet"},
    group_name=GROUP,
    metadata={"dagster/column_schema": table_schema("speaker_profiles")},
)
