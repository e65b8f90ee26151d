"""The point of the demo: RL from the shipped base model raises held-out EM well above the base's."""
import dataclasses

import pytest

RL_STEPS = 8        # single-hop GRPO steps of 4 questions x GROUP samples (the demo defaults otherwise)
GROUP = 8
MIN_GAIN = 0.2      # held-out greedy EM must rise at least this much above the base model's


@pytest.mark.slow
def test_rl_raises_heldout_single_hop_em_well_above_the_base(tmp_path):
    import torch

    from searchr1.data.world import generate_world
    from searchr1.demo.config import DemoConfig
    from searchr1.demo.pretrain import SHIPPED_BASE, PretrainConfig, _built_with, load_base_model
    from searchr1.demo.train import heldout_em, run_rl, train_config
    from searchr1.rl.trainer import Trainer
    from searchr1.search.bm25 import BM25Config, BM25Retriever

    assert _built_with(SHIPPED_BASE, PretrainConfig()), (
        "the shipped base model is missing or stale: run `searchr1 pretrain --out src/searchr1/assets/demo_base`")
    torch.set_num_threads(1)
    cfg = DemoConfig(seed=0, group_size=GROUP, single_hop_steps=RL_STEPS, mixed_steps=0, eval_every=0)
    cfg = dataclasses.replace(cfg, world=dataclasses.replace(cfg.world))
    world = generate_world(cfg.world)
    bm25 = BM25Retriever.build(world.documents, BM25Config(backend="numpy"))
    dev = [q for q in world.splits["dev"] if q.metadata["type"] == "single-hop"]
    model, tok = load_base_model(SHIPPED_BASE)

    base = Trainer(train_config(cfg, True, str(tmp_path / "base")), policy=model, tokenizer=tok, retriever=bm25,
                   train_examples=dev, val_examples=[], log_to_disk=False)
    base_em = heldout_em(base, dev)["heldout/em"]
    _, history = run_rl(cfg, model, tok, bm25, world.splits["train"], dev, True, str(tmp_path / "rl"))
    final = history[-1]
    assert final["heldout/em"] >= base_em + MIN_GAIN, (base_em, [h.get("heldout/em") for h in history])
    assert final["heldout/searches"] >= 0.9   # it answers by searching

