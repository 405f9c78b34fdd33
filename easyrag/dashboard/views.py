"""The dashboard's views: two pages, the JSON they poll, cancel, the dead-letter actions, the assets.

Every view is for staff users.  The pages send anonymous visitors to LOGIN_URL (the admin's login
page) and answer 403 to other users; the JSON views answer 401 / 403 in JSON, so that a page left
open after its session ended says so instead of reading a login form as data.  The data itself
comes from task_app.overview (the same figures as get_task_stats(), no key scans), the facade's
cancel_task and legacy.dead_letters; these views only translate them to HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from pathlib import Path

import redis
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django.views.static import serve

from easyrag.legacy.dead_letters import delete_dead_letter, list_dead_letters, requeue_dead_letter
from easyrag.legacy.errors import DeadLetterNotRequeueableError
from easyrag.task_app.async_task_framework import cancel_task
from easyrag.task_app.overview import overview, task_detail

logger = logging.getLogger(__name__)

#: The app's static folder; asset() serves these files from it, and nothing else.
ASSET_DIR = Path(__file__).resolve().parent / "static" / "dashboard"
ASSET_NAMES = ("dashboard.js", "dashboard.css", "favicon.svg")
#: Milliseconds between two polls of a page's JSON (the spec asks for at most 2 s).
POLL_MS = 1000

View = Callable[..., HttpResponse]


def _is_staff(request: HttpRequest) -> bool:
    return request.user.is_active and request.user.is_staff


def staff_page(view: View) -> View:
    """A page for staff: anonymous visitors go to the login page, other users get 403.

    Not the admin's ``staff_member_required``: it sends a signed-in non-staff user to the login
    page too, where a 403 says what is wrong.
    """
    @wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        if not _is_staff(request):
            raise PermissionDenied("the task dashboard is for staff users")
        return view(request, *args, **kwargs)

    return wrapped


def staff_json(view: View) -> View:
    """A JSON endpoint for staff: 401 / 403 in JSON for others; 503 when Redis does not answer."""
    @wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"error": "not signed in", "login_url": settings.LOGIN_URL}, status=401)
        if not _is_staff(request):
            return JsonResponse({"error": "the task dashboard is for staff users"}, status=403)
        try:
            return view(request, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            logger.warning("dashboard: Redis did not answer %s: %s", request.path, error)
            return JsonResponse({"error": f"Redis did not answer: {error}"}, status=503)

    return wrapped


def _assets() -> dict[str, str]:
    """The URLs of the page's script, style sheet and icon; ``?v=`` changes whenever a file does."""
    urls = {}
    for name in ASSET_NAMES:
        stat = (ASSET_DIR / name).stat()
        urls[name.replace(".", "_")] = f"{reverse('dashboard:asset', args=[name])}?v={stat.st_mtime_ns:x}"
    return urls


def _page(request: HttpRequest, template: str, status: int = 200, **context: object) -> HttpResponse:
    return render(request, template, {"assets": _assets(), "poll_ms": POLL_MS,
                                     "login_url": settings.LOGIN_URL, **context}, status=status)


@require_GET
@staff_page
def index(request: HttpRequest) -> HttpResponse:
    """The overview page; its script fills it from data.json at once, then every POLL_MS."""
    return _page(request, "dashboard/index.html", dead_letter_key=request.GET.get("key", ""))


@require_GET
@staff_json
def overview_data(request: HttpRequest) -> HttpResponse:
    """overview(): counts, queues per priority, workers, recent and failed tasks."""
    return JsonResponse(overview())


@require_GET
@staff_page
def task_page(request: HttpRequest, task_id: str) -> HttpResponse:
    """One task's live page; 404 (the same page, saying so) for an id with no record."""
    known = task_detail(task_id) is not None
    return _page(request, "dashboard/task.html", status=200 if known else 404, task_id=task_id, known=known)


@require_GET
@staff_json
def task_data(request: HttpRequest, task_id: str) -> HttpResponse:
    """The task's record as JSON; 404 when it has none (never submitted, or expired)."""
    record = task_detail(task_id)
    if record is None:
        return JsonResponse({"error": f"no task {task_id}"}, status=404)
    return JsonResponse(record)


@require_POST
@staff_json
def cancel(request: HttpRequest, task_id: str) -> HttpResponse:
    """Cancel a pending or running task: ``{"cancelled": bool, "task": record}``; 404 when unknown."""
    record = task_detail(task_id)
    if record is None:
        return JsonResponse({"error": f"no task {task_id}"}, status=404)
    cancelled = cancel_task(task_id)
    logger.info("task %s (%s): cancel from the dashboard by %s: %s", task_id, record["task_type"],
                request.user.get_username(), "cancelled" if cancelled else "already finished")
    return JsonResponse({"cancelled": cancelled, "task": task_detail(task_id)})


def _key(values: dict[str, str]) -> str:
    return values.get("key", "").strip()


@require_GET
@staff_json
def dead_letters_data(request: HttpRequest) -> HttpResponse:
    """``{"key", "count", "letters"}``: how many letters ``K:dead`` holds and the newest 100."""
    key = _key(request.GET)
    if not key:
        return JsonResponse({"error": "key: type the list key of async_command (--redis-key)"}, status=400)
    try:
        count, letters = list_dead_letters(key)
    except redis.ResponseError as error:  # WRONGTYPE: K:dead holds something else
        return JsonResponse({"error": f"{key}:dead cannot be read as a list: {error}"}, status=400)
    return JsonResponse({"key": key, "count": count, "letters": [letter.to_dict() for letter in letters]})


def _letter_action(request: HttpRequest, action: Callable[[str, str], int], answer: str) -> HttpResponse:
    key, letter_id = _key(request.POST), request.POST.get("id", "")
    if not key or not letter_id:
        return JsonResponse({"error": "key and id are both required", answer: 0}, status=400)
    try:
        done = action(key, letter_id)
    except DeadLetterNotRequeueableError as error:
        return JsonResponse({"error": str(error), answer: 0}, status=409)
    logger.info("dead letter %s of %r: %s %s from the dashboard by %s", letter_id, key, answer,
                done, request.user.get_username())
    return JsonResponse({answer: done})


@require_POST
@staff_json
def requeue_letter(request: HttpRequest) -> HttpResponse:
    """Put a dead letter's item back on its list: ``{"requeued": 1}``, or 0 when it is gone already."""
    return _letter_action(request, requeue_dead_letter, "requeued")


@require_POST
@staff_json
def delete_letter(request: HttpRequest) -> HttpResponse:
    """Delete a dead letter: ``{"deleted": 1}``, or 0 when it is gone already."""
    return _letter_action(request, delete_dead_letter, "deleted")


def asset(request: HttpRequest, name: str) -> HttpResponse:
    """dashboard.js, dashboard.css or favicon.svg, served by the app itself (no login: no data in them).

    Why not ``{% static %}``: with DEBUG off (this project's default) ``runserver`` serves no
    static files, and a deployment would need ``collectstatic`` plus a web server or WhiteNoise
    before the page worked at all.  Django's ``serve`` answers conditional requests (304); a URL
    carries the file's ``?v=`` version, so browsers may keep it for a day.  The same files stay in
    static/dashboard/, so ``collectstatic`` still finds them for a front server that wants them.
    """
    if name not in ASSET_NAMES:
        raise Http404(name)
    response = serve(request, name, document_root=str(ASSET_DIR))
    response["Cache-Control"] = "public, max-age=86400" if "v" in request.GET else "no-cache"
    return response
