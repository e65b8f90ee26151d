"""PPO with a critic, checkpoints plain transformers can load, SFT masking, the CLI."""
import json

import torch

from searchr1.rl.sft import load_sft_records, run_sft
from searchr1.rl.trainer import Trainer


def test_ppo_step_trains_critic_and_writes_loadable_checkpoint(tiny, questions, tmp_path, tiny_config):
    from transformers import AutoModelForCausalLM

    model, tok = tiny
    cfg = tiny_config(tmp_path, total_steps=2, **{"algorithm__name": "ppo", "algorithm__group_size": 1,
                                                  "algorithm__kl_coef": 0.01, "optimizer__critic_lr": 0.01,
                                                  "optimizer__critic_warmup_ratio": 0, "checkpoint__every": 1,
                                                  "checkpoint__keep_last": 1, "logging__val_every": 2})

    def first_token_parity(trajs, examples):  # a reward that varies across rows, so values have a target
        scores = [float(t.response_ids[0] % 2) for t in trajs]
        return scores, {"parity": sum(scores) / len(scores)}

    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions, val_examples=questions[:4],
                 reward_fn=first_token_parity)
    head0 = tr.learner.critic.head.weight.detach().clone()
    m = tr.fit()
    assert not torch.equal(tr.learner.critic.head.weight, head0)   # the critic learned something
    for key in ("critic/value_loss", "actor/kl", "actor/kl_coef", "val/em", "val/turns"):
        assert key in m, key
    ckpts = sorted((tmp_path / "checkpoints").glob("step_*"))
    assert [p.name for p in ckpts] == ["step_000002"]                  # keep_last=1 pruned step 1
    reloaded = AutoModelForCausalLM.from_pretrained(ckpts[0] / "policy")
    for (k, v), (_, w) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(v, w), k
    assert (ckpts[0] / "critic" / "value_head.safetensors").is_file()
    assert not list((tmp_path / "checkpoints").glob(".tmp*"))


def test_sft_learns_policy_tokens_only(tiny, tmp_path):
    model, tok = tiny
    target, injected = "abcabc", "XYZXYZ"
    ids_t, ids_i = tok.encode(target, add_special_tokens=False), tok.encode(injected, add_special_tokens=False)
    rows = [{"prompt_ids": tok.encode("Q:", add_special_tokens=False), "response_ids": ids_t + ids_i,
             "response_mask": [1] * len(ids_t) + [0] * len(ids_i)}]
    f = tmp_path / "sft.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows * 4) + "\n")
    trajs = load_sft_records(f, tok)
    from searchr1.rl.batch import collate, forward_logprobs

    batch = collate(trajs[:1], [0.0])
    lp0, _ = forward_logprobs(model, batch, 8)
    m = run_sft(model, trajs, lr=0.02, epochs=15, batch_size=4, micro_batch_size=2, device="cpu")
    lp1, _ = forward_logprobs(model, batch, 8)
    pol, inj = batch.policy_mask[0] == 1, (batch.policy_mask[0] == 0) & (batch.valid_mask[0] == 1)
    assert m["sft/loss"] < 0.5 * m["sft/loss_first_epoch"]
    assert lp1[0][pol].mean() > lp0[0][pol].mean() + 2.0             # targets learned
    assert lp1[0][inj].mean() - lp0[0][inj].mean() < lp1[0][pol].mean() - lp0[0][pol].mean()


def test_cli_train_smoke(tiny_dir, tmp_path):
    from searchr1.cli import main

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"what is {i}", "golden_answers": [str(i)]}) + "\n"
                            for i in range(4)))
    out = tmp_path / "run"
    rc = main(["train", "--recipe", "grpo", f"model.path={tiny_dir}", f"data.train_file={data}",
               "data.prompt_template=Q: {question} A:", "rollout.search_enabled=false", "rollout.max_turns=1",
               "rollout.max_turn_tokens=3", "rollout.max_prompt_tokens=64", "rollout.max_total_tokens=128",
               "algorithm.group_size=2", "data.batch_size=2", "data.mini_batch_size=2", "total_steps=2",
               "logging.progress_bar=false", f"output_dir={out}", "device=cpu"])
    assert rc == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and "reward/em" in rows[0]
    assert (out / "curves.png").stat().st_size > 1000
    assert (out / "checkpoints" / "step_000002" / "COMPLETE").is_file()
