"""Deterministic text helpers the roles use to write answers that derive from the request."""

import random
import re
from collections import Counter

WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9_'-]{3,}")
_STOPWORDS_TEXT = """
    about above after again against also among because been before being below between both
    could does doing down during each every from further have having here hers herself himself
    into itself just many more most much must myself need only other ought ours ourselves over
    own please same shall should some such than that their theirs them themselves then there
    these they this those through under until upon very want were what when where which while
    whom with within without would your yours yourself yourselves will make give tell write
    using used like into onto http https www com explain describe example read show
    list tell help then hello summarize
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def rng_for(digest: str, purpose: str) -> random.Random:
    """A random source fixed by the request digest (which includes the seed)."""
    return random.Random(f"{digest}:{purpose}")


URL_RE = re.compile(r"https?://\S+")


def keywords(text: str, limit: int = 5) -> list[str]:
    words = [w.lower().strip("'-") for w in WORD_RE.findall(URL_RE.sub(" ", text))]
    words = [w for w in words if w not in STOPWORDS and not w.startswith("sim")]
    counts = Counter(words)
    order = {word: index for index, word in reversed(list(enumerate(words)))}
    ranked = sorted(counts, key=lambda w: (-counts[w], order[w]))
    return ranked[:limit]


def summarize(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0]
    return cut + "…"


def title_from(words: list[str]) -> str:
    return " ".join(word.capitalize() for word in words[:3]) or "Answer"
