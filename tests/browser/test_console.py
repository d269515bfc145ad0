"""The console in a real headless chromium against a real stack (issue 20's list): sign-in,
a streamed chat, an image, a video, the jobs list, the usage chart, keys, admin refusal, CSRF,
the CSP, and axe-core on every page, with a screenshot of each."""

from __future__ import annotations

import datetime as dt
import json
import re

import openai
import pytest
import requests

from common.infra.orm import utcnow
from common.jobs.queue import QUEUES
from tests.browser.conftest import sign_in
from tests.support.history import seed_history

pytestmark = pytest.mark.timeout(180)
AXE = "/console/static/vendor/axe.min.js"


def _page(context, console, account, path="/console/playground"):
    page = context.new_page()
    sign_in(page, console.url, account, path)
    return page


def _chat(page, prompt: str, model: str | None = None) -> None:
    """Send a chat from the playground and wait until its stream has ended."""
    if model:
        page.select_option("#chat-model", model)
    page.fill("#prompt", prompt)
    page.click("#chat-send")
    page.wait_for_selector("#chat-output[data-done=true]")


def _submit(page, target) -> None:
    """Click a form's button and wait for the page the form leads to."""
    with page.expect_navigation():
        target.click()


def _axe(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now."""
    page.add_script_tag(url=AXE)  # same origin: the CSP lets it in like the console's own
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def _check_page(page, console, name: str) -> None:
    """axe at desktop width and at 375 px, no sideways scrolling at 375 px, and a
    screenshot of each."""
    page.wait_for_selector("html[data-ready=true]")
    assert page.evaluate("() => window.__cspViolations") == [], name
    assert _axe(page) == [], name
    page.screenshot(path=console.screenshots / f"{name}.png", full_page=True)
    page.set_viewport_size({"width": 375, "height": 800})
    page.wait_for_timeout(100)  # one frame for the layout (and the charts' resize) to settle
    assert _axe(page) == [], f"{name} at 375 px"
    overflow = page.evaluate("() => document.documentElement.scrollWidth")
    assert overflow <= 375, f"{name} scrolls sideways at 375 px ({overflow} px wide)"
    page.screenshot(path=console.screenshots / f"{name}-375.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_sign_in_sets_a_locked_down_cookie_and_sign_out_revokes_the_session(context, console):
    account = console.create_user()
    page = context.new_page()
    page.goto(f"{console.url}/console/jobs")
    assert "/console/login" in page.url  # not signed in: the sign-in form, then back here
    _check_page(page, console, "login")
    page.fill("#username", account["username"])
    page.fill("#password", "wrong-password-123")
    page.click("form button[type=submit]")
    assert page.locator("[role=alert]").inner_text() == "Invalid username or password."
    page.fill("#password", account["password"])
    page.click("form button[type=submit]")
    page.wait_for_url(f"{console.url}/console/jobs")
    cookie = next(c for c in context.cookies() if c["name"] == "bailian_console")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"
    stolen = {"bailian_console": cookie["value"]}
    assert requests.get(f"{console.url}/console/jobs", cookies=stolen, allow_redirects=False,
                        timeout=10).status_code == 200
    page.click("text=Sign out")
    page.wait_for_url(f"{console.url}/console/login")
    # The old cookie, replayed, is refused: the session ended on the server, not just here.
    replay = requests.get(f"{console.url}/console/jobs", cookies=stolen, allow_redirects=False,
                          timeout=10)
    assert replay.status_code == 302 and "/console/login" in replay.headers["Location"]


def test_a_streamed_chat_shows_tokens_before_its_job_ends(context, console):
    account = console.create_user()
    page = _page(context, console, account)
    page.fill("#prompt", "Tell me a story [[emulator: chunk_ms=250]]")
    page.click("#chat-send")
    page.wait_for_function("() => document.getElementById('chat-answer').textContent.length")
    early = page.locator("#chat-answer").inner_text()
    job_id = page.locator("#chat-output").get_attribute("data-job-id")
    job = console.api(account, f"/api/jobs/{job_id}")
    assert job["status"] == "running", job  # tokens on screen while the job still runs
    page.wait_for_selector("#chat-output[data-done=true]")
    final = page.locator("#chat-answer").inner_text()
    assert final.startswith(early) and len(final) > len(early)
    job = console.api(account, f"/api/jobs/{job_id}")
    assert job["status"] == "succeeded"
    assert job["result"]["choices"][0]["message"]["content"] == final
    assert f"{job['usage']['total_tokens']} tokens" in page.locator("#chat-status").inner_text()
    _check_page(page, console, "playground-chat")


def test_a_thinking_model_shows_its_reasoning_folded(context, console):
    account = console.create_user()
    page = _page(context, console, account)
    _chat(page, "Think about it", model="qwq-plus")
    thinking = page.locator("#chat-thinking")
    assert thinking.is_visible() and thinking.get_attribute("open") is None  # folded
    assert page.locator("#chat-reasoning").text_content()
    assert page.locator("#chat-answer").inner_text()


def test_an_image_generation_displays_the_images_in_place(context, console):
    account = console.create_user()
    page = _page(context, console, account)
    page.fill("#image-prompt", "a lighthouse at dusk")
    page.fill("#count", "2")
    page.click("text=Generate")
    page.wait_for_function("() => [...document.querySelectorAll('#image-output img')]"
                           ".filter(img => img.complete && img.naturalWidth > 0).length == 2",
                           timeout=60_000)
    _check_page(page, console, "playground-image")
    job_id = page.locator("#image-output .gallery").get_attribute("data-job-id")
    page.goto(f"{console.url}/console/jobs/{job_id}")
    assert page.locator(".gallery img").count() == 2
    _check_page(page, console, "job-image")


# The <video>'s metadata loaded (or it failed), and its source fetched by the page itself
# with a Range header: what a player that seeks asks for.
PLAYER_CHECK = """async (selector) => {
    const video = document.querySelector(selector);
    const state = await new Promise(resolve => {
        if (video.readyState >= 1) return resolve(video.readyState);
        if (video.error) return resolve(-video.error.code);
        video.addEventListener('loadedmetadata', () => resolve(video.readyState));
        video.addEventListener('error', () => resolve(-video.error.code));
        setTimeout(() => resolve('no metadata in 20 s, networkState ' + video.networkState),
                   20000);  // a bound for a clear failure, not a wait: events end it first
    });
    const answer = await fetch(video.currentSrc, {headers: {Range: 'bytes=0-99'}});
    const bytes = new Uint8Array(await answer.arrayBuffer());
    return {readyState: state, status: answer.status, type: answer.headers.get('content-type'),
            range: answer.headers.get('content-range'), length: bytes.length,
            box: String.fromCharCode(...bytes.slice(4, 8)), src: video.getAttribute('src'),
            poster: video.getAttribute('poster')};
}"""


def _assert_plays(page, selector: str) -> None:
    player = page.evaluate(PLAYER_CHECK, selector)
    assert player["readyState"] >= 1, player  # HAVE_METADATA: the browser read the MP4
    assert (player["status"], player["type"], player["length"]) == (206, "video/mp4", 100), player
    assert player["range"].startswith("bytes 0-99/") and player["box"] == "ftyp", player
    assert player["src"].startswith("/api/jobs/"), player  # our stored copy, never DashScope's
    assert player["poster"] and player["poster"].startswith("/api/jobs/"), player
    poster_loaded = page.evaluate("""(src) => new Promise(resolve => { const img = new Image();
        img.onload = () => resolve(img.naturalWidth > 0); img.onerror = () => resolve(false);
        img.src = src; })""", player["poster"])
    assert poster_loaded


def test_a_video_made_in_the_playground_plays_in_place_and_on_its_page(context, console):
    account = console.create_user()
    page = _page(context, console, account)
    # By keyboard: pick the model (its fields follow), type the prompt, submit.
    page.focus("#video-model")
    for _ in range(len(page.locator("#video-model option").all())):
        if page.input_value("#video-model") == "wan2.5-t2v-preview":
            break
        page.keyboard.press("ArrowDown")
    assert page.input_value("#video-model") == "wan2.5-t2v-preview"
    # The model's own durations (5 or 10 s) replaced the first model's (5 s only).
    page.wait_for_function("() => [...document.querySelectorAll('#video-duration option')]"
                           ".some(option => option.value === '10')")
    page.select_option("#video-duration", "10")
    page.focus("#video-prompt")
    page.keyboard.type("a paper boat drifting down a stream")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Generate video"
    page.keyboard.press("Enter")
    page.wait_for_selector("#video-output figure.video video", timeout=60_000)
    _assert_plays(page, "#video-output video")
    _check_page(page, console, "playground-video")
    job_id = page.locator("#video-output figure.video").get_attribute("data-job-id")
    job = console.api(account, f"/api/jobs/{job_id}")
    assert (job["kind"], job["model"], job["status"]) == ("video", "wan2.5-t2v-preview",
                                                          "succeeded")
    page.goto(f"{console.url}/console/jobs/{job_id}")
    _assert_plays(page, "figure.video video")
    assert "duration=10" in page.locator("main").inner_text()
    _check_page(page, console, "job-video")
    page.goto(f"{console.url}/console/jobs?kind=video")
    assert page.locator("#kind").input_value() == "video"
    assert job_id[:8] in page.locator("#jobs-table tbody").inner_text()


def test_a_video_form_the_model_refuses_says_why_in_place(context, console):
    account = console.create_user()
    page = _page(context, console, account)
    page.select_option("#video-model", "wan2.2-t2v-plus")
    page.wait_for_selector("#video-size")
    page.fill("#video-prompt", "a kite")
    # A duration this model does not make (forged: the form offers only its own).
    page.evaluate("""() => { const option = document.createElement('option');
        option.textContent = '7'; document.getElementById('video-duration').append(option); }""")
    page.select_option("#video-duration", "7")
    page.click("text=Generate video")
    alert = page.locator("#video-output [role=alert]")
    alert.wait_for()
    assert "duration" in alert.inner_text() and "must be one of 5 seconds" in alert.inner_text()
    assert console.api(account, "/api/jobs", kind="video")["items"] == []


def test_the_jobs_page_filters_and_paginates(context, console):
    account = console.create_user()
    seed_history(console.database, user_id=account["id"], jobs=60)
    page = _page(context, console, account, "/console/jobs")
    ids = page.locator("#jobs-table tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.jobId)")
    assert len(ids) == 25
    _submit(page, page.locator("#next-page"))
    more = page.locator("#jobs-table tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.jobId)")
    assert len(more) == 25 and not set(ids) & set(more)
    api_pages = console.api(account, "/api/jobs", limit=50)["items"]
    assert ids + more == [job["id"] for job in api_pages]  # the API's order, the API's rows
    _check_page(page, console, "jobs")

    page.goto(f"{console.url}/console/jobs")
    page.select_option("#status", "failed")
    page.select_option("#kind", "chat")
    _submit(page, page.locator("text=Filter"))
    statuses = page.locator("#jobs-table tbody tr td:nth-child(4)").all_inner_texts()
    kinds = page.locator("#jobs-table tbody tr td:nth-child(2)").all_inner_texts()
    expected = console.api(account, "/api/jobs", status="failed", kind="chat", limit=100)
    assert len(statuses) == len(expected["items"]) > 0
    assert set(statuses) == {"failed"} and set(kinds) == {"chat"}

    day = (utcnow() - dt.timedelta(days=3)).date().isoformat()
    page.goto(f"{console.url}/console/jobs?from={day}&to={day}")
    dates = page.locator("#jobs-table tbody tr td:nth-child(5) time").evaluate_all(
        "cells => cells.map(cell => cell.getAttribute('datetime').slice(0, 10))")
    assert dates and set(dates) == {day}

    chat = page.locator("#jobs-table tbody tr", has_text="qwen-turbo").first.get_attribute(
        "data-job-id")
    page.goto(f"{console.url}/console/jobs/{chat}")
    assert "seeded question" in page.locator(".conversation").inner_text()
    _check_page(page, console, "job-chat")


def test_the_usage_chart_renders_the_usage_rows_that_the_api_reports(context, console):
    account = console.create_user()
    seed_history(console.database, user_id=account["id"], jobs=150)
    page = _page(context, console, account, "/console/usage")
    page.wait_for_selector("#chart-tokens[data-rendered=true] canvas")
    page.wait_for_selector("#chart-cost[data-rendered=true] canvas")
    chart = json.loads(page.locator("#usage-data").text_content())
    assert page.locator("#chart-tokens").get_attribute("data-series") == \
        str(len(chart["models"])) == "5"
    start = chart["days"][0]
    by_model = console.api(account, "/api/usage", start=start, group_by="model")
    by_day = console.api(account, "/api/usage", start=start, group_by="day")
    assert {g["model"]: g["total_tokens"] for g in by_model["groups"]} == \
        {m: sum(chart["tokens"][m]) for m in chart["models"]}
    assert {g["model"]: round(g["cost"], 6) for g in by_model["groups"]} == \
        {m: round(sum(chart["cost"][m]), 6) for m in chart["models"]}
    assert {g["day"]: g["total_tokens"] for g in by_day["groups"] if g["total_tokens"]} == \
        {day: total for day, total in ((d, sum(chart["tokens"][m][i] for m in chart["models"]))
                                       for i, d in enumerate(chart["days"])) if total}
    totals = page.locator("#usage-totals tfoot td").all_inner_texts()
    assert int(totals[1]) == by_model["totals"]["total_tokens"]
    with page.expect_download() as download:
        page.click("text=Download CSV")
    lines = download.value.path().read_text().splitlines()
    assert len(lines) == 1 + by_model["totals"]["requests"]
    _check_page(page, console, "usage")


def test_a_key_created_in_the_console_works_with_the_sdk_until_revoked_there(context, console):
    account = console.create_user()
    page = _page(context, console, account, "/console/keys")
    page.fill("#key-name", "sdk key")
    page.fill("#rpm-new", "100")
    _submit(page, page.locator("text=Create key"))
    secret = page.locator("#new-key-secret").input_value()
    assert secret and page.locator("#new-key").is_visible()
    _check_page(page, console, "keys-created")
    client = openai.OpenAI(base_url=f"{console.url}/v1", api_key=secret, max_retries=0)
    answer = client.chat.completions.create(
        model="qwen-turbo", messages=[{"role": "user", "content": "hello"}])
    assert answer.choices[0].message.content
    page.goto(f"{console.url}/console/keys")
    assert secret not in page.content()  # shown once
    key = page.locator("article.key", has_text="sdk key")
    key.locator("input[name=tpm_limit]").fill("5000")
    _submit(page, key.locator("text=Save limits"))
    assert page.locator("article.key", has_text="sdk key").locator(
        "input[name=tpm_limit]").input_value() == "5000"
    _submit(page, page.locator("text=Revoke sdk key"))
    assert page.locator("article.key.revoked", has_text="sdk key").count() == 1
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="qwen-turbo", messages=[{"role": "user", "content": "hello"}])
    _check_page(page, console, "keys")


ADMIN_PAGES = ("/console/admin/users", "/console/admin/spend", "/console/admin/system")


def test_a_default_user_is_refused_admin_pages_on_the_server(context, console):
    account = console.create_user()
    page = _page(context, console, account)
    assert page.locator("nav >> text=Users").count() == 0
    for path in ADMIN_PAGES:
        response = page.goto(f"{console.url}{path}")
        assert response.status == 403, path
    token = page.locator("meta[name=csrf-token]").get_attribute("content")
    created = page.request.post(f"{console.url}/console/admin/users", form={
        "csrf_token": token, "username": "sneaky_user", "password": "a-long-password-123"},
        max_redirects=0)
    assert created.status == 403
    _check_page(page, console, "admin-refused")


def test_a_running_job_is_canceled_from_its_page(context, console):
    account = console.create_user()
    submitted = requests.post(f"{console.url}/api/bailian/generation", timeout=10, headers={
        "Authorization": f"Bearer {console.api_token(account)}", "Prefer": "respond-async"},
        json={"model": "wanx-v1", "prompt": "slow [[emulator: duration_s=60]]"})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["data"]["id"]
    page = _page(context, console, account, f"/console/jobs/{job_id}")
    _submit(page, page.locator("text=Cancel job"))
    assert page.locator("h1 .status").inner_text() == "canceled"
    assert console.api(account, f"/api/jobs/{job_id}")["status"] == "canceled"
    assert page.locator("text=Cancel job").count() == 0


def test_another_users_job_is_404_in_the_console(context, console):
    owner, stranger = console.create_user(), console.create_user()
    seed_history(console.database, user_id=owner["id"], jobs=1)
    job_id = console.api(owner, "/api/jobs")["items"][0]["id"]
    page = _page(context, console, stranger)
    for path in (f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/images"):
        assert page.goto(f"{console.url}{path}").status == 404, path
    token = page.locator("meta[name=csrf-token]").get_attribute("content")
    cancel = page.request.post(f"{console.url}/console/jobs/{job_id}/cancel",
                               headers={"X-CSRFToken": token}, max_redirects=0)
    assert cancel.status == 404


def test_admin_pages_work_for_an_admin(context, console):
    admin = console.create_user("admin")
    seed_history(console.database, user_id=admin["id"], jobs=20)
    page = _page(context, console, admin, "/console/admin/users")
    page.fill("#new-username", "made_in_console")
    page.fill("#new-password", "a-long-password-123")
    _submit(page, page.locator("text=Create user"))
    row = page.locator("form.user-row", has_text="made_in_console")
    row.locator("select[name=role]").select_option("premium")
    row.locator("input[name=budget_amount]").fill("12.5")
    _submit(page, row.locator("button"))
    row = page.locator("form.user-row", has_text="made_in_console")
    assert row.locator("select[name=role]").input_value() == "premium"
    assert float(row.locator("input[name=budget_amount]").input_value()) == 12.5
    _check_page(page, console, "admin-users")
    page.goto(f"{console.url}/console/admin/spend")
    assert admin["username"] in page.locator("#spend-by-user").inner_text()
    _check_page(page, console, "admin-spend")
    page.goto(f"{console.url}/console/admin/system")
    assert page.locator("#workers tbody tr").count() >= 1  # the stack's worker answered
    assert page.locator("#queue-depths tbody tr").count() == len(QUEUES)
    _check_page(page, console, "admin-system")


def test_a_form_posted_without_its_csrf_token_is_refused(context, console):
    account = console.create_user()
    page = _page(context, console, account, "/console/keys")
    refused = page.request.post(f"{console.url}/console/keys", form={"name": "forged"},
                                max_redirects=0)
    assert refused.status == 400 and "CSRF" in refused.text()
    fetched = page.request.post(f"{console.url}/console/token", max_redirects=0)
    assert fetched.status == 400  # a fetch without the X-CSRFToken header, likewise
    page.reload()
    assert page.locator("article.key").count() == 0  # nothing was created


def test_the_csp_keeps_an_injected_script_inert(context, console):
    account = console.create_user()
    page = _page(context, console, account)
    response = page.goto(f"{console.url}/console/playground")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    payload = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">"
    _chat(page, payload)
    job_id = page.locator("#chat-output").get_attribute("data-job-id")
    page.goto(f"{console.url}/console/jobs/{job_id}")
    assert payload in page.locator(".msg-user pre").inner_text()  # shown as text
    assert page.evaluate("() => window.__pwned") is None
    # And markup that did reach the page could not run: the CSP refuses inline script.
    page.evaluate("""() => new Promise(resolve => {
        document.addEventListener('securitypolicyviolation', e => {
            window.__blocked = e.violatedDirective; resolve(); });
        const s = document.createElement('script');
        s.textContent = 'window.__pwned = 3';
        document.body.appendChild(s);
    })""")
    assert page.evaluate("() => window.__pwned") is None
    assert re.match(r"script-src", page.evaluate("() => window.__blocked"))


def test_the_pages_work_by_keyboard(context, console):
    account = console.create_user()
    page = _page(context, console, account)
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    page.keyboard.press("Tab")  # on into the page: the chat's model picker is reachable
    for _ in range(10):
        if page.evaluate("() => document.activeElement.id") == "chat-model":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "chat-model"
    page.keyboard.press("Shift+Tab")
    focus_ring = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert focus_ring != "none"
