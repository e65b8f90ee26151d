"""Shared tiny assets for the RL tests: a byte-level tokenizer and a 2-layer Qwen2 (hidden 32)."""
from __future__ import annotations

import pytest
import torch

from searchr1.data.qa import QAExample

TEMPLATE = "Q: {question}\nA:"


def make_byte_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<eos>", "<pad>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


def make_tiny_model(vocab_size: int, seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, eos_token_id=vocab_size - 2, pad_token_id=vocab_size - 1)
    return Qwen2ForCausalLM(cfg)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A save_pretrained directory (model + tokenizer) built once per session."""
    d = tmp_path_factory.mktemp("tiny-qwen2")
    tok = make_byte_tokenizer()
    model = make_tiny_model(len(tok))
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture
def tiny(tiny_dir):
    """(model, tokenizer) fresh from the saved directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)


@pytest.fixture(scope="session")
def questions():
    return [QAExample(id=f"q{i}", question=f"what is {i}", golden_answers=[str(i)]) for i in range(16)]


def tiny_config(out_dir, **extra):
    from searchr1.rl.config import config_from_dict

    cfg = config_from_dict({}, tiny_overrides(out_dir, **extra))
    cfg.data.prompt_template = TEMPLATE
    return cfg


def tiny_overrides(out_dir, **extra) -> list[str]:
    """A fast CPU configuration: 4-token single-turn answers, no search."""
    base = {
        "model.path": "unused", "rollout.max_turns": 1, "rollout.max_turn_tokens": 4, "rollout.search_enabled": "false",
        "rollout.max_prompt_tokens": 64, "rollout.max_total_tokens": 128, "data.batch_size": 4,
        "data.mini_batch_size": 4, "data.micro_batch_size": 8,
        "algorithm.name": "grpo", "algorithm.group_size": 4, "optimizer.actor_lr": 0.01,
        "optimizer.actor_warmup_ratio": 0.0, "total_steps": 2, "logging.progress_bar": "false",
        "logging.plot": "false", "output_dir": str(out_dir), "device": "cpu",
    }
    base.update({k.replace("__", "."): v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture(name="tiny_config")
def tiny_config_fixture():
    """The ``tiny_config(out_dir, **overrides)`` builder (a fixture: test modules cannot import conftest)."""
    return tiny_config
