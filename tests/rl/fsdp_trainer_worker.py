"""Run by ``torchrun`` from test_fsdp.py: ``Trainer.fit`` under ``distributed.strategy=fsdp`` on the tiny
Qwen2 of conftest.py. ``python fsdp_trainer_worker.py OUT_DIR STEPS RESUME(0|1) [ALGO]`` (ALGO: grpo, or ppo
with a critic); rank 0 writes ``OUT_DIR/result.pt`` with the step reached, the gathered policy weights (and the
critic's under ppo) and greedy tokens of a prompt."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TEMPLATE, make_byte_tokenizer, make_tiny_model, tiny_overrides  # noqa: E402

from searchr1.data.qa import QAExample  # noqa: E402
from searchr1.rl import distributed as D  # noqa: E402
from searchr1.rl import fsdp as F  # noqa: E402
from searchr1.rl.config import config_from_dict  # noqa: E402
from searchr1.rl.trainer import Trainer  # noqa: E402

PROMPT = "Q: what is 3\nA:"


def letters(trajs, examples):
    scores = [sum(97 <= i < 123 for i in t.response_ids) / max(1, len(t.response_ids)) for t in trajs]
    return scores, {"letters": sum(scores) / len(scores)}


def main(out: str, steps: int, resume: bool, algo: str = "grpo") -> None:
    info = D.init_distributed("cpu", group_of_one=True)   # a plain process (no torchrun) gets a group of 1
    tok = make_byte_tokenizer()
    model = make_tiny_model(len(tok))
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cfg = config_from_dict({}, tiny_overrides(out, total_steps=steps, checkpoint__every=1, data__batch_size=4,
                                              algorithm__kl_coef=0.05, distributed__strategy="fsdp",
                                              actor__logprob_chunk_size=16, rollout__temperature=1.0,
                                              algorithm__name=algo, optimizer__critic_lr=0.01))
    cfg.data.prompt_template = TEMPLATE
    questions = [QAExample(id=f"q{i}", question=f"what is {i}", golden_answers=[str(i)]) for i in range(16)]
    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions, reward_fn=letters)
    tr.fit(resume=resume)
    full = F.full_state_dict(tr.policy)
    critic = F.full_state_dict(tr.learner.critic) if tr.learner.critic is not None else None
    rollout = tr._full_policy()
    if info.is_main:
        ids = tok(PROMPT, return_tensors="pt").input_ids
        with torch.no_grad():
            greedy = rollout.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
        torch.save({"step": tr.step, "policy": full, "greedy": greedy[0, ids.shape[1]:].tolist(),
                    "init": init, "critic": critic},
                   Path(out) / "result.pt")
    D.barrier()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", *sys.argv[4:5])
