"""Web backends and the search cache named by the train config, the eval setup and the eval/ask flags."""
import pytest

from searchr1.cli import main
from searchr1.errors import ConfigError
from searchr1.eval.setup import make_retriever
from searchr1.rl.config import config_from_dict
from searchr1.rl.models import build_retriever
from searchr1.search.cache import CacheMiss, CachedSearch, SearchCacheConfig
from searchr1.search.web import WebConfig, WebSearchRetriever


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", "test-key")
    monkeypatch.delenv("SERPER_BASE_URL", raising=False)


def test_train_config_names_a_web_backend_and_a_cache(fake_web, tmp_path):
    fake = fake_web("serper")
    path = str(tmp_path / "train.sqlite")
    cfg = config_from_dict({"search": {"backend": "web:serper", "web": {"base_url": fake.url, "qps": 100},
                                       "cache": {"path": path, "mode": "rw"}}})
    assert cfg.search.web.provider == "serper"
    retriever = build_retriever(cfg.data, cfg.search)
    assert isinstance(retriever, CachedSearch) and isinstance(retriever.inner, WebSearchRetriever)
    assert retriever.backend == "web:serper"
    live = retriever.search(["who wrote hamlet", "capital of peru"], 2)
    assert live[0][0].doc.title == "who wrote hamlet result 0" and len(fake.requests) == 2
    cfg = config_from_dict({"search": {"backend": "web:serper", "web": {"base_url": fake.url},
                                       "cache": {"path": path, "mode": "replay"}}})
    replay = build_retriever(cfg.data, cfg.search)
    assert replay.search(["who wrote hamlet", "capital of peru"], 2) == live and len(fake.requests) == 2
    with pytest.raises(CacheMiss):
        replay.search(["a new question"], 2)


@pytest.mark.parametrize("values, needle", [
    ({"search": {"backend": "web:bing"}}, "search backend 'web:bing' is unknown"),
    ({"search": {"cache": {"mode": "replay"}}}, "needs a file"),
    ({"search": {"cache": {"mode": "often", "path": "x"}}}, "mode 'often' is unknown"),
    ({"search": {"web": {"qps": -1}}}, "qps >= 0"),
    ({"search": {"backend": "web:serper", "web": {"provider": "brave"}}}, "contradicts search.backend=web:serper"),
])
def test_bad_search_sections(values, needle):
    with pytest.raises(ConfigError, match=needle):
        config_from_dict(values)


def test_the_backend_names_the_provider():
    assert config_from_dict({"search": {"backend": "web:brave"}}).search.web.provider == "brave"


def test_train_config_refuses_two_retrievers(tmp_path):
    cfg = config_from_dict({"search": {"backend": "web:serper"}, "data": {"index_dir": str(tmp_path),
                                                                          "train_file": str(tmp_path)}})
    with pytest.raises(ConfigError, match="leave data.retriever_url and data.index_dir empty"):
        cfg.check_inputs()


def test_eval_make_retriever_with_web_and_cache(fake_web, tmp_path):
    fake = fake_web("serper")
    cache = SearchCacheConfig(str(tmp_path / "eval.sqlite"), "rw")
    guard, info = make_retriever(backend="web:serper", web=WebConfig(base_url=fake.url, qps=100), cache=cache)
    assert info["kind"] == "web:serper"
    assert info["location"] == {"url": fake.url, "search_cache": {"path": cache.path, "mode": "rw"}}
    assert isinstance(guard.inner, CachedSearch)
    first = guard.search(["q1"], 2)
    assert guard.search(["q1"], 2) == first and len(fake.requests) == 1
    with pytest.raises(ValueError, match="pass one retriever"):
        make_retriever(index="x", backend="web:serper")


def test_ask_replay_without_a_recording_fails_in_one_line(tmp_path, capsys):
    argv = ["ask", "who wrote hamlet", "--search-backend", "web:serper",
            "--search-cache", str(tmp_path / "none.sqlite"), "--search-cache-mode", "replay"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "nothing to replay" in lines[0] and "Traceback" not in err, err
