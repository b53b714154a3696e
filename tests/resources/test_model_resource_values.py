"""The model resources hold the values a run uses: the models from the settings (the UI shows
them, not None), ``HF_TOKEN`` as a ``dg.EnvVar`` when it is set (shown by name, resolved when
the run starts), nothing for it when unset (an unset EnvVar would fail the run)."""

from __future__ import annotations

import dagster as dg

from opentranscribe_pipeline.resources import AsrModelResource, DiarizationModelResource, TranslationModelResource


def _shown(resource: dg.ConfigurableResource) -> dict:
    """What the UI lists as the resource's configured values."""
    schema = resource.get_resource_definition().config_schema
    return schema.default_value if schema.default_provided else {}


def test_model_resources_show_the_models_a_run_uses(monkeypatch):
    monkeypatch.setenv("OPENTRANSCRIBE_ASR_MODEL", "packaged:tiny.en")
    monkeypatch.setenv("OPENTRANSCRIBE_DIARIZATION", "packaged-ge2e")
    monkeypatch.delenv("OPENTRANSCRIBE_TRANSLATION_MODEL", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_a-token")

    asr, diarization, translation = (
        AsrModelResource.from_settings(),
        DiarizationModelResource.from_settings(),
        TranslationModelResource.from_settings(),
    )
    assert _shown(asr)["model"] == "packaged:tiny.en" and _shown(asr)["hf_token"] == {"env": "HF_TOKEN"}
    assert _shown(diarization)["pipeline"] == "packaged-ge2e"
    assert _shown(translation)["model"] == "packaged:tiny.en"  # no translation model: the ASR model
    # built bare (tests, the CLI), the fields hold the same values, never None
    assert (AsrModelResource().model, DiarizationModelResource().pipeline) == ("packaged:tiny.en", "packaged-ge2e")
    assert TranslationModelResource().spec() == "packaged:tiny.en"

    seen = {}

    @dg.asset
    def probe(asr: AsrModelResource) -> None:
        seen.update(token=asr.hf_token, model=asr.model)

    assert dg.materialize([probe], resources={"asr": asr}).success
    assert seen == {"token": "hf_a-token", "model": "packaged:tiny.en"}  # resolved when the run starts

    monkeypatch.delenv("HF_TOKEN")
    assert "hf_token" not in AsrModelResource.from_settings().model_fields_set
