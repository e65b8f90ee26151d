"""The memory planner: architecture numbers, strategies, the CLI, and its error against measured peaks."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from searchr1.cli import main
from searchr1.rl.config import config_from_dict
from searchr1.rl.plan import GiB, ModelShape, Workload, estimate, plan

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "model_configs"
PAPER = str(ROOT / "configs" / "paper-ppo-qwen2.5-3b.yaml")


def _shape(name):
    return ModelShape.from_config(json.loads((FIX / f"{name}.json").read_text()))


@pytest.mark.parametrize("name, billions", [("qwen2.5-3b", 3.09), ("qwen2.5-7b", 7.62), ("llama-3.2-3b", 3.21)])
def test_parameter_counts_of_the_paper_models(name, billions):
    assert _shape(name).params() / 1e9 == pytest.approx(billions, abs=0.01)


@pytest.mark.parametrize("tied", [True, False])
def test_parameter_count_equals_a_real_model(tied):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=500, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
    model = Qwen2ForCausalLM(cfg)
    assert ModelShape.from_config(cfg.to_dict()).params() == sum(p.numel() for p in model.parameters())
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    assert ModelShape.from_config(cfg.to_dict()).lora_params(4) == trainable


def test_strategies_order_and_sharding():
    cfg = config_from_dict({}, ["model.path=x", "algorithm.name=ppo", "algorithm.group_size=1",
                                "data.batch_size=64", "data.mini_batch_size=64"])
    rows, tips, _ = plan(cfg, _shape("qwen2.5-7b"), 8, 80)
    d, f, o, lo = rows["ddp"], rows["fsdp"], rows["fsdp+offload"], rows["lora"]
    assert f["optimizer"] == pytest.approx(d["optimizer"] / 8)
    assert o["optimizer"] == 0 and o["cpu_offloaded"] > 0
    assert d["peak"] > f["peak"] > o["peak"]
    assert lo["grads"] < f["grads"] / 100 and lo["reference"] == 0
    assert d["peak"] > 72 * GiB                      # a 7B policy + critic with fp32 Adam: no single GPU
    assert len(tips) == 1 and tips[0].startswith("fits with")


def test_chunked_logits_do_not_scale_with_length():
    shape = _shape("qwen2.5-3b")
    base = config_from_dict({}, ["model.path=x", "actor.logprob_chunk_size=1024"])
    short, long_ = (Workload.from_config(base, 8, seq_len=n) for n in (2048, 8192))
    assert estimate(shape, short, "fsdp", 8)["logits"] == estimate(shape, long_, "fsdp", 8)["logits"]
    full = Workload.from_config(config_from_dict({}, ["model.path=x"]), 8, seq_len=8192)
    assert estimate(shape, full, "fsdp", 8)["logits"] > 50 * estimate(shape, long_, "fsdp", 8)["logits"]


def test_cli_prints_the_table_and_advice(capsys):
    rc = main(["plan", "--config", PAPER, "--gpus", "8", "--gpu-memory", "80",
               "--model-config", str(FIX / "qwen2.5-3b.json"), "actor.logprob_chunk_size=0"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "3.09 B parameters" in out and "fsdp+offload" in out and "fits" in out
    assert "actor.logprob_chunk_size=1024" in out          # the paper preset's full logits do not fit


def test_paper_ppo_preset_fits_one_node_as_shipped(capsys):
    """The preset ships with fsdp and chunked log-probs because ddp does not fit 8 x 80 GiB."""
    rc = main(["plan", "--config", PAPER, "--gpus", "8", "--gpu-memory", "80", "--json",
               "--model-config", str(FIX / "qwen2.5-3b.json")])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert data["advice"] == ["fits as configured with distributed.strategy=fsdp"]
    assert data["rows"]["ddp"]["peak"] > 0.9 * 80 * 2**30 > data["rows"]["fsdp"]["peak"]


def test_cli_reads_model_path_directory_and_json(tmp_path, capsys):
    (tmp_path / "config.json").write_text((FIX / "llama-3.2-3b.json").read_text())
    rc = main(["plan", f"model.path={tmp_path}", "--gpus", "1", "--gpu-memory", "24", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and set(data["rows"]) == {"ddp", "fsdp", "fsdp+offload", "lora"}


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["plan", "model.path=Nobody/NoModel"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no config.json") and "--model-config" in err and "Traceback" not in err
    bad = tmp_path / "c.json"
    bad.write_text('{"hidden_size": 4}')
    assert main(["plan", "--model-config", str(bad)]) == 2
    assert "lacks" in capsys.readouterr().err


SPECS = [dict(tokens=500, chunk=0), dict(tokens=500, chunk=64),
         dict(tokens=1000, chunk=128, hidden=256, layers=4, vocab=8192),
         dict(tokens=1000, chunk=128, hidden=256, layers=4, vocab=8192, checkpointing=True),
         dict(tokens=500, chunk=0, hidden=128, layers=2, vocab=32000, algo="ppo")]


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(f"{k}{v}" for k, v in s.items()))
def test_estimate_within_25_percent_of_measured_cpu_peak(spec):
    """Peak RSS of one learner update of a tiny Qwen2 (fresh subprocess, fp32, one GPU's worth = ddp
    on 1) minus RSS before the model was built, against the planner's training-phase estimate."""
    runs = []
    for _ in range(2):   # RSS of a ~200 MiB update moves by tens of MiB run to run (malloc arenas): keep the lower
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_logprob_memory", "--child-json",
                              json.dumps(spec)], capture_output=True, text=True, cwd=ROOT, check=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    r = min(runs, key=lambda x: x["peak_mb"] - x["model_base_mb"])
    algo = spec.get("algo", "reinforce")
    cfg = config_from_dict({}, ["model.path=x", f"algorithm.name={algo}", "algorithm.group_size=1",
                                f"algorithm.kl_coef={0.001 if algo == 'ppo' else 0}", "data.batch_size=1",
                                "data.mini_batch_size=1", "data.micro_batch_size=1",
                                f"actor.logprob_chunk_size={spec['chunk']}",
                                f"model.gradient_checkpointing={str(spec.get('checkpointing', False)).lower()}"])
    est = estimate(ModelShape.from_config(r["model_config"]), Workload.from_config(cfg, 1, spec["tokens"] + 24),
                   "ddp", 1)["train_phase"]
    measured = (r["peak_mb"] - r["model_base_mb"]) * 2**20
    print(f"PLANCHECK {spec} estimate {est / 2**20:.0f} MiB measured {measured / 2**20:.0f} MiB error {est / measured - 1:+.1%}")
    # 25% plus a 48 MiB floor: one CI run measured the same 150 MiB setting at 163 and at 212 MiB
    assert abs(est - measured) <= 0.25 * measured + 48 * 2**20, \
        f"estimate {est / 2**20:.0f} MiB vs measured {measured / 2**20:.0f} MiB"
    assert torch.isfinite(torch.tensor(r["grad_norm"]))
