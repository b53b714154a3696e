"""Write ``tests/data/summary_references.json``: the subject(s) of each fixture dialogue, the
reference the summary step's topics are checked against (tests/summaries).

The subjects are written here by hand, from reading each dialogue (sample archive:
``make_sample_archive.py``; translation fixtures: ``make_translation_fixtures.py``), before
any topic was extracted; per file and language, a topic must contain one of them. This script
checks that every subject occurs in its dialogue's text (so a changed dialogue fails here, not
in the test) and writes the JSON. Run from the project root::

    .venv/bin/python tests/data/make_summary_references.py
"""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).parent

SUBJECTS = {
    "interview 01.wav": {"en": ["recordings", "villages", "archive", "stories"]},
    "meeting-02.flac": {"en": ["budget", "storage servers", "migration", "plan"]},
    "radio_show_03.mp3": {"en": ["rain", "weather", "news", "roads"]},
    "podcast 04.m4a": {"en": ["tomatoes", "balcony", "garden", "planting"]},
    "lecture_05.ogg": {"en": ["river", "exam", "notes"]},
    "town hall 06.mp4": {"en": ["library", "council", "construction"]},
    "call-07.flac": {"en": ["laptop", "network", "help desk", "cable"]},
    "panel_08.wav": {"en": ["transport", "buses", "trains", "funding"]},
    "fr.flac": {"fr": ["bibliothèque", "livres"], "en": ["library", "books"]},
    "de.flac": {"de": ["krankenhaus", "betten"], "en": ["hospital", "beds"]},
    "es.flac": {"es": ["mercado", "fruta"], "en": ["market", "fruit"]},
    "overlap_en.flac": {"en": ["festival", "tickets", "prices"]},
}


def texts() -> dict[str, dict[str, str]]:
    sample = json.loads((DATA / "sample_archive" / "truth.json").read_text())
    translation = json.loads((DATA / "translation" / "truth.json").read_text())
    out = {Path(k).name: {"en": " ".join(t["text"] for t in v["turns"])} for k, v in sample.items()}
    for name, v in translation.items():
        out[name] = {v["language"]: " ".join(t["text"] for t in v["turns"])}
        if any("english" in t for t in v["turns"]):
            out[name]["en"] = " ".join(t["english"] for t in v["turns"])
    return out


def main() -> None:
    found = texts()
    assert set(found) == set(SUBJECTS), set(found) ^ set(SUBJECTS)
    for name, by_language in SUBJECTS.items():
        assert set(by_language) == set(found[name]), (name, by_language.keys(), found[name].keys())
        for language, subjects in by_language.items():
            for subject in subjects:
                assert subject in found[name][language].lower(), (name, language, subject)
    path = DATA / "summary_references.json"
    path.write_text(json.dumps(SUBJECTS, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
