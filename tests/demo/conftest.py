"""One shortened demo run shared by the demo tests (tiny world, tiny base model, two RL steps)."""
import pytest


@pytest.fixture(scope="session")
def fast_demo(tmp_path_factory):
    import torch

    from searchr1.demo.config import fast_config
    from searchr1.demo.run import run_demo

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("demo")
    cfg = fast_config(out=str(root / "run"), cache_dir=str(root / "cache"))
    summary = run_demo(cfg, progress=False, log=lambda *_: None)
    return cfg, summary
