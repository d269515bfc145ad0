"""The console in headless chromium: bytes transferred and time to interactive of the jobs
page over 1,000 jobs and the usage page over 30 days x 5 models.

Bytes are what the browser fetched for the page (the document and every asset, headers
included: Resource Timing's transferSize), cold (a new browser context, nothing cached) and
warm (the same context again: the vendored assets come from its cache). Time to interactive is
from navigation start to the moment console.js has wired the page (and, on the usage page,
drawn both charts): `data-ready-at`, performance.now() at the end of its DOMContentLoaded
handler. Baselines: the same data as JSON from the API (bytes), and the sign-in page, the
console's shell with the same scripts and no data (time). Every cold load goes over a
connection already open (the visit before it), with the browser's cache emptied.
"""

from __future__ import annotations

import statistics

import requests

from bench.stack import BenchStack
from tests.browser.conftest import CHROMIUM, sign_in
from tests.support.history import seed_history

LOADS = 15
API = {"jobs": "/api/jobs?limit=25", "usage": "/api/usage?group_by=model"}
_BYTES = """() => {
    const nav = performance.getEntriesByType('navigation')[0];
    return nav.transferSize + performance.getEntriesByType('resource')
        .reduce((sum, entry) => sum + entry.transferSize, 0);
}"""


def _load(page, url: str, ready: str) -> tuple[float, int]:
    page.goto(url)
    page.wait_for_selector(ready)
    page.wait_for_timeout(50)  # let Resource Timing record the last asset
    ready_at = float(page.locator("html").get_attribute("data-ready-at"))
    return ready_at, int(page.evaluate(_BYTES))


def console_pages(stack: BenchStack) -> list[dict]:
    from playwright.sync_api import sync_playwright

    from bench.scenarios import row
    from common.accounts import users
    from common.accounts.models import Role

    with stack.database.session() as session:
        user = users.create_user(session=session, username="console_bench",
                                 password="console-bench-password", role=Role.DEFAULT)
    account = {"id": user.id, "username": "console_bench", "password": "console-bench-password"}
    # 1,000 jobs over 30 days and 5 models: every (day, model) pair has usage rows.
    seed_history(stack.database, user_id=user.id, jobs=1000)
    base = stack.web_url.replace("127.0.0.1", "localhost")  # Secure cookies need localhost
    login = requests.post(f"{base}/api/auth/login", timeout=10, json={
        "username": account["username"], "password": account["password"]})
    login.raise_for_status()
    token = login.json()["data"]["access_token"]
    api_bytes = {name: len(requests.get(f"{base}{path}", timeout=10, headers={
        "Authorization": f"Bearer {token}"}).content) for name, path in API.items()}
    pages = {"jobs": ("/console/jobs", "html[data-ready=true]"),
             "usage": ("/console/usage", "#chart-cost[data-rendered=true]"),
             "sign-in": ("/console/login", "html[data-ready=true]")}
    figures: dict[str, dict[str, list[float]]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox", "--disable-gpu"])
        for name, (path, ready) in pages.items():
            cold_ms, cold_bytes, warm_ms, warm_bytes = [], [], [], []
            for _ in range(LOADS):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                if name == "sign-in":
                    page.goto(f"{base}{path}")
                else:
                    sign_in(page, base, account, path)
                # A cold load on an open connection, as for each page: the visit above cached
                # the shared assets; drop them (the session cookie stays).
                context.new_cdp_session(page).send("Network.clearBrowserCache")
                elapsed, size = _load(page, f"{base}{path}", ready)
                cold_ms.append(elapsed)
                cold_bytes.append(size)
                elapsed, size = _load(page, f"{base}{path}", ready)
                warm_ms.append(elapsed)
                warm_bytes.append(size)
                context.close()
            figures[name] = {"cold_ms": cold_ms, "cold_bytes": cold_bytes,
                             "warm_ms": warm_ms, "warm_bytes": warm_bytes}
        browser.close()
    shell = statistics.median(figures["sign-in"]["cold_ms"])
    rows = []
    for name, label in (("jobs", "jobs page, 1,000 jobs (25 shown)"),
                        ("usage", "usage page, 30 days x 5 models")):
        f = figures[name]
        charts = " and both charts drawn" if name == "usage" else ""
        rows.append(row(f"console {label}: bytes, cold", statistics.median(f["cold_bytes"]),
                        api_bytes[name], "B",
                        setup=f"headless chromium, median of {LOADS} loads; baseline: the "
                              f"API's JSON ({API[name]}); warm (cached assets) "
                              f"{statistics.median(f['warm_bytes']):.0f} B"))
        rows.append(row(f"console {label}: time to interactive, cold",
                        statistics.median(f["cold_ms"]), shell, "ms",
                        setup=f"navigation start to wired page{charts}; baseline: the "
                              f"sign-in page (same scripts, no data); warm "
                              f"{statistics.median(f['warm_ms']):.1f} ms; p95 cold "
                              f"{sorted(f['cold_ms'])[int(0.95 * (LOADS - 1))]:.1f} ms"))
    return rows
