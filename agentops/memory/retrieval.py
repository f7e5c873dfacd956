"""Finding memories: ranking for the system prompt, search, near-duplicates, holdout.

Nothing here writes to the database. Search uses PostgreSQL full-text search when the
database is PostgreSQL and a portable term-overlap ranking otherwise (the embedded SQLite
default); both return the same kind of result.
"""

import hashlib
import math
import re
from dataclasses import dataclass

from django.db import connection

from .models import Memory, MemoryStatus, StoreAttachment

# Roughly four characters per token for English prose: enough to keep the prompt inside the
# attachment's budget without calling a tokenizer.
CHARS_PER_TOKEN = 4

# Two memories whose normalized word sets overlap this much (Jaccard index over title and
# content) say the same thing: a dream proposing the second one merges it into the first
# instead. 0.6 keeps rewordings ("refund window is 30 days" / "the refund window: 30 days
# after delivery") together and keeps apart memories that merely share a topic.
NEAR_DUPLICATE_THRESHOLD = 0.6

_WORD_RE = re.compile(r"[a-z0-9]+")
_STOPWORDS_TEXT = """
    a an and are as at be but by can do for from has have he her his i if in into is it
    its me my no not of on or our she so than that the their them then there these they this
    to was we were what when where which who will with you your all any also always should
    must may might would could been being about after before each every more most other
    some such only own same very just
"""
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def estimate_tokens(text):
    return math.ceil(len(text or "") / CHARS_PER_TOKEN)


def normalized_words(text):
    """Lower-case content words with a plural "s" dropped, for overlap measures."""
    words = []
    for word in _WORD_RE.findall((text or "").lower()):
        if word in _STOPWORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        words.append(word)
    return words


def _memory_words(title, content, tags=()):
    return set(normalized_words(f"{title} {content} {' '.join(tags or [])}"))


def similarity(a_title, a_content, b_title, b_content):
    """Jaccard index of the normalized word sets of two memories (0 to 1)."""
    a = _memory_words(a_title, a_content)
    b = _memory_words(b_title, b_content)
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def nearest_duplicate(title, content, candidates, *, threshold=NEAR_DUPLICATE_THRESHOLD):
    """The candidate memory most similar to (title, content) at or above the threshold, and
    its similarity; (None, 0.0) when none is that close."""
    best, best_score = None, 0.0
    for candidate in candidates:
        score = similarity(title, content, candidate.title, candidate.content)
        if score > best_score:
            best, best_score = candidate, score
    if best is None or best_score < threshold:
        return None, 0.0
    return best, best_score


def relevance(query_words, memory):
    """How well a memory matches a query: matching words, title matches counted twice,
    divided by the query's length so scores compare across queries."""
    if not query_words:
        return 0.0
    title_words = set(normalized_words(memory.title))
    body_words = set(normalized_words(f"{memory.content} {' '.join(memory.tags or [])}"))
    score = 0.0
    for word in set(query_words):
        if word in title_words:
            score += 2
        elif word in body_words:
            score += 1
    return score / len(set(query_words))


def rank_memories(memories, query_text):
    """Most relevant first; ties (and an empty query) go to the most recently updated."""
    query_words = normalized_words(query_text)
    memories = sorted(memories, key=lambda m: (m.updated_at, m.pk), reverse=True)
    return sorted(memories, key=lambda m: relevance(query_words, m), reverse=True)


def render_memory(memory):
    tags = f" (tags: {', '.join(memory.tags)})" if memory.tags else ""
    return f"### {memory.title} [memory {memory.pk}]{tags}\n{memory.content.strip()}\n"


def select_within_budget(memories, token_budget):
    """The ranked memories that fit the budget, in rank order: a memory too large for what
    is left is skipped so a smaller, less relevant one may still fit."""
    chosen, used = [], 0
    for memory in memories:
        cost = estimate_tokens(render_memory(memory))
        if used + cost <= token_budget:
            chosen.append(memory)
            used += cost
    return chosen


PROMPT_HEADER = (
    "# Memories\n"
    "Curated lessons and facts from your team's earlier work, most relevant first. "
    "Use them when they apply; the task in front of you takes precedence.\n"
)


@dataclass
class StoreSelection:
    attachment: StoreAttachment
    held_out: bool
    memories: list
    text: str  # this store's block of the prompt ("" when held out or empty)


def _agent_of(agent_or_version):
    return getattr(agent_or_version, "agent", None) or agent_or_version


def attachments_for(agent_or_version):
    agent = _agent_of(agent_or_version)
    return list(
        StoreAttachment.objects.filter(agent=agent, store__team_id=agent.team_id)
        .select_related("store")
        .order_by("store__name", "pk")
    )


def store_block(store, memories):
    if not memories:
        return ""
    lines = [f"## Memory store: {store.name}"]
    if store.instructions.strip():
        lines.append(store.instructions.strip())
    lines.append("")
    lines.extend(render_memory(memory) for memory in memories)
    return "\n".join(lines)


def select_for_prompt(agent_or_version, query_text, *, run_id=None):
    """What each attached store gives an agent's prompt: its active memories, most relevant
    to `query_text` first, within the attachment's token budget. For a run (`run_id`), a
    store whose attachment holds this run out gives nothing, so outcomes can be compared."""
    selections = []
    for attachment in attachments_for(agent_or_version):
        store = attachment.store
        if run_id is not None and is_held_out(run_id, attachment.holdout_share, store.pk):
            selections.append(StoreSelection(attachment, True, [], ""))
            continue
        active = Memory.objects.filter(store=store, status=MemoryStatus.ACTIVE)
        chosen = select_within_budget(rank_memories(active, query_text), attachment.token_budget)
        selections.append(StoreSelection(attachment, False, chosen, store_block(store, chosen)))
    return selections


def prompt_text(blocks):
    """The memory section of a system prompt from the stores' blocks ("" when none)."""
    blocks = [block for block in blocks if block]
    return PROMPT_HEADER + "\n" + "\n".join(blocks) if blocks else ""


def memories_for_prompt(agent_or_version, query_text, *, run_id=None):
    """(text block, memory ids) of the active memories an agent's run is given."""
    selections = select_for_prompt(agent_or_version, query_text, run_id=run_id)
    ids = [memory.pk for selection in selections for memory in selection.memories]
    return prompt_text([selection.text for selection in selections]), ids


def is_held_out(run_id, holdout_share, salt=""):
    """Whether a run goes without a store's memories. Fixed by the run id (and the store),
    so a retried step decides the same way, and a share of `holdout_share` of runs is out."""
    if not holdout_share:
        return False
    digest = hashlib.sha256(f"holdout:{salt}:{run_id}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return fraction < holdout_share


def search_memories(queryset, query):
    """Memories of `queryset` matching `query`, best first (a list)."""
    query = (query or "").strip()
    if not query:
        return list(queryset)
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

        vector = SearchVector("title", weight="A", config="english") + SearchVector(
            "content", weight="B", config="english"
        )
        words = normalized_words(query)
        if not words:
            return []
        # Any word may match (ranked by how many do, and where): an agent's or a person's
        # query is often a whole sentence, which an all-words query would rarely match.
        # The words are [a-z0-9]+ only, so they are safe in a raw tsquery.
        search = SearchQuery(" | ".join(dict.fromkeys(words)), search_type="raw", config="english")
        return list(
            queryset.annotate(document=vector, rank=SearchRank(vector, search))
            .filter(document=search)
            .order_by("-rank", "-updated_at", "-pk")
        )
    return _portable_search(queryset, query)


def _portable_search(queryset, query):
    words = normalized_words(query)
    if not words:
        return []
    scored = []
    for memory in queryset:
        score = relevance(words, memory)
        if score > 0:
            scored.append((score, memory))
    scored.sort(key=lambda pair: (pair[0], pair[1].updated_at, pair[1].pk), reverse=True)
    return [memory for _, memory in scored]


def memory_search(store, query, limit=5):
    """Active memories of one store matching `query`, best first, at most `limit`."""
    active = Memory.objects.filter(store=store, status=MemoryStatus.ACTIVE)
    return search_memories(active, query)[:limit]
