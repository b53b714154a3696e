"""Dagster code versions: what the UI compares to mark outputs stale.

A step's code version is its own version (bumped here when a change to its code changes its
output) plus the version of the model the deployment is configured with: the environment
(``OPENTRANSCRIBE_ASR_MODEL``, ``OPENTRANSCRIBE_DIARIZATION``) or the defaults, read when the
definitions load. Point the deployment at another model, or upgrade the package holding a
packaged one, and reload the code location: the UI shows ``transcripts`` (or
``diarization``) and everything downstream as stale. A backfill of the stale partitions then
redoes only the files whose per-file ``model_version`` differs from the model now used;
files already made with it are kept (``modelstep.current_ids``).

A model chosen per run in the launchpad still decides what is redone (per-file versions),
but only the deployment's model is visible as a code version.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from .. import settings
from ..resources.quality import QUALITY_STEP_VERSION
from ..resources.summaries import summary_code_version
from ..speech.diarize import pipeline_version
from ..speech.models import asr_model_version
from .media import INGEST_VERSION

# bump the step's number when its code changes what it writes
STEP_VERSIONS = {
    "ingest": INGEST_VERSION,
    # /2: word edges kept out of VAD pauses; /3: language prior, no music words (issue 29);
    # /4: asr_segments carry Whisper's no_speech_prob (issue 32): every file is transcribed again once
    "transcribe": "transcribe/4",
    "diarize": "diarize/2",  # /2: split at pauses + joins on by default (issue 30)
    "attribute_speakers": "attribute/1",
    "cluster_speakers": "cluster/1",
    "translate": "translate/1",
    "conversation_analytics": "stats/1",
    "exports": "exports/3",  # /2: subtitle cues follow the words (issue 29); /3: JSON carries the summary (issue 34)
    "embed_chunks": "chunks/1",
    "search_index": "search_index/1",
    "score_quality": QUALITY_STEP_VERSION,
    "summarize": "summaries/1",
}


def code_versions() -> dict[str, str]:
    """Code version per step (op) name, for the models configured in this environment."""
    asr = settings.asr_model()
    diarization = settings.diarization_pipeline()
    versions = dict(STEP_VERSIONS)
    versions["transcribe"] += f"|{asr}|{asr_model_version(asr)}"
    versions["diarize"] += f"|{pipeline_version(diarization)}"
    translation = settings.translation_model() or asr
    versions["translate"] += f"|{translation}|{asr_model_version(translation)}"
    versions["embed_chunks"] += f"|{settings.text_embedding_model()}"
    from ..speech.quality import dnsmos_version

    versions["score_quality"] += f"|{dnsmos_version()}|floor={settings.quality_floor():g}"
    versions["summarize"] += f"|{summary_code_version()}"
    return versions


def with_code_versions(assets: Iterable) -> list:
    """The same assets, every spec carrying its step's code version."""
    versions = code_versions()
    out = []
    for a in assets:
        if isinstance(a, dg.AssetsDefinition) and a.node_def.name in versions:
            version = versions[a.node_def.name]
            a = a.map_asset_specs(lambda spec, v=version: spec.replace_attributes(code_version=v))
        out.append(a)
    return out
