"""The real-model path on CPU: SmolLM2-135M-Instruct cannot write the search protocol from the bare prompt;
the cold start on a handful of scripted-teacher trajectories makes it emit valid <search> and <answer>
blocks, after which a GRPO step has a learning signal (non-zero advantages)."""
import pytest

TEACHER, EPOCHS, LR = 8, 4, "3e-3"


@pytest.mark.slow
def test_cold_start_then_a_grpo_step_with_signal(tmp_path):
    import torch

    from searchr1.data.world import WorldConfig, generate_world
    from searchr1.data.world_io import write_world
    from searchr1.rl.config import load_config
    from searchr1.rl.trainer import Trainer
    from searchr1.search.index import build_index

    torch.set_num_threads(2)
    w = generate_world(WorldConfig(seed=3, people=40, works=8, dev_frac=0.2, test_frac=0.2))
    write_world(w, tmp_path)
    build_index(tmp_path / "corpus.jsonl", tmp_path / "index")
    cfg = load_config("tiny-cpu", [
        f"data.train_file={tmp_path}/train.jsonl", f"data.val_file={tmp_path}/dev.jsonl",
        f"data.index_dir={tmp_path}/index", f"output_dir={tmp_path}/out", f"cold_start.cache_dir={tmp_path}/cache",
        f"cold_start.teacher_trajectories={TEACHER}", f"cold_start.epochs={EPOCHS}", f"cold_start.lr={LR}",
        "cold_start.probe_questions=4", "rollout.topk=1", "rollout.max_turns=3", "data.micro_batch_size=2",
        "data.batch_size=2", "data.mini_batch_size=2", "algorithm.group_size=4", "total_steps=1",
        "logging.progress_bar=false", "logging.plot=false"])
    tr = Trainer(cfg, log_to_disk=False)
    rep = tr.cold_start_report
    print("cold start:", rep)
    assert rep["before"]["format"] < cfg.cold_start.min_format and rep["ran"] is True
    assert rep["after"]["format"] >= 0.5 and rep["after"]["searches"] >= 0.5   # it searches and answers in format
    m = tr.train_step()
    print({k: round(v, 4) for k, v in m.items() if k.split("/")[0] in ("reward", "actor", "rollout")})
    assert m["actor/skipped_zero_adv"] == 0.0 and 0.0 < m["reward/mean"] < 1.0
