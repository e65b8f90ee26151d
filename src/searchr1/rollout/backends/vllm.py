"""vLLM backend (GPU; ``pip install 'searchr1[gpu]'``): the same session interface as HFBackend.

Every turn sends each row's whole context as token ids (``TokensPrompt``); with
``enable_prefix_caching=True`` vLLM reuses the KV blocks of the shared prefix, so only the new
tokens (the last sampled token and the injected observation) are computed. Stop strings are vLLM's
own (``stop=[...]``, ``include_stop_str_in_output=True``): the token that completes a stop string is
the last one sampled. Token ids in and out; nothing is re-encoded.

Log-probs: the engine is built with ``logprobs_mode="processed_logprobs"`` so the recorded
log-probs are taken after temperature (and top-k / top-p, which RL rollouts leave off); this matches
HFBackend when ``top_p=1`` and ``top_k=0``. Pass an ``LLM`` you built yourself to choose otherwise.

Seeds: each request gets its own seed derived from ``(seed, row, turn)``, so a row's samples do not
depend on the other rows of the batch.
"""
from __future__ import annotations

from collections.abc import Sequence

from searchr1.rollout.backends.base import Generation, TurnParams


def _import_vllm():
    try:
        import vllm
        from vllm.inputs import TokensPrompt
    except ImportError as e:
        raise ImportError(
            "VLLMBackend needs vLLM and a CUDA GPU: pip install 'searchr1[gpu]' (or use HFBackend on CPU)."
        ) from e
    return vllm, TokensPrompt


class VLLMBackend:
    """``VLLMBackend(model, **llm_kwargs)``: ``model`` is a path / hub id or an existing ``vllm.LLM``."""

    def __init__(self, model, gpu_memory_utilization: float = 0.5, dtype: str = "auto", **llm_kwargs):
        vllm, self._tokens_prompt = _import_vllm()
        self._sampling_params = vllm.SamplingParams
        if isinstance(model, vllm.LLM):
            if llm_kwargs:
                raise ValueError(f"llm_kwargs {sorted(llm_kwargs)} are ignored for a ready LLM; build the LLM with them.")
            self.llm = model
        else:
            llm_kwargs.setdefault("logprobs_mode", "processed_logprobs")
            self.llm = vllm.LLM(model=model, enable_prefix_caching=True, dtype=dtype,
                                gpu_memory_utilization=gpu_memory_utilization, **llm_kwargs)

    def open(self, prompts: Sequence[Sequence[int]], seed: int | None = None) -> "VLLMSession":
        return VLLMSession(self, prompts, seed)

    def sampling_params(self, params: TurnParams, max_tokens: int, seed: int | None):
        return self._sampling_params(
            n=1,
            temperature=params.temperature if params.do_sample else 0.0,
            top_p=params.top_p if params.do_sample else 1.0,
            top_k=(params.top_k or -1) if params.do_sample else -1,
            max_tokens=max_tokens,
            stop=list(params.stop),
            include_stop_str_in_output=True,
            logprobs=0 if params.return_logprobs else None,
            skip_special_tokens=False,
            seed=seed,
        )


class VLLMSession:
    def __init__(self, backend: VLLMBackend, prompts: Sequence[Sequence[int]], seed: int | None):
        self.b = backend
        self.contexts = [list(p) for p in prompts]
        self.turns = [0] * len(prompts)
        self.seed = seed
        self.released: set[int] = set()

    def _row_seed(self, row: int) -> int | None:
        if self.seed is None:
            return None
        return (self.seed * 1_000_003 + row * 7_919 + self.turns[row]) % (2**31 - 1)

    def generate(self, rows, appended, max_new_tokens, params: TurnParams) -> list[Generation]:
        requests, sampling = [], []
        for r, extra, budget in zip(rows, appended, max_new_tokens):
            if r in self.released:
                raise RuntimeError(f"row {r} was released and cannot generate again")
            self.contexts[r].extend(int(t) for t in extra)
            requests.append(self.b._tokens_prompt(prompt_token_ids=list(self.contexts[r])))
            sampling.append(self.b.sampling_params(params, budget, self._row_seed(r)))
            self.turns[r] += 1
        outputs = self.b.llm.generate(requests, sampling_params=sampling, use_tqdm=False)
        result = []
        for r, out in zip(rows, outputs):
            comp = out.outputs[0]
            ids = list(comp.token_ids)
            logprobs = None
            if params.return_logprobs:
                logprobs = [float(step[t].logprob) for t, step in zip(ids, comp.logprobs)]
            if comp.finish_reason == "length":
                finish, stop = "length", None
            elif isinstance(comp.stop_reason, str):
                finish, stop = "stop", comp.stop_reason
            else:  # EOS or a stop token id
                finish, stop = "eos", None
            self.contexts[r].extend(ids)
            result.append(Generation(ids, logprobs, finish, stop))
        return result

    def release(self, rows) -> None:
        self.released.update(rows)
        for r in rows:
            self.contexts[r] = []

    def close(self) -> None:
        pass
