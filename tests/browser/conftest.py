"""A real stack (gunicorn web, Celery worker and beat, the emulator, MariaDB, Redis) and
Debian's chromium driven by Playwright: the console as a person uses it.

scripts/test installs chromium (scripts/system-tools.sh) and the console's vendored assets
(scripts/vendor-assets); Playwright never downloads a browser here. Screenshots of every page
go to the run's log directory (the `log_dir` fixture), or TEST_ARTIFACTS_DIR when set, under
screenshots/.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from pathlib import Path

import pytest
import requests

from tests.support import processes

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-battery-staple"


def _unavailable(message: str):
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclasses.dataclass
class Console:
    url: str  # http://localhost:PORT (localhost: a secure context, so Secure cookies work)
    database: object
    screenshots: Path

    def create_user(self, role: str = "default") -> dict:
        from common.accounts import users
        from common.accounts.models import Role

        username = f"console_{uuid.uuid4().hex[:10]}"
        with self.database.session() as session:
            user = users.create_user(session=session, username=username, password=PASSWORD,
                                     email=f"{username}@example.com", role=Role(role))
        return {"id": user.id, "username": username, "password": PASSWORD, "role": role}

    def api_token(self, account: dict) -> str:
        response = requests.post(f"{self.url}/api/auth/login", timeout=10, json={
            "username": account["username"], "password": account["password"]})
        response.raise_for_status()
        return response.json()["data"]["access_token"]

    def api(self, account: dict, path: str, **params) -> dict:
        response = requests.get(f"{self.url}{path}", params=params, timeout=10, headers={
            "Authorization": f"Bearer {self.api_token(account)}"})
        response.raise_for_status()
        return response.json()["data"]


@pytest.fixture(scope="module")
def console(base_env, log_dir, emulator, database) -> Console:
    if not (REPO / "web/console/static/vendor/axe.min.js").exists():
        _unavailable("the console's assets are missing: run scripts/vendor-assets")
    worker = processes.worker(base_env, log_dir, name="console-worker")
    beat = processes.beat(base_env, log_dir)
    port = processes.free_port()
    web = processes.gunicorn(base_env, log_dir, port, name="console-web", workers=1)
    # TEST_ARTIFACTS_DIR keeps them past pytest's cleanup of old runs' directories.
    shots = Path(os.environ.get("TEST_ARTIFACTS_DIR") or log_dir) / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    yield Console(url=f"http://localhost:{port}", database=database, screenshots=shots)
    web.stop()
    worker.stop()
    beat.stop()


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root in CI, where chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


@pytest.fixture
def context(browser):
    created = browser.new_context(viewport={"width": 1280, "height": 900})
    # Every refusal by the CSP, on every page (the pages themselves must cause none).
    created.add_init_script("""window.__cspViolations = [];
        document.addEventListener('securitypolicyviolation', event =>
            window.__cspViolations.push(event.violatedDirective + ' ' + event.blockedURI));""")
    yield created
    created.close()


def sign_in(page, base_url: str, account: dict, next_path: str = "/console/playground"):
    """Sign in through the form; on the page asked for, wired by console.js."""
    page.goto(f"{base_url}{next_path}")
    page.fill("#username", account["username"])
    page.fill("#password", account["password"])
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base_url}{next_path}*")
    page.wait_for_selector("html[data-ready=true]")
