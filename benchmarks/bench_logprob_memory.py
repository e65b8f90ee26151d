"""Peak memory of one learner update: full (B, T, V) logits vs log-probs from hidden states in chunks.

A 2-layer Qwen2 (hidden 64) with Qwen's 151,936-token vocabulary, one row of a 24-token prompt and a
1,000-token response, fp32 on CPU: the logits dominate, as they do for a 3B model at 4k tokens.
Each setting runs in a fresh subprocess; the figure is the growth of the process's peak RSS
(``VmHWM``, reset just before the update) during ``Learner.prepare`` + ``Learner.update`` over its
RSS just before (model, optimizer and batch built). Prints ``BENCH`` lines.

Env: ``BENCH_LOGPROB_TOKENS`` (response length, default 1000), ``BENCH_LOGPROB_CHUNK`` (default 128).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

VOCAB = 151_936


def rss_mb() -> float:
    """Current resident set size of this process (MiB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MiB): ``VmHWM``, which starts afresh at ``exec`` and at
    :func:`reset_peak` (``ru_maxrss`` would carry the parent's peak over fork + exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise OSError("/proc/self/status has no VmHWM line; this benchmark needs Linux")


def reset_peak() -> None:
    """Set the peak RSS to the current RSS (Linux >= 4.0: ``5`` to /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def child(tokens: int, chunk: int, hidden: int = 64, layers: int = 2, vocab: int = VOCAB,
          checkpointing: bool = False, algo: str = "reinforce") -> dict:
    """One learner update in this process; peak RSS figures in MiB (``model_base_mb``: RSS before the
    model was built, so ``peak_mb - model_base_mb`` is everything the training step holds)."""
    import tempfile

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from searchr1.rl.batch import collate
    from searchr1.rl.config import config_from_dict
    from searchr1.rl.learner import Learner
    from searchr1.rollout.types import Trajectory

    torch.manual_seed(0)
    model_base = rss_mb()
    mcfg = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                       num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(mcfg)
    kl = "0.001" if algo == "ppo" else "0"
    cfg = config_from_dict({}, ["model.path=unused", "device=cpu", f"output_dir={tempfile.mkdtemp()}",
                                f"algorithm.name={algo}", "algorithm.group_size=1", f"algorithm.kl_coef={kl}",
                                "algorithm.skip_zero_adv=false", "data.batch_size=1", "data.mini_batch_size=1",
                                "data.micro_batch_size=1", f"actor.logprob_chunk_size={chunk}", "total_steps=1",
                                f"model.gradient_checkpointing={str(checkpointing).lower()}"])
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    learner = Learner(cfg, model, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    traj = Trajectory(prompt_ids=torch.randint(0, vocab, (24,), generator=g).tolist(),
                      response_ids=torch.randint(0, vocab, (tokens,), generator=g).tolist(),
                      response_mask=[1] * tokens, group_id=0)
    batch = collate([traj], [1.0])
    reset_peak()
    base, t0 = rss_mb(), time.perf_counter()
    learner.prepare(batch)
    if algo != "ppo":
        batch.advantages = batch.policy_mask.float()
    m = learner.update(batch, seed=0)
    return {"chunk": chunk, "tokens": tokens, "model_base_mb": model_base, "base_mb": base, "peak_mb": peak_rss_mb(),
            "step_growth_mb": peak_rss_mb() - base, "seconds": time.perf_counter() - t0,
            "grad_norm": m["actor/grad_norm"], "model_config": mcfg.to_dict()}


def measure(tokens: int, chunk: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_logprob_memory", "--child", str(tokens), str(chunk)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    tokens = int(os.environ.get("BENCH_LOGPROB_TOKENS", "1000"))
    chunk = int(os.environ.get("BENCH_LOGPROB_CHUNK", "128"))
    full, chunked = measure(tokens, 0), measure(tokens, chunk)
    for r in (full, chunked):
        print(f"  chunk={r['chunk']:>5}  RSS before {r['base_mb']:.0f} MiB  peak {r['peak_mb']:.0f} MiB  "
              f"growth {r['step_growth_mb']:.0f} MiB  {r['seconds']:.2f}s  grad_norm {r['grad_norm']:.6f}")
    print(f"BENCH learner_peak_growth_full_logits_mb {full['step_growth_mb']:.0f} MiB")
    print(f"BENCH learner_peak_growth_chunked_mb {chunked['step_growth_mb']:.0f} MiB")
    print(f"BENCH learner_peak_growth_chunked_vs_full {chunked['step_growth_mb'] / full['step_growth_mb']:.3f} x")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]), int(sys.argv[3]))))
    elif len(sys.argv) == 3 and sys.argv[1] == "--child-json":     # keyword arguments of child() as JSON
        print(json.dumps(child(**json.loads(sys.argv[2]))))
    else:
        main()
