"""The summary step's model: the packaged MiniLM (extractive, offline) or an OpenAI-compatible chat endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import dagster as dg
from pydantic import Field

from .. import settings
from ..deliver.llm import DEFAULT_MAP_PROMPT, DEFAULT_REDUCE_PROMPT, DEFAULT_SYSTEM_PROMPT, ChatClient, ChatConfig
from ..deliver.summaries import EXTRACTIVE_VERSION

LLM_STEP_VERSION = "llm/1"  # bump when a change to deliver/llm.py changes what it writes


class SummaryModelResource(dg.ConfigurableResource):
    """How summaries and topics are made (docs/summaries.md).

    ``method``: ``extractive`` (default: sentences central to the transcript, keyphrases by
    embedding similarity, with the search step's text model) or ``llm`` (any OpenAI-compatible
    chat endpoint: vLLM, Ollama, a hosted API). In production give ``base_url`` and
    ``api_key`` as ``dg.EnvVar("OPENTRANSCRIBE_LLM_URL")`` / ``dg.EnvVar("OPENTRANSCRIBE_LLM_API_KEY")``
    (``definitions.py`` does when they are set): the UI never shows the key and nothing logs it.
    ``token_budget`` caps the tokens one batch run may spend; files past it get a
    ``skipped: token budget`` row and are done by a later run."""

    method: str = Field(
        default_factory=settings.summary_method,
        description="extractive | llm (default: OPENTRANSCRIBE_SUMMARY_METHOD, else extractive)",
    )
    text_model: str = Field(
        default_factory=settings.text_embedding_model,
        description="extractive: text model (default: OPENTRANSCRIBE_TEXT_EMBEDDING_MODEL, else the packaged MiniLM)",
    )
    device: str = Field(default="cpu", description="extractive: cpu (default: the step is not in the gpu pool) or cuda")
    threads: int = Field(
        default=2, ge=1, description="extractive: torch threads on the CPU (the step runs beside others)"
    )
    base_url: str | None = Field(
        default=None,
        description="llm: OpenAI-compatible base URL, e.g. http://vllm:8000/v1 (EnvVar OPENTRANSCRIBE_LLM_URL)",
    )
    model: str | None = Field(
        default=None, description="llm: the model name the endpoint serves (OPENTRANSCRIBE_LLM_MODEL)"
    )
    api_key: str | None = Field(default=None, description="llm: EnvVar('OPENTRANSCRIBE_LLM_API_KEY'); never logged")
    context_tokens: int = Field(default=8192, ge=512, description="llm: the model's context window, in tokens")
    max_output_tokens: int = Field(default=800, ge=64, description="llm: tokens one answer may take")
    chars_per_token: float = Field(default=4.0, gt=0, description="llm: token estimate = characters / this")
    token_budget: int | None = Field(
        default=1_000_000, description="llm: tokens one batch run may spend (null: no limit)"
    )
    max_retries: int = Field(default=5, ge=0, description="llm: tries again on 429/5xx, with backoff")
    backoff_s: float = Field(default=1.0, ge=0, description="llm: first wait; doubled each try (Retry-After honoured)")
    timeout_s: float = Field(default=120.0, gt=0, description="llm: seconds one request may take")
    system_prompt: str = Field(default=DEFAULT_SYSTEM_PROMPT, description="llm: the system message")
    map_prompt: str = Field(
        default=DEFAULT_MAP_PROMPT, description="llm: one part of the transcript ({language}, {part}, {parts}, {text})"
    )
    reduce_prompt: str = Field(
        default=DEFAULT_REDUCE_PROMPT, description="llm: merge partial summaries ({language}, {text})"
    )

    def method_name(self) -> str:
        method = self.method.lower()
        if method not in settings.SUMMARY_METHODS:
            raise dg.Failure(f"summary method must be one of {settings.SUMMARY_METHODS}, not {method!r}")
        return method

    def text_model_spec(self) -> str:
        return self.text_model

    def chat_config(self) -> ChatConfig:
        model = self.model or settings.llm_model()
        if not self.base_url or not model:
            raise dg.Failure(
                "summary method llm needs base_url and model (OPENTRANSCRIBE_LLM_URL, OPENTRANSCRIBE_LLM_MODEL)"
            )
        return ChatConfig(
            base_url=self.base_url,
            model=model,
            api_key=self.api_key,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            backoff_s=self.backoff_s,
            max_output_tokens=self.max_output_tokens,
            context_tokens=self.context_tokens,
            chars_per_token=self.chars_per_token,
            system_prompt=self.system_prompt,
            map_prompt=self.map_prompt,
            reduce_prompt=self.reduce_prompt,
        )

    def model_name(self) -> str:
        return self.chat_config().model if self.method_name() == "llm" else self.text_model_spec()

    def prompt_version(self) -> str | None:
        return self.chat_config().prompt_version() if self.method_name() == "llm" else None

    def model_version(self) -> str:
        """Changes whenever the rows could: the method, the model, the prompt, the step's code."""
        if self.method_name() == "llm":
            c = self.chat_config()
            return f"{LLM_STEP_VERSION}|{c.model}|{c.prompt_version()}|ctx={c.context_tokens}"
        from ..search.embedding import resolve_text_model

        return f"{EXTRACTIVE_VERSION}|{resolve_text_model(self.text_model_spec()).version}"

    def model_columns(self) -> dict[str, str | None]:
        return {"method": self.method_name(), "model": self.model_name(), "prompt_version": self.prompt_version()}

    def load(self) -> AbstractContextManager:
        """extractive: the text model (one load per run, freed after); llm: a chat client."""
        if self.method_name() == "llm":
            return nullcontext(ChatClient(self.chat_config()))
        return bounded_text_model(self.text_model_spec(), self.device, self.threads)


@contextmanager
def bounded_text_model(spec: str, device: str, threads: int) -> Iterator:
    """The text model with torch's CPU threads bounded while it is loaded (restored after)."""
    import torch

    from ..search.embedding import TextEmbedder, resolve_text_model

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with TextEmbedder(resolve_text_model(spec), device=device) as embedder:
            yield embedder
    finally:
        torch.set_num_threads(before)


def summary_resource() -> SummaryModelResource:
    """The deployment's resource: the LLM variables that are set arrive as ``dg.EnvVar``
    (resolved at run time, hidden in the UI); unset ones are left out, so the offline default
    needs none of them."""
    present = settings.llm_variables_set()
    fields = {"base_url": settings.LLM_URL_VAR, "model": settings.LLM_MODEL_VAR, "api_key": settings.LLM_KEY_VAR}
    return SummaryModelResource(**{f: dg.EnvVar(var) for f, var in fields.items() if present[var]})


def summary_code_version() -> str:
    """The summary step's part of its Dagster code version, for the deployment's method and
    model (the environment): another model, method or default prompt marks the tables stale."""
    method = settings.summary_method()
    if method == "llm":
        prompts = ChatConfig(base_url="", model="").prompt_version()
        return f"{LLM_STEP_VERSION}|{settings.llm_model()}|{prompts}"
    from ..search.embedding import resolve_text_model

    spec = settings.text_embedding_model()
    try:
        version = resolve_text_model(spec).version
    except Exception as exc:  # a missing package: the step itself says so when it runs
        version = f"unresolved ({type(exc).__name__})"
    return f"{EXTRACTIVE_VERSION}|{spec}|{version}"
