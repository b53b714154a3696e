"""Which language a file is in when Whisper's detector is unsure: the batch's, or a fallback."""

from __future__ import annotations

from typing import NamedTuple


class LanguageGuess(NamedTuple):
    language: str
    probability: float
    source: str = "detected"  # or "batch" / "fallback": an unsure detection took that language


def choose_language(
    probabilities: list[tuple[str, float]],
    priors: list[tuple[str, str]],
    floor: float,
    ratio: float,
) -> LanguageGuess:
    """The detector's most probable language, unless it is unsure (its probability under
    ``floor``): then the first of ``priors`` (``(language, source)``: the batch's majority,
    then the configured fallback) that the detector gives at least ``ratio`` times its top
    probability. One phrase is too little speech for Whisper's detector: on 500 one-phrase
    English clips (espeak-ng and flite voices) 21 came out German, Japanese, Polish, Russian,
    Arabic... with probabilities 0.18-0.69 and English second or third at 0.07-0.32 (2 left
    with English under a fifth of the top). A long file the detector is unsure of keeps its
    language when the prior is far less likely (a 14 s German dialogue: de 0.66, en 0.07).
    The probability recorded is the detector's for the language chosen."""
    top, p_top = probabilities[0]
    if p_top >= floor:
        return LanguageGuess(top, float(p_top))
    given = dict(probabilities)
    for language, source in priors:
        p = given.get(language, 0.0)
        if language == top:
            return LanguageGuess(top, float(p_top))
        if p >= ratio * p_top:
            return LanguageGuess(language, float(p), source)
    return LanguageGuess(top, float(p_top))
