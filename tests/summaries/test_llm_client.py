"""The chat client against a small real HTTP server on loopback (stdlib http.server speaking
the chat-completions shape): retries with backoff on 429/5xx honouring Retry-After, the key
only in the Authorization header, map-reduce over a 3-hour transcript, the token budget.

This tests the client, not a model. The real-LLM test at the end runs only when
``OPENTRANSCRIBE_TEST_LLM_URL`` (+ ``OPENTRANSCRIBE_TEST_LLM_MODEL``, optional
``OPENTRANSCRIBE_TEST_LLM_API_KEY``) is set; otherwise it is skipped (untested here)."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from opentranscribe_pipeline.deliver import llm

KEY = "sk-test-secret-0123456789"


class FakeChat:
    """A chat-completions server: answers from ``script`` (status, headers, body) in order,
    then a JSON summary citing the first line number it sees; records every request."""

    def __init__(self):
        self.script: list[tuple[int, dict, str]] = []
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if outer.script:
                    status, headers, text = outer.script.pop(0)
                else:
                    status, headers, text = 200, {}, outer.answer(body)
                data = text.encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @staticmethod
    def answer(body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        cited = [int(n) for n in re.findall(r"\[(\d+)\] ", prompt)] or [
            int(n) for n in re.findall(r'"lines": \[(\d+)', prompt)
        ]
        content = json.dumps(
            {
                "summary": f"A part with {len(cited)} cited lines.",
                "key_points": [{"text": "The first line matters.", "lines": cited[:1]}],
                "topics": ["archives", "planning"],
            }
        )
        usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(content) // 4}
        return json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}], "usage": usage})

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chat():
    server = FakeChat()
    yield server
    server.close()


def client(url: str, **kw) -> tuple[llm.ChatClient, list[float]]:
    waits: list[float] = []
    config = llm.ChatConfig(base_url=url, model="test-model", api_key=KEY, backoff_s=0.5, **kw)
    return llm.ChatClient(config, sleep=waits.append), waits


def test_retries_429_and_5xx_honouring_retry_after_then_answers(chat, caplog):
    chat.script = [
        (429, {"Retry-After": "7"}, '{"error": "slow down"}'),
        (503, {}, "unavailable"),
        (500, {}, f"echo {KEY}"),  # a server echoing the key: never in a log line
    ]
    c, waits = client(chat.url)
    with caplog.at_level(logging.WARNING):
        reply = c.complete([{"role": "user", "content": "hello"}])
    assert json.loads(reply.text)["topics"] == ["archives", "planning"]
    assert len(chat.requests) == 4 and c.requests == 4
    assert waits[0] >= 7  # Retry-After over the first backoff (0.5 s)
    assert 0.5 * 2 <= waits[1] <= 0.5 * 2 * 1.25 and 0.5 * 4 <= waits[2] <= 0.5 * 4 * 1.25  # doubled each try
    assert all(r["auth"] == f"Bearer {KEY}" and r["path"] == "/v1/chat/completions" for r in chat.requests)
    assert chat.requests[0]["body"]["model"] == "test-model"
    assert KEY not in caplog.text and "***" in caplog.text


def test_gives_up_after_max_retries_and_a_4xx_is_not_retried(chat):
    chat.script = [(502, {}, "bad gateway")] * 3
    c, waits = client(chat.url, max_retries=2)
    with pytest.raises(llm.LLMError, match="failed after 3 tries: HTTP 502"):
        c.complete([{"role": "user", "content": "x"}])
    assert len(waits) == 2
    chat.script = [(401, {}, f"bad key {KEY}")]
    c, waits = client(chat.url)
    with pytest.raises(llm.LLMError) as err:
        c.complete([{"role": "user", "content": "x"}])
    assert "HTTP 401" in str(err.value) and KEY not in str(err.value) and not waits
    assert KEY not in repr(c.config)


def test_retry_after_as_an_http_date():
    assert llm.retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: no wait
    assert llm.retry_after_s("2.5") == 2.5 and llm.retry_after_s(None) is None and llm.retry_after_s("soon") is None


def three_hours(words_per_line: int = 25) -> list[llm.Line]:
    """A 3-hour transcript: a line every 6 s, two speakers, ~27k words."""
    return [
        llm.Line(
            i, i * 6.0, i * 6.0 + 5.5, f"SPEAKER_0{i % 2}", " ".join(f"word{i}-{k}" for k in range(words_per_line))
        )
        for i in range(1800)
    ]


def test_map_reduce_splitting_of_a_three_hour_transcript_fits_every_window():
    lines = three_hours()
    rendered = [ln.render() for ln in lines]
    for window in (2048, 8192, 32768):
        config = llm.ChatConfig(base_url="http://unused", model="m", context_tokens=window)
        budget = llm.part_budget(config)
        parts = llm.split_lines(rendered, budget, config.chars_per_token)
        # every line once, in order, consecutive parts; each part fits beside the prompt and answer
        assert [i for p in parts for i in p] == list(range(len(lines)))
        assert all(sum(llm.estimate_tokens(rendered[i] + "\n") for i in p) <= budget for p in parts)
        total = sum(llm.estimate_tokens(t + "\n") for t in rendered)
        assert len(parts) == pytest.approx(total / budget, rel=0.1, abs=1)
    with pytest.raises(llm.LLMError, match="no room"):
        llm.part_budget(llm.ChatConfig(base_url="x", model="m", context_tokens=600, max_output_tokens=500))


def test_map_reduce_over_three_hours_against_the_server_cites_real_lines(chat):
    lines = three_hours()
    c, _ = client(chat.url, context_tokens=16384)
    out = llm.summarize_llm(c, lines, "English")
    n_parts = len(llm.split_lines([ln.render() for ln in lines], llm.part_budget(c.config)))
    assert n_parts > 5 and len(chat.requests) > n_parts  # map requests, then reduce rounds
    # every request fits the window (the server sees what was sent)
    assert all(
        llm.estimate_tokens("".join(m["content"] for m in r["body"]["messages"])) + 800 <= 16384 for r in chat.requests
    )
    assert out.summary and out.topics == ["archives", "planning"]
    [kp] = out.key_points  # cites a line: gets that line's time and speaker
    assert kp["start_s"] == lines[0].start_s and kp["speaker"] == "SPEAKER_00"
    assert out.input_tokens > 0 and out.requests == len(chat.requests)


def test_token_budget_estimate_and_accounting():
    lines = three_hours()
    config = llm.ChatConfig(base_url="x", model="m")
    estimate = llm.estimate_file_tokens(lines, config)
    assert estimate > sum(llm.estimate_tokens(ln.render()) for ln in lines)
    budget = llm.TokenBudget(estimate + 10)
    assert budget.allows(estimate)
    budget.charge(estimate)
    assert not budget.allows(11) and budget.allows(10) and budget.left == 10
    assert llm.TokenBudget(None).allows(10**12)


@pytest.mark.skipif(not os.environ.get("OPENTRANSCRIBE_TEST_LLM_URL"), reason="no OPENTRANSCRIBE_TEST_LLM_URL")
def test_real_llm_summarizes_a_dialogue():
    """Against a real OpenAI-compatible server (vLLM, Ollama, a hosted API)."""
    config = llm.ChatConfig(
        base_url=os.environ["OPENTRANSCRIBE_TEST_LLM_URL"],
        model=os.environ.get("OPENTRANSCRIBE_TEST_LLM_MODEL", "default"),
        api_key=os.environ.get("OPENTRANSCRIBE_TEST_LLM_API_KEY"),
    )
    turns = [
        ("SPEAKER_00", "Let us start with the budget for next year."),
        ("SPEAKER_01", "The numbers look better than we expected."),
        ("SPEAKER_00", "What about the new storage servers?"),
        ("SPEAKER_01", "They arrive in March and the migration starts in April."),
    ]
    lines = [llm.Line(i, i * 3.0, i * 3.0 + 2.5, s, t) for i, (s, t) in enumerate(turns)]
    out = llm.summarize_llm(llm.ChatClient(config), lines, "English")
    assert out.summary and out.key_points and out.topics
    assert all(kp["speaker"] in ("SPEAKER_00", "SPEAKER_01") and kp["start_s"] <= kp["end_s"] for kp in out.key_points)
