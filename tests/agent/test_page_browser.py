"""The agent page in a real headless Chromium (Selenium): `make test-browser` installs chromium,
chromium-driver and the `browser` extra, then runs these (`-m browser`; `make test` leaves them out).
Without a browser they skip with the reason, except under CI (CI set), where they fail.

The model is the demo's checkpoint: `searchr1 demo`'s own pipeline (`run_demo`) in its fast setting, started
from the shipped base model, writes runs/…/checkpoint and world/index, and `serve-agent`'s own app builder
serves them, as a user would after `make demo`. Screenshots go to runs/test-artifacts/.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

from searchr1.agent.cli import build_app
from searchr1.cli import build_parser
from searchr1.search.server import BackgroundServer

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "runs" / "test-artifacts"
TOKEN = "browser-secret"
WAIT_S = 180   # a CPU model answering beside other jobs


def _unavailable(reason: str):
    message = f"no headless browser: {reason}; run `make test-browser` (installs chromium and chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[browser]')")
    chrome = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver_path = shutil.which("chromedriver")
    if not (chrome and driver_path):
        _unavailable("chromium or chromedriver is not on PATH")
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1100,1400"):
        opts.add_argument(arg)
    opts.binary_location = chrome
    try:
        driver = webdriver.Chrome(options=opts, service=Service(driver_path))
    except WebDriverException as e:
        _unavailable(f"chromium did not start ({e.msg})")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def demo_service(tmp_path_factory):
    """(url, world dir) of serve-agent over a fast `searchr1 demo` run's checkpoint and index."""
    import torch

    from searchr1.demo.config import fast_config
    from searchr1.demo.pretrain import SHIPPED_BASE
    from searchr1.demo.run import run_demo

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("demo") / "run"
    run_demo(fast_config(out=str(out), base_model=str(SHIPPED_BASE), methods=("search-r1",), eval_every=0,
                         test_questions=2), progress=False, log=lambda *_: None)
    args = build_parser().parse_args(["serve-agent", "--model", str(out / "checkpoint"), "--index",
                                      str(out / "world" / "index"), "--token", TOKEN, "--max-new-tokens", "72"])
    app, _ = build_app(args)
    with BackgroundServer(app) as srv:
        yield srv.url, out / "world"


def ask_in_page(driver, url: str, question: str, token: str, wait_end: bool = True):
    """Load the page, enter the token and the question with the keyboard, wait until the run ends."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    wait = WebDriverWait(driver, WAIT_S)
    token_box = wait.until(ec.visibility_of_element_located((By.ID, "token")))   # /health: auth_required
    token_box.clear()
    token_box.send_keys(token)
    box = driver.find_element(By.ID, "question")
    box.clear()
    box.send_keys(question, Keys.ENTER)
    if wait_end:
        wait_done(driver)
    return By


def wait_done(driver):
    """Until the page's status says the run ended (done or error)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ended = ("done", "error")
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_element(By.ID, "status").get_attribute("data-kind") in ended)


def texts(driver, by, selector: str) -> list[str]:
    return [e.get_attribute("textContent") for e in driver.find_elements(by.CSS_SELECTOR, selector)]


def test_page_shows_the_demo_agents_trajectory_answer_and_sources(browser, demo_service):
    url, world = demo_service
    question = json.loads((world / "test.jsonl").read_text().splitlines()[0])["question"]
    api = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=WAIT_S,
                     json={"messages": [{"role": "user", "content": question}]}).json()
    by = ask_in_page(browser, url, question, TOKEN)
    browser.save_screenshot(str(ARTIFACTS / "agent-page.png"))
    status = browser.find_element(by.ID, "status")
    assert status.get_attribute("data-kind") == "done", status.text
    trajectory = api["searchr1"]
    assert trajectory["searches"], "the demo checkpoint searches before it answers"
    kinds = [e.get_attribute("data-kind") for e in browser.find_elements(by.CSS_SELECTOR, "#trajectory > li")]
    assert kinds.count("search") == len(trajectory["searches"]) and kinds[0] == "think"
    assert texts(browser, by, "#trajectory .query") == [s["query"] for s in trajectory["searches"]]
    shown_titles = texts(browser, by, "#trajectory .passage .title")
    assert shown_titles == [p["title"] for s in trajectory["searches"] for p in s["passages"]]
    assert texts(browser, by, "#sources .source .title") == [c["title"] for c in trajectory["citations"]]
    assert trajectory["answer"], "the demo checkpoint answers this question"
    assert browser.find_element(by.ID, "answer").text == trajectory["answer"]   # greedy: as the API answered
    assert kinds[-1] == "answer"


def test_page_escapes_passage_text_and_asks_for_the_token(browser, scripted_service):
    url, token = scripted_service.url, scripted_service.token
    by = ask_in_page(browser, url, "Where was Ada Lovelace born?", "wrong-token")
    status = browser.find_element(by.ID, "status")
    assert status.get_attribute("data-kind") == "error" and "401" in status.text
    assert browser.switch_to.active_element.get_attribute("id") == "token"   # focus moves to the token field

    by = ask_in_page(browser, url, "Where was Ada Lovelace born?", token)
    browser.save_screenshot(str(ARTIFACTS / "agent-page-escaping.png"))
    assert browser.find_element(by.ID, "answer").text == "London"
    assert scripted_service.title in texts(browser, by, "#trajectory .passage .title")   # shown as text, not markup
    assert scripted_service.text in texts(browser, by, "#trajectory .passage .text")
    assert "<i>London</i>" in " ".join(texts(browser, by, "#trajectory .think .body"))
    assert not browser.find_elements(by.CSS_SELECTOR, "main img, main script, main b, main i")
    assert browser.execute_script("return window.__xss === undefined")


def test_page_shows_each_turn_as_it_happens(browser, scripted_service):
    """The first think step is on the page while the search it asked for is still held back."""
    from selenium.webdriver.support.ui import WebDriverWait

    scripted_service.gate.clear()
    try:
        by = ask_in_page(browser, scripted_service.url, "Where was Ada Lovelace born?", scripted_service.token,
                         wait_end=False)
        WebDriverWait(browser, 30).until(lambda d: d.find_elements(by.CSS_SELECTOR, "#trajectory .think"))
        assert browser.find_element(by.ID, "status").get_attribute("data-kind") == "busy"
        assert not browser.find_elements(by.CSS_SELECTOR, "#trajectory .search, #trajectory .answer")
        assert browser.find_element(by.ID, "stop").is_enabled() and not browser.find_element(by.ID, "ask").is_enabled()
    finally:
        scripted_service.gate.set()
    wait_done(browser)
    kinds = [e.get_attribute("data-kind") for e in browser.find_elements(by.CSS_SELECTOR, "#trajectory > li")]
    assert kinds == ["think", "search", "think", "answer"]
