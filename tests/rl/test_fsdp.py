"""FSDP2 on CPU with gloo (2 ranks under torchrun): the sharded update equals the single-process
update on the same global batch, and sharded checkpoints resume exactly, also at another world size.

Tolerance: 5e-5 absolute on the weights after AdamW steps at lr 0.01 (the reduce-scatter sums in a
different order than one process does; Adam's first steps magnify rounding of near-zero gradients);
the logged losses and gradient norms agree to 1e-5. Mixed precision (bf16) is checked loosely.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from searchr1.rl.config import config_from_dict

WORKER = Path(__file__).with_name("fsdp_worker.py")
pytestmark = pytest.mark.slow


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _single(tmp_path, name, spec):
    out = tmp_path / f"{name}.pt"
    subprocess.run([sys.executable, str(WORKER), str(out), json.dumps(spec)], check=True, env=_env(),
                   capture_output=True, timeout=300)
    return torch.load(out)


def _torchrun(tmp_path, name, spec):
    out = tmp_path / f"{name}.pt"
    torchrun = Path(sys.executable).with_name("torchrun")
    res = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(WORKER), str(out),
                          json.dumps({"strategy": "fsdp", **spec})], env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return torch.load(out)


def _close(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=atol, rtol=0, msg=k)


def _same_metrics(ma, mb, tol=1e-5):
    for a, b in zip(ma, mb, strict=True):
        for k in ("actor/pg_loss", "actor/grad_norm", "actor/entropy", "critic/value_loss", "critic/grad_norm"):
            if k in a:
                assert abs(a[k] - b[k]) <= tol * max(1.0, abs(a[k])), (k, a[k], b[k])


@pytest.mark.parametrize("spec", [{"algo": "grpo"}, {"algo": "ppo", "chunk": 3},
                                  {"algo": "grpo", "lora": 4, "chunk": 5, "gc": True}, {"algo": "ppo", "offload": True}],
                         ids=["grpo", "ppo-chunked", "grpo-lora-chunked-checkpointing", "ppo-cpu-offload"])
@pytest.mark.distributed
def test_fsdp_update_equals_single_process(tmp_path, spec):
    spec = {**spec, "steps": 2}
    single = _single(tmp_path, "single", {k: v for k, v in spec.items() if k != "offload"})   # ddp has no offload
    fsdp = _torchrun(tmp_path, "fsdp", spec)
    _close(single["policy"], fsdp["policy"], 5e-5)
    if spec["algo"] == "ppo":
        _close(single["critic"], fsdp["critic"], 5e-5)
    _same_metrics(single["metrics"], fsdp["metrics"])
    init = single["init"]
    moved = max(float((single["policy"][k] - init[k]).abs().max()) for k in init)
    assert moved > 1e-3                                    # the update did something to compare


@pytest.mark.distributed
def test_fsdp_mixed_precision_is_close(tmp_path):
    spec = {"algo": "grpo", "steps": 1}
    single, mp = _single(tmp_path, "single", spec), _torchrun(tmp_path, "mp", {**spec, "mp": True})
    _same_metrics(single["metrics"], mp["metrics"], tol=2e-2)
    assert all(v.dtype == torch.float32 for v in mp["policy"].values())     # fp32 master weights


@pytest.mark.distributed
def test_sharded_checkpoint_resumes_exactly_and_loads_in_one_process(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    straight = _torchrun(tmp_path, "straight", {"steps": 4})
    _torchrun(tmp_path, "first", {"steps": 2, "save_at": 2, "save_dir": str(ck)})
    assert any((ck / "sharded").iterdir())
    resumed = _torchrun(tmp_path, "resumed", {"steps": 4, "resume": str(ck)})
    _close(straight["policy"], resumed["policy"], 0.0)                     # bit for bit, same world size
    _same_metrics(straight["metrics"][2:], resumed["metrics"], tol=0.0)
    one = _single(tmp_path, "one", {"steps": 4, "resume": str(ck)})       # 2 ranks' shards into 1 process
    _close(straight["policy"], one["policy"], 5e-5)


def test_strategy_config_is_checked():
    assert config_from_dict({}, ["distributed.strategy=fsdp"]).distributed.strategy == "fsdp"
    with pytest.raises(ValueError, match="distributed.strategy"):
        config_from_dict({}, ["distributed.strategy=zero3"])
    with pytest.raises(ValueError, match="FSDP only"):
        config_from_dict({}, ["distributed.cpu_offload=true"])


def test_fsdp_without_a_process_group_says_how_to_launch(tiny):
    from searchr1.rl.fsdp import shard_model

    model, _ = tiny
    with pytest.raises(RuntimeError, match="torchrun"):
        shard_model(model)


TRAINER = Path(__file__).with_name("fsdp_trainer_worker.py")


def _fit(out, steps, resume, algo="grpo"):
    torchrun = Path(sys.executable).with_name("torchrun")
    res = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(TRAINER), str(out), str(steps),
                          "1" if resume else "0", algo], env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return torch.load(out / "result.pt")


def test_fsdp_in_one_plain_process_trains_and_exports(tmp_path):
    """distributed.strategy=fsdp without torchrun (one GPU, or a laptop): the trainer makes a one-rank group of
    its own, trains, checkpoints the sharded state and exports a model plain transformers loads."""
    from transformers import AutoModelForCausalLM

    env = {k: v for k, v in _env().items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    res = subprocess.run([sys.executable, str(TRAINER), str(tmp_path), "2", "0"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = torch.load(tmp_path / "result.pt")
    assert out["step"] == 2 and (tmp_path / "checkpoints" / "step_000002" / "sharded").is_dir()
    init = out["init"]
    assert max(float((init[k] - out["policy"][k]).abs().max()) for k in init) > 1e-3   # it trained
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    _close(out["policy"], {k: v for k, v in model.state_dict().items() if k in out["policy"]}, 0.0)


@pytest.mark.distributed
def test_trainer_under_fsdp_resumes_exactly_and_exports_a_plain_model(tmp_path):
    """Trainer.fit on 2 ranks (GRPO, chunked log-probs, checkpoint every step): 3 steps straight ==
    2 steps + --resume + 1; the final save_pretrained export loads in plain transformers with the
    gathered weights and generates the trainer's greedy tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    straight = _fit(tmp_path / "a", 3, False)
    _fit(tmp_path / "b", 2, False)
    ck = tmp_path / "b" / "checkpoints" / "step_000002"
    assert (ck / "sharded").is_dir() and (ck / "policy" / "config.json").is_file()
    resumed = _fit(tmp_path / "b", 3, True)
    assert straight["step"] == resumed["step"] == 3
    _close(straight["policy"], resumed["policy"], 0.0)
    final = tmp_path / "a" / "final"
    model, tok = AutoModelForCausalLM.from_pretrained(final), AutoTokenizer.from_pretrained(final)
    _close(straight["policy"], {k: v for k, v in model.state_dict().items() if k in straight["policy"]}, 0.0)
    ids = tok("Q: what is 3\nA:", return_tensors="pt").input_ids
    greedy = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert greedy[0, ids.shape[1]:].tolist() == straight["greedy"]
    init = straight["init"]
    assert max(float((init[k] - straight["policy"][k]).abs().max()) for k in init) > 1e-3   # it trained


@pytest.mark.distributed
def test_ppo_under_fsdp_exports_a_consolidated_critic_and_resumes_exactly(tmp_path):
    """PPO on 2 ranks: each checkpoint's critic/ is the gathered critic (a plain causal LM directory plus
    the value head, equal to the trained critic's weights), and resuming from it (the sharded state;
    critic/ is only the export) continues exactly: 3 steps straight == 2 steps + --resume + 1."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from searchr1.rl.critic import HEAD_FILE

    straight = _fit(tmp_path / "a", 3, False, "ppo")
    critic_dir = tmp_path / "a" / "checkpoints" / "step_000003" / "critic"
    backbone = AutoModelForCausalLM.from_pretrained(critic_dir).state_dict()
    trained = straight["critic"]
    lm = {k[len("lm."):]: v for k, v in trained.items() if k.startswith("lm.")}
    _close(lm, {k: backbone[k] for k in lm}, 0.0)
    _close({k: v for k, v in trained.items() if k.startswith("head.")},
           {f"head.{k}": v for k, v in load_file(str(critic_dir / HEAD_FILE)).items()}, 0.0)
    init = straight["init"]
    assert max(float((init[k] - lm[k]).abs().max()) for k in init if k in lm) > 1e-3     # the critic trained
    _fit(tmp_path / "b", 2, False, "ppo")
    assert (tmp_path / "b" / "checkpoints" / "step_000002" / "critic" / HEAD_FILE).is_file()
    resumed = _fit(tmp_path / "b", 3, True, "ppo")
    assert resumed["step"] == 3
    _close(straight["critic"], resumed["critic"], 0.0)
    _close(straight["policy"], resumed["policy"], 0.0)


def test_unreadable_sharded_checkpoint_is_a_checkpoint_error(tmp_path, tiny):
    from searchr1.rl.checkpoint import CheckpointError
    from searchr1.rl.fsdp import load_sharded

    model, _ = tiny
    opt = torch.optim.AdamW(model.parameters())
    (tmp_path / "sharded").mkdir()
    (tmp_path / "sharded" / ".metadata").write_bytes(b"torn")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_sharded(tmp_path / "sharded", {"policy": (model, opt)})
