"""Text generation behind one interface: the single-prompt evaluation methods and IRCoT call it, and
the rollout engine runs it for API models (``searchr1.rollout.backends.openai.ChatBackend``).

A *generator* completes a batch of :class:`Transcript` s: chat ``messages`` (the prompt)
followed by ``segments`` the conversation has grown since — text the model wrote
(``"model"``) and text the environment injected (``"env"``: retrieved documents).

* :class:`HFGenerator` renders ``messages`` with the tokenizer's chat template and
  appends the segments verbatim, so the model continues its own assistant turn exactly
  as the rollout engine does (a tokenizer without a chat template gets the message
  contents joined by blank lines, as base models are prompted in Search-R1).
* ``OpenAIChatBackend`` (``searchr1.rollout.backends.openai``) sends segments as assistant / user
  messages (an API cannot resume a partial assistant turn in general; see its docstring).

Both return :class:`Completion` s whose text *includes* the stop string that ended them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass
class Decoding:
    """Decoding settings, recorded in every protocol manifest."""

    max_new_tokens: int = 256
    """Token budget of one generation call (one turn)."""
    temperature: float = 0.0
    """0 = greedy (the default, as in the paper's evaluation)."""
    top_p: float = 1.0
    """Nucleus sampling mass; only used when temperature > 0."""
    seed: int = 0
    """Seed for sampling (recorded even when decoding is greedy)."""

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}; raise it.")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")

    def to_dict(self) -> dict:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "top_p": self.top_p, "seed": self.seed, "greedy": self.temperature == 0}


@dataclass
class Transcript:
    messages: list[dict]                                   # chat prompt: [{"role", "content"}, ...]
    segments: list[tuple[str, str]] = field(default_factory=list)  # ("model" | "env", text)

    def add(self, source: str, text: str) -> None:
        if source not in ("model", "env"):
            raise ValueError(f"segment source must be 'model' or 'env', got {source!r}.")
        self.segments.append((source, text))

    @property
    def response(self) -> str:
        """Everything after the prompt, model and environment text alike."""
        return "".join(text for _, text in self.segments)


@dataclass
class Completion:
    text: str            # generated text, including the stop string that ended it
    n_tokens: int        # generated tokens (API: completion_tokens as reported)
    finish_reason: str   # "stop" (a stop string) | "eos" | "length"


@runtime_checkable
class Generator(Protocol):
    name: str

    def complete(self, transcripts: list[Transcript], decoding: Decoding,
                 stop: list[str] | None = None) -> list[Completion]:
        """One completion per transcript, in order."""
        ...


def cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """Cut ``text`` right after the earliest stop string; (text, whether one was found)."""
    best = None
    for s in stop or ():
        i = text.find(s)
        if i >= 0 and (best is None or i + len(s) < best):
            best = i + len(s)
    return (text, False) if best is None else (text[:best], True)


class HFGenerator:
    """Batched generation with a local transformers model (left padding, greedy by default)."""

    def __init__(self, model, tokenizer, name: str = "hf", batch_size: int = 8):
        from searchr1.models.hf import prepare_tokenizer

        self.model, self.tokenizer, self.name = model, prepare_tokenizer(tokenizer), name
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.batch_size = batch_size

    def render(self, t: Transcript) -> str:
        """The exact prompt text the model continues."""
        if getattr(self.tokenizer, "chat_template", None):
            head = self.tokenizer.apply_chat_template(t.messages, add_generation_prompt=True, tokenize=False)
        else:
            head = "\n\n".join(m["content"] for m in t.messages)  # raw prompt, as data.prompts does
        return head + t.response

    def complete(self, transcripts, decoding, stop=None):
        out: list[Completion] = []
        for i in range(0, len(transcripts), self.batch_size):
            out.extend(self._batch(transcripts[i:i + self.batch_size], decoding, stop))
        return out

    def _batch(self, transcripts, decoding, stop):
        import torch

        tok = self.tokenizer
        enc = tok([self.render(t) for t in transcripts], return_tensors="pt", padding=True,
                  add_special_tokens=False).to(self.model.device)
        kwargs = dict(max_new_tokens=decoding.max_new_tokens, pad_token_id=tok.pad_token_id)
        if decoding.temperature > 0:
            torch.manual_seed(decoding.seed)
            kwargs.update(do_sample=True, temperature=decoding.temperature, top_p=decoding.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs["stopping_criteria"] = _stop_criteria(tok, stop, enc["input_ids"].shape[1])
        with torch.no_grad():
            seqs = self.model.generate(**enc, **kwargs)
        new = seqs[:, enc["input_ids"].shape[1]:].tolist()
        eos = tok.eos_token_id
        results = []
        for ids in new:
            n = len(ids)
            hit_eos = eos is not None and eos in ids
            if hit_eos:
                n = ids.index(eos) + 1
            text, stopped = cut_at_stop(tok.decode(ids[:n], skip_special_tokens=True), stop)
            if stopped:
                n = min(n, len(tok(text, add_special_tokens=False)["input_ids"]))
                reason = "stop"
            else:
                reason = "eos" if hit_eos else "length"
            results.append(Completion(text=text, n_tokens=n, finish_reason=reason))
        return results


def _stop_criteria(tokenizer, stop: list[str], prompt_len: int):
    """Per-row stop-string check on the decoded tail of the new tokens (the rollout's StopChecker).

    transformers' own ``stop_strings`` precomputes tables over the whole vocabulary on
    every call, which costs seconds for 150k-token vocabularies; this costs one short
    decode per row and token.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    from searchr1.models.stopping import StopChecker

    checker = StopChecker(tokenizer, stop)

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            new = input_ids[:, prompt_len:].tolist()
            return torch.tensor([checker(row) is not None for row in new], device=input_ids.device)

    return StoppingCriteriaList([_Stop()])
