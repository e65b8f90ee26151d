"""The page at / without a browser: served by the agent app with a strict content policy, only local
resources (works offline, no CDN), the token requirement visible to it, and no HTML built from strings.
tests/agent/test_page_browser.py drives it in Chromium."""
from __future__ import annotations

import re

import httpx

from searchr1.agent.service import STATIC_DIR


def test_page_and_its_files_are_served_with_a_strict_policy(scripted_service):
    url = scripted_service.url
    r = httpx.get(f"{url}/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "default-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    for src in re.findall(r'(?:src|href)="([^"]+)"', r.text):
        if src.startswith("data:"):
            continue
        assert not re.match(r"^[a-z]+://|^//", src), f"the page loads {src} from elsewhere"
        got = httpx.get(f"{url}/{src}")
        assert got.status_code == 200 and got.content == (STATIC_DIR / src.removeprefix("static/")).read_bytes()
    assert httpx.get(f"{url}/static/app.js").headers["content-type"].startswith(("text/javascript",
                                                                                 "application/javascript"))
    assert httpx.get(f"{url}/static/%2e%2e/service.py").status_code == 404   # no path traversal


def test_health_tells_the_page_a_token_is_needed(scripted_service):
    url = scripted_service.url
    assert httpx.get(f"{url}/health").json()["auth_required"] is True
    assert httpx.get(f"{url}/").status_code == 200   # the page itself needs no token; the API does
    assert httpx.post(f"{url}/v1/chat/completions", json={"messages": []}).status_code == 401


def test_static_files_fetch_nothing_from_elsewhere_and_never_parse_server_text_as_html():
    for f in STATIC_DIR.iterdir():
        text = f.read_text()
        assert not re.search(r"https?://|//cdn|@import", text), f"{f.name} refers to another host"
    js = (STATIC_DIR / "app.js").read_text()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function", js)
    assert 'fetch("v1/chat/completions"' in js and "stream: true" in js
