"""Text-level generation behind the engine: OpenAI-compatible chat endpoints and any text Generator.

:class:`OpenAIChatBackend` is a client for ``/v1/chat/completions`` endpoints (vLLM, Ollama, hosted
APIs) for models too large to load locally. It is a :class:`~searchr1.models.generate.Generator`
(``complete(transcripts, decoding, stop)``, what the single-prompt evaluation methods call).
Rendering a :class:`~searchr1.models.generate.Transcript`: the chat ``messages`` as given, then each
``"model"`` segment as an ``assistant`` message and each ``"env"`` segment (injected text) as a
``user`` message. When the transcript ends with model text, ``continue_final_message=True`` asks
the server to resume that message (vLLM's extension); otherwise a short user message asks the
model to continue. The API strips the stop string from the returned text; it is put back (the
server's ``stop_reason`` when it reports one, else the stop whose opening tag is left unclosed).
Requests are retried on transport errors, 429 and 5xx with capped exponential backoff.

:class:`ChatBackend` runs any such Generator under the rollout engine (the engine's
:class:`~searchr1.rollout.backends.base.Backend`): the engine hands token ids in; the session
decodes them with the engine's tokenizer, keeps one Transcript per row (the prompt is the user
message; sampled text goes in as model text, injected text as env text), calls the generator once
per turn for the whole batch and returns each completion's text encoded with the same tokenizer.
Those ids are a re-encoding, not the model's own: ``Generation.n_tokens`` carries the generator's
token count and there are no log-probs, so these trajectories are for evaluation, not training.
API models have no local tokenizer: :class:`ByteTokenizer` (lossless UTF-8 bytes, no chat template)
keeps prompts raw text and makes ``decode(encode(text)) == text``.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from searchr1.errors import SearchR1Error
from searchr1.models.generate import Completion, Decoding, Generator, Transcript
from searchr1.rollout.backends.base import Generation, TurnParams

CONTINUE_PROMPT = "Continue."


class OpenAIError(SearchR1Error, RuntimeError):
    """The endpoint failed after retries, or answered something that is not a chat completion."""


class OpenAIChatBackend:
    def __init__(self, base_url: str, model: str, api_key: str | None = None, *,
                 timeout: float = 120.0, retries: int = 3, backoff: float = 0.5,
                 max_concurrency: int = 8, continue_final_message: bool = False,
                 extra_body: dict | None = None):
        """``base_url`` as for the ``openai`` client, e.g. ``http://localhost:8000/v1``."""
        import httpx

        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}.")
        if retries < 0 or max_concurrency < 1:
            raise ValueError("retries must be >= 0 and max_concurrency >= 1.")
        self.base_url, self.model, self.name = base_url.rstrip("/"), model, f"openai:{model}"
        self.retries, self.backoff, self.max_concurrency = retries, backoff, max_concurrency
        self.continue_final_message = continue_final_message
        self.extra_body = dict(extra_body or {})
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)

    def close(self) -> None:
        self._client.close()

    def to_messages(self, t: Transcript) -> tuple[list[dict], bool]:
        """(chat messages, whether the last assistant message is to be continued)."""
        msgs = [dict(m) for m in t.messages]
        for source, text in t.segments:
            role = "assistant" if source == "model" else "user"
            if msgs and msgs[-1]["role"] == role:
                msgs[-1]["content"] += text
            else:
                msgs.append({"role": role, "content": text})
        ends_with_model = msgs[-1]["role"] == "assistant"
        if ends_with_model and not self.continue_final_message:
            msgs.append({"role": "user", "content": CONTINUE_PROMPT})
            return msgs, False
        return msgs, ends_with_model

    def chat(self, messages: list[dict], decoding: Decoding, stop: list[str] | None = None,
             continue_final: bool = False) -> Completion:
        """One chat completion, retried on transport errors, 429 and 5xx."""
        body = {"model": self.model, "messages": messages, "max_tokens": decoding.max_new_tokens,
                "temperature": decoding.temperature, "seed": decoding.seed, **self.extra_body}
        if decoding.temperature > 0:
            body["top_p"] = decoding.top_p
        if stop:
            body["stop"] = list(stop)
        if continue_final:
            body.update(continue_final_message=True, add_generation_prompt=False)
        data = self._post(body)
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            reason = choice.get("finish_reason") or "stop"
        except (KeyError, IndexError, TypeError) as e:
            raise OpenAIError(f"{self.base_url}/chat/completions answered without choices[0].message: {data!r:.300}") from e
        n_tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)
        if reason == "stop" and stop:
            text = text + _matched_stop(text, stop, choice.get("stop_reason"))
        finish = {"stop": "stop", "length": "length"}.get(reason, reason)
        if finish == "stop" and not any(text.endswith(s) for s in stop or ()):
            finish = "eos"
        return Completion(text=text, n_tokens=n_tokens, finish_reason=finish)

    def complete(self, transcripts: list[Transcript], decoding: Decoding,
                 stop: list[str] | None = None) -> list[Completion]:
        def one(t: Transcript) -> Completion:
            msgs, cont = self.to_messages(t)
            return self.chat(msgs, decoding, stop, continue_final=cont)

        if len(transcripts) <= 1 or self.max_concurrency == 1:
            return [one(t) for t in transcripts]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(transcripts))) as pool:
            return list(pool.map(one, transcripts))

    def _post(self, body: dict) -> dict:
        import httpx

        url = f"{self.base_url}/chat/completions"
        last = ""
        for attempt in range(self.retries + 1):
            try:
                r = self._client.post(url, json=body)
                if r.status_code == 429 or r.status_code >= 500:
                    last = f"HTTP {r.status_code}: {r.text[:200]}"
                elif r.status_code >= 400:
                    raise OpenAIError(f"{url} rejected the request (HTTP {r.status_code}): {r.text[:300]}; "
                                      "check the model name and the API key.")
                else:
                    return r.json()
            except (httpx.TransportError, ValueError) as e:
                last = f"{type(e).__name__}: {e}"
            if attempt < self.retries:
                time.sleep(self.backoff * 2 ** attempt)
        raise OpenAIError(f"{url} failed after {self.retries + 1} attempts ({last}); is the server running?")


def _matched_stop(text: str, stop: list[str], reported) -> str:
    """The stop string the server cut off: its report, else the one whose tag is left open."""
    if isinstance(reported, str) and reported in stop:
        return reported
    best, best_pos = "", -1
    for s in stop:
        if s.startswith("</") and s.endswith(">"):
            opening = "<" + s[2:]
            pos = text.rfind(opening)
            if pos > best_pos and text.find(s, pos) < 0:
                best, best_pos = s, pos
    return best


class ByteTokenizer:
    """A lossless UTF-8 byte tokenizer (ids 0-255 are bytes, 256 is EOS) for API models.

    It has no chat template, so the engine's prompts stay raw text (the chat endpoint applies the
    model's own template); budgets counted in its tokens are bytes.
    """

    eos_token_id = pad_token_id = 256
    eos_token = pad_token = ""
    chat_template = None

    def __len__(self) -> int:
        return 257

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return bytes(int(i) for i in ids if int(i) < 256).decode("utf-8", errors="replace")


class ChatBackend:
    """``ChatBackend(generator, tokenizer)``: the engine's Backend over a text-level Generator.

    ``tokenizer`` must be the engine's (usually :class:`ByteTokenizer`). No session is kept after it is
    returned, so a long-running service holds nothing per finished request.
    """

    def __init__(self, generator: Generator, tokenizer):
        self.generator, self.tokenizer = generator, tokenizer

    def open(self, prompts: Sequence[Sequence[int]], seed: int | None = None) -> ChatSession:
        return ChatSession(self, prompts, 0 if seed is None else int(seed))


class ChatSession:
    def __init__(self, backend: ChatBackend, prompts: Sequence[Sequence[int]], seed: int):
        self.backend, self.seed = backend, seed
        decode = backend.tokenizer.decode
        self.transcripts = [Transcript([{"role": "user", "content": decode(list(p), skip_special_tokens=False)}])
                            for p in prompts]
        self.released: set[int] = set()

    def generate(self, rows: Sequence[int], appended: Sequence[Sequence[int]], max_new_tokens: Sequence[int],
                 params: TurnParams) -> list[Generation]:
        tok = self.backend.tokenizer
        for row, extra in zip(rows, appended):
            if row in self.released:
                raise RuntimeError(f"row {row} was released and cannot generate again")
            if extra:
                self.transcripts[row].add("env", tok.decode(list(extra), skip_special_tokens=False))
        by_budget: dict[int, list[int]] = {}
        for k, budget in enumerate(max_new_tokens):
            by_budget.setdefault(int(budget), []).append(k)
        out: dict[int, Generation] = {}
        for budget, ks in by_budget.items():
            decoding = Decoding(max_new_tokens=budget, temperature=params.temperature if params.do_sample else 0.0,
                                top_p=params.top_p, seed=self.seed)
            comps = self.backend.generator.complete([self.transcripts[rows[k]] for k in ks], decoding,
                                                    stop=list(params.stop) or None)
            for k, c in zip(ks, comps):
                self.transcripts[rows[k]].add("model", c.text)
                stop = next((s for s in params.stop if c.text.endswith(s)), None) if c.finish_reason == "stop" else None
                out[k] = Generation(tok.encode(c.text, add_special_tokens=False), None, c.finish_reason, stop,
                                    n_tokens=c.n_tokens)
        return [out[k] for k in range(len(rows))]

    def release(self, rows: Sequence[int]) -> None:
        self.released.update(rows)

    def close(self) -> None:
        pass
