"""The user's pages: playground, jobs, usage and API keys. Each view reads the form or query,
calls the use case the API's view calls, and renders the result."""

from __future__ import annotations

import datetime as dt
import json

from flask import redirect, render_template, request, url_for

from common.billing import reports
from common.errors import AppError, ValidationFailed
from common.infra.orm import utcnow
from common.jobs import queries
from common.jobs.models import JobKind, JobStatus
from common.jobs.results import ChatCompletion, ImageResult, VideoResult
from common.upstream.wanx_models import SEED_MAX
from common.webhooks.deliveries import attempts_of
from web.api.keys import check_models, key_data
from web.api.usage import budget_status, usage_csv
from web.console import bp, signed_in
from web.console.forms import budget, integer, text
from web.context import db_session, services
from web.job_submission import submit_and_wait, task_request, wait_seconds
from web.request_models import CreateKeyRequest, GenerationRequest, UpdateKeyRequest, VideoRequest
from web.validation import validate

JOBS_PER_PAGE = 25
USAGE_DAYS = 30
IMAGE_SIZES = ("1024*1024", "720*1280", "1280*720")


def _owner() -> queries.Owner:
    user = signed_in()
    return queries.Owner(user_id=user.id, is_admin=user.is_admin)


@bp.get("")
@bp.get("/")
def home():
    return redirect(url_for("console.playground"))


# --- playground ----------------------------------------------------------------------------

@bp.get("/playground")
def playground():
    settings = services().settings
    return render_template("console/playground.html", chat_models=list(settings.chat_models),
                           image_models=list(settings.image_models), sizes=IMAGE_SIZES,
                           video=_video_form(request.args.get("video_model")))


@bp.post("/playground/image")
def playground_image():
    """Image generation, answered with the images in place (an htmx fragment): the same
    validation, limits (web.rate_limits), budget and job as POST /api/bailian/generation."""
    form = request.form
    payload = {"model": form.get("model", ""), "prompt": form.get("prompt", ""),
               "n": integer(form, "n"), "parameters": {"size": text(form, "size")}}
    body, job_request = task_request(GenerationRequest, "image_models", payload)
    view, _ = submit_and_wait(kind=JobKind.IMAGE, model=body.model, job_request=job_request,
                              timeout=wait_seconds())
    return _images_fragment(view)


@bp.get("/jobs/<job_id>/images")
def job_images(job_id: str):
    """The images of a job, or a placeholder that asks again while it runs (htmx)."""
    return _images_fragment(_own_job(job_id))


def _own_job(job_id: str):
    """The signed-in user's job (an admin's: anyone's); anyone else's is a 404."""
    with services().database.connect() as conn:
        return queries.get(conn, job_id, _owner())


def _images_fragment(view):
    images = _images(view)
    return render_template("console/_images.html", job=view, images=images)


def _images(view) -> list[dict]:
    if not isinstance(view.result, ImageResult):
        return []
    data = services().shapes.generation_data(view)
    return [{"url": image.url, "size": image.size, "code": image.code, "message": image.message}
            for image in data.output.results]


def _video_form(model: str | None, values=None) -> dict:
    """The video form's fields for one model (the first enabled one unless named): what its
    row of VIDEO_MODELS lets a person choose, the same table POST /api/bailian/video checks."""
    models = services().settings.video_models
    chosen = model if model in models else next(iter(models), None)
    return {"models": list(models), "model": chosen,
            "rules": models[chosen] if chosen else None, "seed_max": SEED_MAX,
            "values": values or {}}


@bp.get("/playground/video/fields")
def playground_video_fields():
    """The video form's fields for the model just picked (htmx), keeping the prompt typed."""
    args = request.args
    return render_template("console/_video_fields.html", video=_video_form(
        args.get("model"), {"prompt": args.get("prompt", ""), "seed": args.get("seed", "")}))


@bp.post("/playground/video")
def playground_video():
    """A video job through the path of POST /api/bailian/video (its validation, limits,
    budget and job), answered at once with its progress, which polls until the video shows."""
    form = request.form
    payload = {"model": form.get("model", ""), "prompt": text(form, "prompt"),
               "size": text(form, "size"), "resolution": text(form, "resolution"),
               "duration": integer(form, "duration"), "seed": integer(form, "seed"),
               "image": text(form, "image"), "first_frame": text(form, "first_frame"),
               "last_frame": text(form, "last_frame")}
    body, job_request = task_request(
        VideoRequest, "video_models", {k: v for k, v in payload.items() if v is not None})
    view, _ = submit_and_wait(kind=JobKind.VIDEO, model=body.model, job_request=job_request,
                              timeout=wait_seconds(sync_by_default=False))
    return _video_fragment(view)


@bp.get("/jobs/<job_id>/video")
def job_video(job_id: str):
    """A job's video player, or a placeholder that asks again until the video is stored."""
    return _video_fragment(_own_job(job_id))


def _video_fragment(view):
    return render_template("console/_video.html", job=view, video=_video(view))


def _video(view) -> dict | None:
    """Links to a succeeded video job's MP4 and poster frame. Only our stored copies are
    embedded (the CSP loads media from 'self' alone); DashScope's link is kept for the
    message shown while a copy is retried."""
    if not isinstance(view.result, VideoResult):
        return None
    output = services().shapes.video_data(view).output
    poster = output.poster
    return {"url": output.video.url, "stored": output.video.stored,
            "upstream_url": output.video.upstream_url,
            "poster": poster.url if poster is not None and poster.stored else None,
            "seconds": view.result.usage.video_seconds}


# --- jobs ----------------------------------------------------------------------------------

def _date(name: str) -> dt.date | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(errors=[{"field": name, "message": "a date, YYYY-MM-DD"}]) \
            from None


def _choice(name: str, enum):
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return enum(value)
    except ValueError:
        raise ValidationFailed(errors=[{"field": name, "message": "one of " + ", ".join(
            member.value for member in enum)}]) from None


@bp.get("/jobs")
def jobs():
    status, kind = _choice("status", JobStatus), _choice("kind", JobKind)
    since, until = _date("from"), _date("to")
    cursor = request.args.get("cursor") or None
    with services().database.connect() as conn:
        views, next_cursor = queries.page(
            conn, _owner(), status=status, kind=kind, cursor=cursor, limit=JOBS_PER_PAGE,
            created_from=dt.datetime.combine(since, dt.time()) if since else None,
            created_before=dt.datetime.combine(until + dt.timedelta(days=1), dt.time())
            if until else None)
    filters = {"status": status.value if status else "", "kind": kind.value if kind else "",
               "from": since.isoformat() if since else "",
               "to": until.isoformat() if until else ""}
    chosen = {name: value for name, value in filters.items() if value}
    next_url = url_for("console.jobs", **chosen, cursor=next_cursor) if next_cursor else None
    first_url = url_for("console.jobs", **chosen) if cursor else None
    return render_template("console/jobs.html", jobs=views, filters=filters,
                           next_url=next_url, first_url=first_url,
                           statuses=list(JobStatus), kinds=list(JobKind))


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    with services().database.connect() as conn:
        view = queries.get(conn, job_id, _owner())
        asked = queries.request_of(conn, job_id) or {}
        attempts = attempts_of(conn, job_id)
    answer = view.result.choices[0].message if isinstance(view.result, ChatCompletion) \
        and view.result.choices else None
    return render_template("console/job.html", job=view, asked=asked, answer=answer,
                           images=_images(view), video=_video(view), attempts=attempts)


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    try:
        services().lifecycle.cancel(job_id, _owner())
    except AppError as exc:
        if exc.status != 409:  # already finished: the page shows how it ended
            raise
    return redirect(url_for("console.job", job_id=job_id), code=303)


# --- usage ---------------------------------------------------------------------------------

def usage_window() -> tuple[dt.datetime, dt.datetime, list[str]]:
    """The last USAGE_DAYS UTC days, today included."""
    end = utcnow()
    first = end.date() - dt.timedelta(days=USAGE_DAYS - 1)
    days = [(first + dt.timedelta(days=i)).isoformat() for i in range(USAGE_DAYS)]
    return dt.datetime.combine(first, dt.time()), end, days


@bp.get("/usage")
def usage():
    start, end, days = usage_window()
    user = signed_in()
    db = db_session()
    daily = reports.summarize(session=db, start=start, end=end, user_id=user.id,
                              group_by=("day", "model"))
    by_model = reports.summarize(session=db, start=start, end=end, user_id=user.id,
                                 group_by="model")
    models = sorted({group["model"] for group in daily["groups"]})
    chart = {"days": days, "models": models,
             "tokens": {m: [0] * len(days) for m in models},
             "cost": {m: [0.0] * len(days) for m in models}}
    for group in daily["groups"]:
        index = days.index(group["day"])
        chart["tokens"][group["model"]][index] = group["total_tokens"]
        chart["cost"][group["model"]][index] = group["cost"]
    # "<" escaped: the JSON sits in a <script type="application/json"> data block.
    return render_template("console/usage.html",
                           chart_json=json.dumps(chart).replace("<", "\\u003c"),
                           groups=by_model["groups"], totals=by_model["totals"],
                           budget=(budget_status(user.id) or {}).get("user"),
                           currency=services().settings.price_currency,
                           start=start, end=end)


@bp.get("/usage.csv")
def usage_download():
    start, end, _ = usage_window()
    return usage_csv(reports.rows(session=db_session(), start=start, end=end,
                                  user_id=signed_in().id))


# --- API keys ------------------------------------------------------------------------------

def _keys_page(status: int = 200, **extra):
    keys = services().api_keys.list(db_session(), user_id=signed_in().id, include_revoked=True)
    settings = services().settings
    return render_template("console/keys.html", keys=[key_data(key) for key in keys],
                           models=list(settings.chat_models) + list(settings.image_models),
                           **extra), status


@bp.get("/keys")
def keys():
    return _keys_page()


def _limits(form) -> dict:
    return {"rpm_limit": integer(form, "rpm_limit"), "tpm_limit": integer(form, "tpm_limit"),
            "budget": budget(form)}


@bp.post("/keys")
def create_key():
    form = request.form
    expires = text(form, "expires_at")
    body = validate(CreateKeyRequest, {
        "name": form.get("name", ""), "models": form.getlist("models") or None,
        "expires_at": f"{expires}T23:59:59Z" if expires else None, **_limits(form)})
    check_models(body.models)
    key, secret = services().api_keys.create(
        db_session(), user_id=signed_in().id, name=body.name, expires_at=body.expires_at,
        models=body.models, rpm_limit=body.rpm_limit, tpm_limit=body.tpm_limit,
        budget=body.budget)
    return _keys_page(201, created=key_data(key), secret=secret)


@bp.post("/keys/<int:key_id>")
def update_key(key_id: int):
    body = validate(UpdateKeyRequest, _limits(request.form))
    session = db_session()
    key = services().api_keys.get(session, key_id, user_id=signed_in().id)
    services().api_keys.change(session, key, rpm_limit=body.rpm_limit,
                               tpm_limit=body.tpm_limit, budget=body.budget)
    return redirect(url_for("console.keys"), code=303)


@bp.post("/keys/<int:key_id>/revoke")
def revoke_key(key_id: int):
    session = db_session()
    key = services().api_keys.get(session, key_id, user_id=signed_in().id)
    services().api_keys.revoke(session, key)
    return redirect(url_for("console.keys"), code=303)
