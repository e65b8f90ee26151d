"""A client for OpenAI-compatible ``/v1/chat/completions`` endpoints (vLLM, Ollama, hosted APIs).

Use it wherever a :class:`~searchr1.models.generate.Generator` is expected, e.g. to
evaluate a model too large to load locally. The search loop runs at the *text* level:
generate until ``</search>``, run the query, send the retrieved documents back, continue.
There are no token ids for API models, so their trajectories record text only and the
token counts are the endpoint's ``usage.completion_tokens``.

Rendering a :class:`Transcript`: the chat ``messages`` as given, then each ``"model"``
segment as an ``assistant`` message and each ``"env"`` segment (retrieved documents) as
a ``user`` message. When the transcript ends with model text (the model must continue
its own turn), ``continue_final_message=True`` asks the server to resume that message
(vLLM's extension); otherwise a short user message asks the model to continue.

The API strips the stop string from the returned text; it is put back (the server's
``stop_reason`` when it reports one, else the stop whose opening tag is left unclosed)
so that both backends return text that ends with the stop string.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from searchr1.errors import SearchR1Error
from searchr1.models.generate import Completion, Decoding, Transcript

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
