"""GRPO step time: searchr1's trainer vs TRL's GRPOTrainer, same tiny model, batch and lengths.

Both sides: a 2-layer Qwen2 (hidden 64) over a byte-level vocabulary, 8 questions x 4
samples, up to 32 sampled tokens, KL 0.001 to a frozen reference, one optimizer update
per step, fp32 on CPU, one thread. Rewards are the share of lowercase letters (no
search, so the rollout is one turn). The first step of each is a warm-up and is not
timed. Also prints the update phase's achieved FLOP/s (6·N per trained token + 2·N
per reference token) against a measured matmul peak of this machine.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time

import torch

B_QUESTIONS, G, T_NEW, STEPS = 8, 4, 32, 4


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<eos>", "<pad>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


def _model(vocab: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                        tie_word_embeddings=True, eos_token_id=vocab - 2, pad_token_id=vocab - 1))


def _questions():
    from searchr1.data.qa import QAExample

    return [QAExample(id=f"q{i}", question=f"what is the name of thing number {i}", golden_answers=["x"])
            for i in range(B_QUESTIONS * STEPS)]


def _letters(text: str) -> float:
    return sum(c.islower() for c in text) / max(1, len(text))


def run_ours(out_dir: str) -> dict:
    from searchr1.rl.config import config_from_dict
    from searchr1.rl.trainer import Trainer

    tok = _tokenizer()
    model = _model(len(tok))
    cfg = config_from_dict({}, [
        "model.path=bench", "rollout.max_turns=1", f"rollout.max_turn_tokens={T_NEW}", "rollout.search_enabled=false",
        "rollout.max_prompt_tokens=128", "rollout.max_total_tokens=256", f"data.batch_size={B_QUESTIONS}",
        f"data.mini_batch_size={B_QUESTIONS}", f"data.micro_batch_size={B_QUESTIONS * G}", "algorithm.name=grpo",
        f"algorithm.group_size={G}", "algorithm.kl_coef=0.001", "optimizer.actor_lr=1e-5",
        "optimizer.actor_warmup_ratio=0", f"total_steps={STEPS}", "logging.progress_bar=false",
        "logging.jsonl=false", "logging.plot=false", f"output_dir={out_dir}", "device=cpu", "data.shuffle=false"])
    cfg.data.prompt_template = "{question}"

    def reward(trajs, exs):
        s = [_letters(t.response_text) for t in trajs]
        return s, {"letters": sum(s) / len(s)}

    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=_questions(), reward_fn=reward, log_to_disk=False)
    rows = [tr.train_step() for _ in range(STEPS)][1:]
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "step_s": statistics.median(r["time/step"] for r in rows),
        "update_s": statistics.median(r["time/prepare"] + r["time/update"] for r in rows),
        "tokens": statistics.median(r["throughput/tokens_per_s"] * r["time/step"] for r in rows),
        "gen_s": statistics.median(r["time/generate"] for r in rows),
        "n_params": n_params,
    }


def run_trl(out_dir: str) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tok = _tokenizer()
    model_dir = os.path.join(out_dir, "model")
    _model(len(tok)).save_pretrained(model_dir)   # TRL builds its reference model from a path
    tok.save_pretrained(model_dir)
    ds = Dataset.from_list([{"prompt": q.question} for q in _questions()])

    def reward(completions, **kw):
        return [_letters(c) for c in completions]

    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t0)

    args = GRPOConfig(output_dir=out_dir, per_device_train_batch_size=B_QUESTIONS * G, num_generations=G,
                      max_completion_length=T_NEW, learning_rate=1e-5, max_steps=STEPS, beta=0.001,
                      logging_steps=1, report_to="none", use_cpu=True, bf16=False, save_strategy="no",
                      temperature=1.0, seed=0, dataloader_num_workers=0, disable_tqdm=True, loss_type="grpo")
    trainer = GRPOTrainer(model=model_dir, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok,
                          callbacks=[Timer()])
    trainer.train()
    return {"step_s": statistics.median(times[1:])}


def matmul_peak(dtype: torch.dtype, n: int = 1024, reps: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def main() -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory() as d:
        ours = run_ours(os.path.join(d, "ours"))
        trl = run_trl(os.path.join(d, "trl"))
    speedup = trl["step_s"] / ours["step_s"]
    # update phase: policy forward+backward (6N/token) + reference forward (2N/token)
    flops = 8 * ours["n_params"] * ours["tokens"]
    update_tflops = flops / ours["update_s"] / 1e12
    peak_bf16, peak_fp32 = matmul_peak(torch.bfloat16), matmul_peak(torch.float32)
    print(f"{'':28s}{'searchr1':>12s}{'TRL':>12s}")
    print(f"{'s / step (median)':28s}{ours['step_s']:12.3f}{trl['step_s']:12.3f}")
    print(f"{'  of which generation':28s}{ours['gen_s']:12.3f}{'-':>12s}")
    print(f"{'  of which update phase':28s}{ours['update_s']:12.3f}{'-':>12s}")
    print(f"batch {B_QUESTIONS} questions x {G} samples, <= {T_NEW} new tokens, {ours['n_params']} params, "
          f"{ours['tokens']:.0f} tokens/step; matmul peak bf16 {peak_bf16:.3f} / fp32 {peak_fp32:.3f} TFLOP/s")
    print(f"BENCH trainer_step_s {ours['step_s']:.4f} s")
    print(f"BENCH trl_grpo_step_s {trl['step_s']:.4f} s")
    print(f"BENCH trainer_speedup_vs_trl {speedup:.2f} x")
    print(f"BENCH trainer_update_tokens_per_s {ours['tokens'] / ours['update_s']:.0f} tok/s")
    print(f"BENCH trainer_update_tflops {update_tflops:.5f} TFLOP/s")
    print(f"BENCH matmul_peak_bf16_tflops {peak_bf16:.4f} TFLOP/s")
    print(f"BENCH matmul_peak_fp32_tflops {peak_fp32:.4f} TFLOP/s")
    print(f"BENCH trainer_update_frac_of_fp32_peak {update_tflops / peak_fp32:.4f} x")


if __name__ == "__main__":
    main()
