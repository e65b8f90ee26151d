"""GRPO step time: searchr1's trainer vs TRL's GRPOTrainer, same model, batch and lengths.

Equal work on both sides: the same randomly initialised Qwen2 (same seed, identical
weights), a byte-level vocabulary, 8 questions x 4 samples, up to 32 sampled tokens at
temperature 1 (no top-k / top-p), fp32 on CPU, one thread, one generation and one
optimizer update per step (TRL: ``num_iterations=1``, ``steps_per_generation=1``, so it
skips its old-log-prob pass exactly as we do), KL 0.001 to a frozen reference (one
reference forward each), token-mean loss on both (TRL ``loss_type="dapo"`` = our
``token-mean``), entropy logged by both, torch's fused AdamW on both (TRL's default optimizer,
``adamw_torch_fused``; ours with ``optimizer.fused=true``). TRL 1.x turns gradient checkpointing on by
default — an extra forward per backward that we do not do — so it is switched off here.
The table prints the mean sampled tokens per completion of both sides to show the
generation work matches (a random policy rarely samples EOS: both run ~31 of 32).
Rewards are the share of lowercase letters (no search, so the rollout is one turn).
Each side runs several times, alternating (ours, TRL, ours, TRL, ...: 4 rounds tiny, 2 small),
so both see the same drift of the machine's load; each run's first step is a warm-up and is not
timed; of the rest (12 per run tiny, 5 small) the fastest step counts (min, like ``timeit``):
the machine is shared and load only ever adds time.

What our side shares, and why the work stays equal. The 4 samples of a question carry
the same prompt (~36 tokens here, as long as the responses). Both sides sample the same
number of tokens from the same distribution and compute the same loss, KL and entropy;
we compute the prompt's hidden states once per question instead of once per sample:

* generation prefills each distinct prompt once and copies its KV cache to the 4 rows
  (``HFBackend(share_prefill=True)``): same first-token logits, so the same samples;
* the training forward and the reference forward run each distinct prompt once and
  gather its KV cache (differentiably) under the 4 responses (``model.share_prompt``,
  ``rl/shared_prompt.py``): the same log-probs and gradients as a full forward over
  prompt + response (``tests/rl/test_shared_prompt.py``; loss, KL, entropy and grad
  norm of the benchmark's steps agree to ~1e-7 with the option off);
* the stop-string check decodes the tail only after tokens that can end a stop string.

Both sides run transformers' own model forward (no hand-written model code). Figures, with the
command and machine, are in ``docs/benchmarks.md``.

Two model sizes:

* ``tiny`` (hidden 64, 2 layers, 0.09M params) — the setting this benchmark is specified for (a tiny
  model; the size of the CPU demo), so it gives the headline ``BENCH trainer_speedup_vs_trl``. At
  this size a step is bound by Python and framework overhead per call, not arithmetic.
* ``small`` (hidden 256, 4 layers, 3.2M params) — large enough that the update is FLOP-bound like
  real training (see ``trainer_update_frac_of_fp32_peak``); its figures carry a ``_small`` suffix.
  Read this one for what carries over to real models: only savings that survive when arithmetic
  dominates do.
  ``BENCH_TRAINER_SIZES=tiny`` runs one size only.
* ``real135m`` / ``real05b`` (opt-in, e.g. ``BENCH_TRAINER_SIZES=real135m,real05b``; minutes each) — the
  SmolLM2-135M and Qwen2.5-0.5B shapes on the Search-R1 workload's proportions, with the update's peak
  memory ours vs TRL (``BENCH trainer_peak_mem_vs_trl``) and ``trainer_speedup_vs_trl_135m``; each side in
  its own subprocess, see ``benchmarks/trainer_real.py`` for the setting and how memory is read.

Also prints the update phase's achieved FLOP/s (the matmul FLOPs of the policy's forward +
backward and the reference forward, counting what the passes actually run — each distinct prompt
once, the responses, the LM head only where logits are read; see ``update_flops``) against a
measured fp32 matmul peak of this machine (both trainers run fp32; the bf16 peak is printed too).
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time

import torch

from benchmarks import trainer_real

B_QUESTIONS, G, T_NEW = 8, 4, 32
# steps per side (the first is a warm-up); the fastest of the rest counts, so the noisier tiny size runs more
STEPS = {"tiny": 13, "small": 6}
# each side runs this many times, alternating with the other; the cheap tiny size runs more rounds
# because the machine's load moves in windows of seconds that a short run can fall into entirely
ROUNDS = {"tiny": 4, "small": 2}


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<eos>", "<pad>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


# name -> (hidden, intermediate, layers, attention heads, kv heads)
SIZES = {"tiny": (64, 128, 2, 4, 2), "small": (256, 768, 4, 8, 4)}


def _model(vocab: int, size: str):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    h, inter, layers, heads, kv = SIZES[size]
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=h, intermediate_size=inter,
                                        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                                        max_position_embeddings=512, tie_word_embeddings=True,
                                        eos_token_id=vocab - 2, pad_token_id=vocab - 1))


def _questions(size: str):
    from searchr1.data.qa import QAExample

    return [QAExample(id=f"q{i}", question=f"what is the name of thing number {i}", golden_answers=["x"])
            for i in range(B_QUESTIONS * STEPS[size])]


def _letters(text: str) -> float:
    return sum(c.islower() for c in text) / max(1, len(text))


def run_ours(out_dir: str, size: str) -> dict:
    from searchr1.rl.config import config_from_dict
    from searchr1.rl.trainer import Trainer

    tok = _tokenizer()
    model = _model(len(tok), size)
    cfg = config_from_dict({}, [
        "model.path=bench", "rollout.max_turns=1", f"rollout.max_turn_tokens={T_NEW}", "rollout.search_enabled=false",
        "rollout.max_prompt_tokens=128", "rollout.max_total_tokens=256", f"data.batch_size={B_QUESTIONS}",
        f"data.mini_batch_size={B_QUESTIONS}", f"data.micro_batch_size={B_QUESTIONS * G}", "algorithm.name=grpo",
        f"algorithm.group_size={G}", "algorithm.kl_coef=0.001", "optimizer.actor_lr=1e-5",
        "optimizer.actor_warmup_ratio=0", "optimizer.fused=true", f"total_steps={STEPS[size]}", "logging.progress_bar=false",
        "logging.jsonl=false", "logging.plot=false", f"output_dir={out_dir}", "device=cpu", "data.shuffle=false"])
    cfg.data.prompt_template = "{question}"

    def reward(trajs, exs):
        s = [_letters(t.response_text) for t in trajs]
        return s, {"letters": sum(s) / len(s)}

    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=_questions(size), reward_fn=reward, log_to_disk=False)
    rows = [tr.train_step() for _ in range(STEPS[size])][1:]
    n_params = sum(p.numel() for p in model.parameters())
    prompt_tokens = statistics.mean(len(tok.encode(q.question)) for q in _questions(size))
    # tokens the update's passes run: every distinct prompt once (shared) or G times (not), plus responses
    prompt_runs = B_QUESTIONS if tr.learner.train_mode == "shared-prompt" else B_QUESTIONS * G
    computed = [prompt_runs * prompt_tokens + r["rollout/response_len"] * B_QUESTIONS * G for r in rows]
    flops = [update_flops(model, prompt_runs, prompt_tokens, r["rollout/response_len"]) for r in rows]
    return {
        "step_s": min(r["time/step"] for r in rows),
        "update_s": min(r["time/prepare"] + r["time/update"] for r in rows),
        "tokens": statistics.median(r["throughput/tokens_per_s"] * r["time/step"] for r in rows),
        "computed_tokens": statistics.median(computed),
        "update_flops": statistics.median(flops),
        "gen_s": min(r["time/generate"] for r in rows),
        "completion_len": statistics.mean(r["rollout/response_len"] for r in rows),
        "n_params": n_params,
    }


def update_flops(model, prompt_runs: int, prompt_len: float, response_len: float) -> float:
    """Matmul FLOPs of one update phase (projections and LM head; attention scores left out): the policy's
    forward + backward (3 forwards) and the reference forward, i.e. 4x the forward FLOPs, counting what
    the passes run: each of ``prompt_runs`` prompts of ``prompt_len`` tokens and the B*G responses of
    ``response_len`` tokens through every layer, the LM head at the response positions only."""
    body = sum(p.numel() for layer in model.model.layers for p in layer.parameters() if p.dim() == 2)
    head = model.lm_head.weight.numel()
    rows = B_QUESTIONS * G
    tokens = prompt_runs * prompt_len + rows * (response_len - 1)     # prompts + fed response tokens
    forward = 2 * (body * tokens + head * rows * response_len)
    return 4 * forward


def run_trl(out_dir: str, size: str) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tok = _tokenizer()
    model_dir = os.path.join(out_dir, "model")
    _model(len(tok), size).save_pretrained(model_dir)   # TRL builds its reference model from a path
    tok.save_pretrained(model_dir)
    ds = Dataset.from_list([{"prompt": q.question} for q in _questions(size)])

    def reward(completions, **kw):
        return [_letters(c) for c in completions]

    times: list[float] = []
    lengths: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t0)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                lengths.append(float(logs["completions/mean_length"]))

    args = GRPOConfig(output_dir=out_dir, per_device_train_batch_size=B_QUESTIONS * G, num_generations=G,
                      max_completion_length=T_NEW, learning_rate=1e-5, max_steps=STEPS[size], beta=0.001,
                      logging_steps=1, report_to="none", use_cpu=True, bf16=False, save_strategy="no",
                      temperature=1.0, seed=0, dataloader_num_workers=0, disable_tqdm=True, loss_type="dapo",
                      gradient_checkpointing=False)
    trainer = GRPOTrainer(model=model_dir, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok,
                          callbacks=[Timer()])
    trainer.train()
    return {"step_s": min(times[1:]), "completion_len": statistics.mean(lengths[1:])}


def matmul_peak(dtype: torch.dtype, n: int = 1024, reps: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def _fastest(runs: list[dict]) -> dict:
    """The run with the fastest step; each phase time is the fastest of all runs."""
    best = dict(min(runs, key=lambda r: r["step_s"]))
    for key in ("step_s", "gen_s", "update_s"):
        if key in best:
            best[key] = min(r[key] for r in runs)
    return best


def compare(size: str, d: str) -> dict:
    ours_runs, trl_runs = [], []
    for r in range(ROUNDS[size]):   # ours, TRL, ours, TRL: both sides see the same drift of the machine's load
        ours_runs.append(run_ours(os.path.join(d, f"ours-{size}-{r}"), size))
        trl_runs.append(run_trl(os.path.join(d, f"trl-{size}-{r}"), size))
    ours, trl = _fastest(ours_runs), _fastest(trl_runs)
    # update phase: policy forward+backward (6N/token) + reference forward (2N/token)
    ours["update_tflops"] = ours["update_flops"] / ours["update_s"] / 1e12
    return {"ours": ours, "trl": trl, "speedup": trl["step_s"] / ours["step_s"]}


def main() -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    requested = os.environ.get("BENCH_TRAINER_SIZES", "tiny,small").split(",")
    unknown = [s for s in requested if s not in SIZES and s not in trainer_real.STEPS]
    if unknown:
        raise SystemExit(f"error: BENCH_TRAINER_SIZES: unknown size(s) {', '.join(unknown)}; "
                         f"use {', '.join([*SIZES, *trainer_real.STEPS])}")
    for size in (s for s in requested if s in trainer_real.STEPS):
        trainer_real.report(size, trainer_real.compare(size))
    sizes = [s for s in requested if s in SIZES]
    if not sizes:
        return
    # the fp32 peak is sampled before, between and after the runs and the best kept: a single sample
    # taken while a neighbour loads the machine would understate it (and overstate the update's share)
    fp32 = [matmul_peak(torch.float32) for _ in range(3)]
    res = {}
    with tempfile.TemporaryDirectory() as d:
        for size in sizes:
            res[size] = compare(size, d)
            fp32 += [matmul_peak(torch.float32) for _ in range(3)]
    peak_bf16, peak_fp32 = matmul_peak(torch.bfloat16), max(fp32)
    print(f"{'':34s}" + "".join(f"{f'searchr1 {s}':>16s}{f'TRL {s}':>12s}" for s in sizes))
    rows = [("s / step (fastest)", "step_s", "step_s"), ("  of which generation", "gen_s", None),
            ("  of which update phase", "update_s", None), ("sampled tokens / completion", "completion_len",
                                                              "completion_len")]
    for label, ko, kt in rows:
        cells = "".join(f"{res[s]['ours'][ko]:16.3f}" + (f"{res[s]['trl'][kt]:12.3f}" if kt else f"{'-':>12s}")
                        for s in sizes)
        print(f"{label:34s}{cells}")
    for s in sizes:
        o = res[s]["ours"]
        print(f"{s}: {SIZES[s]} (hidden, ffn, layers, heads, kv heads), {o['n_params'] / 1e6:.2f}M params, "
              f"{o['tokens']:.0f} tokens/step ({o['computed_tokens']:.0f} run by the update passes), "
              f"update {o['update_tflops'] * 1e3:.1f} GFLOP/s")
    print(f"batch {B_QUESTIONS} questions x {G} samples, <= {T_NEW} new tokens; "
          f"matmul peak bf16 {peak_bf16 * 1e3:.2f} / fp32 {peak_fp32 * 1e3:.2f} GFLOP/s (1 thread)")
    head = "tiny" if "tiny" in res else sizes[0]     # the benchmark's specified setting; the others get a suffix
    for s in sizes:
        tag = "" if s == head else f"_{s}"
        o = res[s]["ours"]
        print(f"BENCH trainer_step_s{tag} {o['step_s']:.4f} s")
        print(f"BENCH trl_grpo_step_s{tag} {res[s]['trl']['step_s']:.4f} s")
        print(f"BENCH trainer_speedup_vs_trl{tag} {res[s]['speedup']:.2f} x")
        print(f"BENCH trainer_update_tokens_per_s{tag} {o['tokens'] / o['update_s']:.0f} tok/s")
        print(f"BENCH trainer_update_tflops{tag} {o['update_tflops']:.5f} TFLOP/s")
        print(f"BENCH trainer_update_frac_of_fp32_peak{tag} {o['update_tflops'] / peak_fp32:.4f} x")
    print(f"BENCH matmul_peak_bf16_tflops {peak_bf16:.4f} TFLOP/s")
    print(f"BENCH matmul_peak_fp32_tflops {peak_fp32:.4f} TFLOP/s")


if __name__ == "__main__":
    main()
