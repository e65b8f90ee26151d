"""CPU smoke run of configs/smollm2-135m-sft-grpo.yaml with the real SmolLM2-135M-Instruct:
the cold-start SFT on scripted-teacher trajectories changes the policy, then one GRPO step
with LoRA runs end to end (shortened lengths; the recipe is meant for a GPU)."""
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "smollm2-135m-sft-grpo.yaml"


@pytest.mark.slow
def test_smollm2_sft_then_grpo_step(tmp_path):
    import torch

    from searchr1.data.world import WorldConfig, generate_world
    from searchr1.data.world_cli import write_teacher_sft
    from searchr1.data.world_io import write_world
    from searchr1.models.smollm2 import smollm2_dir
    from searchr1.rl.config import load_config
    from searchr1.rl.sft import load_sft_records, run_sft
    from searchr1.rl.trainer import Trainer
    from searchr1.search.index import build_index, load_retriever

    torch.manual_seed(0)
    w = generate_world(WorldConfig(seed=3, countries=3, cities=6, organisations=4, people=16, works=4,
                                   dev_frac=0.2, test_frac=0.3))
    write_world(w, tmp_path)
    build_index(tmp_path / "corpus.jsonl", tmp_path / "index")
    n = write_teacher_sft(w, load_retriever(tmp_path / "index"), 4, str(tmp_path / "teacher_sft.jsonl"),
                          str(smollm2_dir()))
    assert n == 4
    cfg = load_config(CONFIG, [
        f"data.train_file={tmp_path}/train.jsonl", f"data.val_file={tmp_path}/dev.jsonl",
        f"data.index_dir={tmp_path}/index", f"sft.train_file={tmp_path}/teacher_sft.jsonl",
        "data.batch_size=2", "data.mini_batch_size=2", "data.micro_batch_size=4", "algorithm.group_size=2",
        "rollout.max_turns=2", "rollout.max_turn_tokens=16", "rollout.max_obs_tokens=96",
        "model.bf16_autocast=false", "device=cpu", f"output_dir={tmp_path}/out", "logging.progress_bar=false",
        "total_steps=1"])
    assert cfg.model.lora_rank > 0 and cfg.recipe == "rl"
    tr = Trainer(cfg)
    lora = {k: v.detach().clone() for k, v in tr.policy.named_parameters() if v.requires_grad}
    m = run_sft(tr.policy, load_sft_records(cfg.sft.train_file, tr.tokenizer), lr=cfg.sft.lr, epochs=1,
                batch_size=2, micro_batch_size=2, device=tr.device, seed=0)
    assert m["sft/examples"] == 4 and m["sft/loss"] == m["sft/loss"]  # finite
    changed = [k for k, v in tr.policy.named_parameters() if v.requires_grad and not torch.equal(v, lora[k])]
    assert changed, "SFT changed no LoRA weight"
    row = tr.train_step()
    assert row["rollout/response_len"] > 0 and "reward/mean" in row
