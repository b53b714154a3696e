"""Topics of a transcript: keyphrases by embedding similarity, KeyBERT-style, no new dependency.

Candidates are the 1-3 word n-grams of the text without a stopword (never crossing a
sentence end), the most frequent ``max_candidates`` of them (longer
phrases weigh a little more); each is embedded with the same text model as the transcript's
sentences, scored by cosine similarity to the transcript's embedding (the centroid of its
sentences), and the ``top_n`` are picked by maximal marginal relevance (KeyBERT's MMR:
``(1 - diversity) * similarity to the document - diversity * similarity to the phrases
already picked``), so "new library" and "library" are not both topics.

Stopword lists cover English, French, German, Spanish, Italian, Portuguese and Dutch (short
lists written here); another language gets no stopwords beyond words of one or two letters,
and its English version (from ``segments_en``) gives the comparable topics.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

Encode = Callable[[list[str]], np.ndarray]  # texts -> (n, dim) float32 unit vectors

_STOP = {
    "en": """a about above after again against all also am an and any are as at be because been before being
        below between both but by can could did do does doing done down during each even every few for from
        further get gets getting go going gone got had has have having he her here hers herself him himself his
        how i if in into is it its itself just let lets like made make many may me more most much must my
        myself need no nor not now of off oh ok okay on once one only or other our ours ourselves out over own
        please really right said same say says see she should so some such sure take than thank thanks that
        thats the their theirs them themselves then there these they thing things think this those though
        through to today too under until up us use very want was way we tell talk talking know well were what when where which while
        who whom why will with would yeah yes yet you your yours yourself yourselves i'm it's don't can't
        we're you're that's there's let's i'll we'll will not isn't didn't doesn't""",
    "fr": """a à au aux avec ce ces cette c'est dans de des du elle elles en est et été être eu il ils je la le
        les leur leurs lui ma mais me même mes moi mon ne nos notre nous on ont ou où par pas pour qu que qui
        sa se ses son sont sur ta te tes toi ton tu un une vos votre vous y très bien aussi alors comme donc
        fait faire plus tout tous toute toutes avons avez vais va allons aujourd'hui merci beaucoup bonjour oui
        non cela ça""",
    "de": """aber alle allem allen aller alles als also am an auch auf aus bei bin bis bist da damit dann das
        dass dem den der des die dies diese diesem diesen dieser dieses doch dort du durch ein eine einem einen
        einer eines er es etwas für hat habe haben hier ich ihr ihre im in ist ja jetzt kann kein keine mit
        muss nach nicht noch nun nur ob oder ohne sehr sein seine sich sie sind so über um und uns unser unter
        viel vom von vor war waren was weil wenn wer wie wir wird wo zu zum zur heute danke guten tag gut""",
    "es": """a al algo como con de del donde el ella ellos en es esta está este esto estos fue ha hay la las le
        les lo los me mi mis muy más nada ni no nos nosotros o para pero por que qué se ser si sí sin sobre su
        sus también te tiene todo todos tu un una uno unos usted y ya yo hola gracias hoy bien muchas muchos""",
    "it": """a ad al alla alle anche che chi ci come con da dal dalla del della delle di e è gli ha hanno ho i
        il in io la le lei lo loro lui ma mi ne nel nella no noi non o per più quando questo questa se si sono
        su sua suo tu tutto un una uno voi molto grazie oggi""",
    "pt": """a ao aos as com como da das de do dos e é ela ele eles em entre era essa esse esta este eu foi há
        isso isto já la lhe mais mas me meu minha muito na nas não no nos nós o os ou para pela pelo por que
        se sem ser seu sua são também te tem um uma você obrigado hoje""",
    "nl": """aan al als bij dan dat de der deze die dit doch door een en er had heb hebben het hij hoe hun ik
        in is je kan maar me met mij na naar niet nog nu of om omdat ons ook op over te tot u uit van voor
        was wat we wel werd wij wil worden zal ze zich zijn zo zou dank vandaag""",
}
STOPWORDS = {lang: frozenset(words.split()) for lang, words in _STOP.items()}

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s*")


def stopwords(language: str | None) -> frozenset[str]:
    return STOPWORDS.get((language or "").lower()[:2], frozenset())


def candidates(texts: Sequence[str], language: str | None, *, max_n: int = 3, max_candidates: int = 200) -> list[str]:
    """The n-grams worth embedding, most frequent first (ties: first seen)."""
    stop = stopwords(language)
    counts: Counter[str] = Counter()
    for text in texts:
        for sentence in _SENTENCE_END.split(text):
            tokens = [t.replace("’", "'") for t in _WORD.findall(sentence.lower())]
            for n in range(1, max_n + 1):
                for i in range(len(tokens) - n + 1):
                    gram = tokens[i : i + n]
                    if any(t in stop for t in gram):  # as KeyBERT's CountVectorizer(stop_words=...)
                        continue
                    if n == 1 and len(gram[0]) < 3:
                        continue
                    counts[" ".join(gram)] += 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1] * (1 + 0.5 * (kv[0].count(" "))))
    return [gram for gram, _ in ranked[:max_candidates]]


def mmr(doc_sim: np.ndarray, pair_sim: np.ndarray, top_n: int, diversity: float) -> list[int]:
    """Indices picked by maximal marginal relevance, best first."""
    if not len(doc_sim) or top_n <= 0:
        return []
    picked = [int(np.argmax(doc_sim))]
    rest = [i for i in range(len(doc_sim)) if i != picked[0]]
    while rest and len(picked) < top_n:
        redundancy = pair_sim[np.ix_(rest, picked)].max(axis=1)
        score = (1 - diversity) * doc_sim[rest] - diversity * redundancy
        best = rest[int(np.argmax(score))]
        picked.append(best)
        rest.remove(best)
    return picked


def keyphrases(
    texts: Sequence[str],
    language: str | None,
    encode: Encode,
    doc_vector: np.ndarray,
    *,
    top_n: int = 8,
    diversity: float = 0.5,
    max_candidates: int = 200,
) -> list[tuple[str, float]]:
    """``(phrase, weight)`` best first; ``weight`` is the phrase's cosine similarity to the
    transcript, clipped to [0, 1]. ``doc_vector``: the transcript's unit embedding."""
    cands = candidates(texts, language, max_candidates=max_candidates)
    if not cands:
        return []
    vectors = encode(cands)
    doc_sim = vectors @ doc_vector
    order = mmr(doc_sim, vectors @ vectors.T, top_n, diversity)
    picked = [(cands[i], float(min(1.0, max(0.0, doc_sim[i])))) for i in order]
    return sorted(picked, key=lambda kv: -kv[1])  # as KeyBERT: the picks by similarity
