"""Summaries from any OpenAI-compatible chat endpoint (vLLM, Ollama, a hosted API).

Dagster-free: ``assets/summaries.py`` hands in a :class:`ChatConfig` from its resource.

- **client** (:class:`ChatClient`): ``POST {base_url}/chat/completions`` through httpx when it
  is installed, else urllib; 429 and 5xx (and a connection that fails) are retried with
  exponential backoff and jitter, honouring ``Retry-After`` (seconds or an HTTP date), up to
  ``max_retries``; the key goes only into the ``Authorization`` header and is never in a
  message, a log line or a row (:func:`redact`).
- **map-reduce** (:func:`split_lines`, :func:`summarize_llm`): the transcript is numbered lines
  (``[12] SPEAKER_01 03:25 text``); lines are packed into parts that fit the context window
  (tokens estimated from characters, ``chars_per_token``), each part is summarized (map), and
  the partial summaries are summarized again, in groups that fit, until one is left (reduce).
  Key points cite line numbers, so each gets the time range and speaker of the lines it cites.
- **budget** (:class:`TokenBudget`): tokens spent by the batch; a file whose estimate does
  not fit what is left is skipped (``skipped: token budget``) before any request.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

DEFAULT_SYSTEM_PROMPT = (
    "You summarize transcripts of recordings for an archive. Answer with one JSON object and nothing else."
)
DEFAULT_MAP_PROMPT = (
    "Below are numbered lines of a transcript in {language} (part {part} of {parts}); each line is "
    "[number] speaker time: text.\n"
    'Return JSON: {{"summary": two to four sentences in {language}, "key_points": up to 7 items '
    '{{"text": one sentence in {language}, "lines": [numbers of the lines it comes from]}}, '
    '"topics": up to 8 short keyphrases in {language}}}.\n\n{text}'
)
DEFAULT_REDUCE_PROMPT = (
    "Below are summaries of consecutive parts of one recording in {language}, with key points citing "
    "transcript line numbers.\n"
    'Merge them into one. Return JSON: {{"summary": three to five sentences in {language}, '
    '"key_points": 3 to 7 items {{"text": one sentence, "lines": [line numbers from the key points '
    'below]}}, "topics": up to 8 short keyphrases}}.\n\n{text}'
)


class LLMError(RuntimeError):
    """The endpoint failed for good (after retries) or answered something unusable."""


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


@dataclass(frozen=True)
class ChatConfig:
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 120.0
    max_retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    temperature: float = 0.0
    max_output_tokens: int = 800
    context_tokens: int = 8192
    chars_per_token: float = 4.0
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    map_prompt: str = DEFAULT_MAP_PROMPT
    reduce_prompt: str = DEFAULT_REDUCE_PROMPT

    def prompt_version(self) -> str:
        """Changes with any prompt text or the generation settings that shape the answer."""
        text = "\x00".join(
            [
                self.system_prompt,
                self.map_prompt,
                self.reduce_prompt,
                f"{self.temperature}",
                f"{self.max_output_tokens}",
            ]
        )
        return "prompt-" + hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ChatReply:
    text: str
    input_tokens: int
    output_tokens: int


def retry_after_s(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (a number or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _post(url: str, headers: dict, body: bytes, timeout: float) -> tuple[int, dict, bytes]:
    """(status, headers with lower-case names, body); a connection failure raises OSError."""
    try:
        import httpx
    except ImportError:
        httpx = None
    if httpx is not None:
        try:
            r = httpx.post(url, content=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            raise OSError(str(exc)) from None
        return r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()}, exc.read() or b""


class ChatClient:
    """One endpoint and model; ``sleep`` is how it waits between tries (tests pass a recorder)."""

    def __init__(self, config: ChatConfig, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.sleep = sleep
        self.requests = 0
        self.waits: list[float] = []

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        c = self.config
        backoff = min(c.max_backoff_s, c.backoff_s * 2**attempt) * (1 + 0.25 * random.random())
        return min(c.max_backoff_s, max(backoff, retry_after or 0.0))

    def complete(self, messages: Sequence[dict]) -> ChatReply:
        c = self.config
        url = c.base_url.rstrip("/") + "/chat/completions"
        body = json.dumps(
            {
                "model": c.model,
                "messages": list(messages),
                "temperature": c.temperature,
                "max_tokens": c.max_output_tokens,
            }
        ).encode()
        last = ""
        for attempt in range(c.max_retries + 1):
            self.requests += 1
            try:
                status, headers, payload = _post(url, self._headers(), body, c.timeout_s)
            except OSError as exc:
                status, headers, payload, last = None, {}, b"", f"connection failed: {exc}"
            if status == 200:
                return self._reply(payload, messages)
            if status is not None:
                last = f"HTTP {status}: {payload[:300].decode('utf-8', 'replace')}"
                if status not in RETRY_STATUSES:
                    raise LLMError(redact(f"{c.base_url} answered {last}", c.api_key))
            if attempt == c.max_retries:
                break
            wait = self._wait(attempt, retry_after_s(headers.get("retry-after")))
            log.warning("chat endpoint: %s; try %d again in %.1f s", redact(last, c.api_key)[:200], attempt + 2, wait)
            self.waits.append(wait)
            self.sleep(wait)
        raise LLMError(redact(f"{c.base_url} failed after {c.max_retries + 1} tries: {last}", c.api_key))

    def _reply(self, payload: bytes, messages: Sequence[dict]) -> ChatReply:
        try:
            data = json.loads(payload)
            text = data["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"not a chat-completions answer ({exc}): {payload[:200]!r}") from None
        usage = data.get("usage") or {}
        sent = sum(len(m.get("content") or "") for m in messages)
        return ChatReply(
            text,
            int(usage.get("prompt_tokens") or estimate_tokens("x" * sent, self.config.chars_per_token)),
            int(usage.get("completion_tokens") or estimate_tokens(text, self.config.chars_per_token)),
        )


# -- budget ---------------------------------------------------------------------------------------
def estimate_tokens(text: str, chars_per_token: float = 4.0) -> int:
    return math.ceil(len(text) / max(0.1, chars_per_token))


@dataclass
class TokenBudget:
    """Tokens the batch may spend (None: no limit) and has spent."""

    limit: int | None
    used: int = 0

    def allows(self, estimate: int) -> bool:
        return self.limit is None or self.used + estimate <= self.limit

    def charge(self, tokens: int) -> None:
        self.used += tokens

    @property
    def left(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)


# -- map-reduce -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    number: int
    start_s: float
    end_s: float
    speaker: str | None
    text: str

    def render(self) -> str:
        m, s = divmod(int(self.start_s), 60)
        return f"[{self.number}] {self.speaker or '?'} {m:02d}:{s:02d}: {self.text}"


def part_budget(config: ChatConfig) -> int:
    """Tokens of transcript one request may carry: the window less the prompt and the answer."""
    overhead = estimate_tokens(config.system_prompt + config.map_prompt, config.chars_per_token) + 64
    room = config.context_tokens - config.max_output_tokens - overhead
    if room < 64:
        raise LLMError(
            f"context_tokens {config.context_tokens} leaves no room for a transcript beside the prompt and "
            f"max_output_tokens {config.max_output_tokens}"
        )
    return room


def split_lines(rendered: Sequence[str], max_tokens: int, chars_per_token: float = 4.0) -> list[list[int]]:
    """Consecutive runs of line indices whose rendered text fits ``max_tokens`` each; a line
    alone over it is a part of its own (its text is cut by :func:`fit`)."""
    parts: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, text in enumerate(rendered):
        cost = estimate_tokens(text + "\n", chars_per_token)
        if current and size + cost > max_tokens:
            parts.append(current)
            current, size = [], 0
        current.append(i)
        size += cost
    if current:
        parts.append(current)
    return parts


def fit(text: str, max_tokens: int, chars_per_token: float) -> str:
    limit = int(max_tokens * chars_per_token)
    return text if len(text) <= limit else text[:limit]


def parse_json(text: str) -> dict:
    """The JSON object of an answer (code fences and chatter around it ignored)."""
    m = re.search(r"\{.*\}", text, re.S)
    if not m:
        raise LLMError(f"the model's answer holds no JSON object: {text[:200]!r}")
    try:
        data = json.loads(m.group(0))
    except ValueError as exc:
        raise LLMError(f"the model's answer is not valid JSON ({exc}): {text[:200]!r}") from None
    if not isinstance(data, dict):
        raise LLMError("the model's answer is not a JSON object")
    return data


@dataclass
class LLMSummary:
    summary: str | None
    key_points: list[dict]  # text, start_s, end_s, speaker
    topics: list[str]
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0


def _points(data: dict, lines: dict[int, Line]) -> list[dict]:
    out = []
    for kp in data.get("key_points") or []:
        if not isinstance(kp, dict) or not str(kp.get("text") or "").strip():
            continue
        cited = [lines[n] for n in kp.get("lines") or [] if isinstance(n, int) and n in lines]
        if not cited:
            continue  # a point that cites no line of the transcript has no time: left out
        speakers = [ln.speaker for ln in cited]
        out.append(
            {
                "text": str(kp["text"]).strip(),
                "start_s": min(ln.start_s for ln in cited),
                "end_s": max(ln.end_s for ln in cited),
                "speaker": max(set(speakers), key=speakers.count) if speakers else None,
                "lines": sorted(ln.number for ln in cited),
            }
        )
    return out[:7]


def estimate_file_tokens(lines: Sequence[Line], config: ChatConfig) -> int:
    """What summarizing these lines will cost, about: the transcript, one prompt and one
    answer per part, and the reduce rounds."""
    rendered = [ln.render() for ln in lines]
    parts = split_lines(rendered, part_budget(config), config.chars_per_token) if lines else []
    prompt = estimate_tokens(config.system_prompt + config.map_prompt, config.chars_per_token)
    total = sum(estimate_tokens(t + "\n", config.chars_per_token) for t in rendered)
    n = len(parts) + (math.ceil(len(parts) / 2) if len(parts) > 1 else 0)
    return total + n * (prompt + config.max_output_tokens)


def summarize_llm(client: ChatClient, lines: Sequence[Line], language: str) -> LLMSummary:
    """Map over the parts that fit the window, then reduce the partial summaries until one is left."""
    c = client.config
    by_number = {ln.number: ln for ln in lines}
    if not lines:
        return LLMSummary(None, [], [])
    rendered = [ln.render() for ln in lines]
    budget = part_budget(c)
    parts = split_lines(rendered, budget, c.chars_per_token)
    result = LLMSummary(None, [], [])

    def ask(prompt: str) -> dict:
        reply = client.complete([{"role": "system", "content": c.system_prompt}, {"role": "user", "content": prompt}])
        result.input_tokens += reply.input_tokens
        result.output_tokens += reply.output_tokens
        result.requests += 1
        return parse_json(reply.text)

    partials = []
    for k, part in enumerate(parts):
        text = fit("\n".join(rendered[i] for i in part), budget, c.chars_per_token)
        data = ask(c.map_prompt.format(language=language, part=k + 1, parts=len(parts), text=text))
        partials.append(data)
    while len(partials) > 1:
        blocks = [json.dumps({**p, "key_points": _points(p, by_number)}, ensure_ascii=False) for p in partials]
        groups = split_lines(blocks, budget, c.chars_per_token)
        if len(groups) == len(partials) and len(groups) > 1:  # each alone fills a window: pair them anyway
            groups = [list(range(i, min(i + 2, len(blocks)))) for i in range(0, len(blocks), 2)]
        partials = [
            ask(
                c.reduce_prompt.format(
                    language=language, text=fit("\n".join(blocks[i] for i in g), budget, c.chars_per_token)
                )
            )
            for g in groups
        ]
    final = partials[0]
    result.summary = str(final.get("summary") or "").strip() or None
    result.key_points = [{k: v for k, v in p.items() if k != "lines"} for p in _points(final, by_number)]
    result.topics = [str(t).strip() for t in final.get("topics") or [] if str(t).strip()][:8]
    return result
