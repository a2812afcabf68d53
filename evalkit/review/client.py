"""Label Studio through label-studio-sdk 2.x: retries with backoff that never duplicate work, and an
API key that never reaches a file, a log line or an error message.

    >>> from evalkit.review.client import LabelStudioClient
    >>> ls = LabelStudioClient("http://127.0.0.1:8080")          # key from LABEL_STUDIO_API_KEY
    >>> project = ls.find_or_create_project("evalkit · run1 · medical", xml)

The SDK's own retries are switched off (``max_retries=0``): it would resend a bulk import after a
5xx even when the server had already stored it, creating every task twice.  Here each retry of an
import first asks the server which tasks it already has (by their stable ``key``) and sends only
the rest, and ``sync_tasks`` makes sure every key ends up there exactly once.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import Callable

import click
import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

log = logging.getLogger("evalkit.review")

KEY_ENV = "LABEL_STUDIO_API_KEY"
_AUTH_RE = re.compile(r"\b(Token|Bearer)\s+[A-Za-z0-9._~+/=-]+")


class ReviewError(click.ClickException):
    """A review step failed in a way the user can act on (bad key, server down, bad file)."""


def resolve_api_key(api_key: str | None) -> str:
    key = api_key or os.environ.get(KEY_ENV)
    if not key:
        raise ReviewError(f"no Label Studio API key: pass --api-key or set {KEY_ENV} "
                          "(a legacy token or a personal access token from Account & Settings)")
    return key


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        body = exc.body if isinstance(exc.body, str) else json.dumps(exc.body, ensure_ascii=False, default=str)
        return f"HTTP {exc.status_code}: {body[:300]}"
    return f"{type(exc).__name__}: {exc}"


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):      # refused, reset, timed out, protocol error
        return True
    return isinstance(exc, ApiError) and (exc.status_code or 0) >= 500 or \
        isinstance(exc, ApiError) and exc.status_code == 429


class LabelStudioClient:
    """One Label Studio server.  ``attempts`` tries per call, waiting ``backoff`` seconds after the
    first failure and doubling up to ``max_backoff``; ``transport`` lets a test inject faults."""

    def __init__(self, url: str, api_key: str | None = None, *, attempts: int = 6, backoff: float = 0.5,
                 max_backoff: float = 8.0, timeout: float = 120.0, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        if not re.match(r"^https?://", url or ""):
            raise ReviewError(f"--url must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self._key = resolve_api_key(api_key)
        self.attempts, self.backoff, self.max_backoff, self.sleep = attempts, backoff, max_backoff, sleep
        self.retries = 0
        http = httpx.Client(timeout=timeout, follow_redirects=True, transport=transport)
        self.sdk = LabelStudio(base_url=self.url, api_key=self._key, max_retries=0, httpx_client=http)

    # ---- errors and retries --------------------------------------------------------------------

    def scrub(self, text) -> str:
        """``text`` with the API key and any Authorization value replaced by ***."""
        text = str(text).replace(self._key, "***")
        return _AUTH_RE.sub(lambda m: f"{m.group(1)} ***", text)

    def _fail(self, what: str, exc: BaseException) -> ReviewError:
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            hint = (" (the server refused the API key: check --api-key / LABEL_STUDIO_API_KEY; a legacy "
                    "token also needs legacy tokens enabled on the server, a personal access token works as is)")
        elif status == 404:
            hint = " (not found: was the project deleted, or is --url another server?)"
        else:
            hint = ""
        err = ReviewError(self.scrub(f"Label Studio at {self.url}: {what} failed: {_describe(exc)}{hint}"))
        err.status = status
        return err

    def call(self, what: str, fn: Callable, *args, before_retry: Callable[[], bool] | None = None, **kwargs):
        """``fn(*args, **kwargs)``, retried on connection errors, 429 and 5xx.  ``before_retry`` runs
        before each retry; when it returns False the work turned out done and the call stops."""
        started, delay = time.monotonic(), self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:                      # noqa: BLE001 - classified right below
                if not _retryable(exc):
                    raise self._fail(what, exc) from None
                if attempt == self.attempts:
                    raise ReviewError(self.scrub(
                        f"Label Studio at {self.url} did not answer {what} after {attempt} attempts over "
                        f"{time.monotonic() - started:.1f} s (last: {_describe(exc)}). Is the server running "
                        "and is --url right? Nothing was lost: rerun the same command to resume.")) from None
                log.warning(self.scrub(f"{what}: {_describe(exc)}; retry {attempt}/{self.attempts - 1} "
                                       f"in {delay:.1f} s"))
                self.retries += 1
                self.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                if before_retry is not None and before_retry() is False:
                    return None
        raise AssertionError("unreachable")

    # ---- projects --------------------------------------------------------------------------------

    def whoami(self) -> dict:
        me = self.call("who am I", self.sdk.users.whoami)
        return {"id": me.id, "email": me.email}

    def server_version(self) -> str | None:
        try:
            v = self.call("version", self.sdk.versions.get)
            return getattr(v, "release", None) or getattr(v, "label_studio_os_package", {}).get("version")
        except ReviewError:
            return None

    def get_project(self, project_id: int, missing_ok: bool = False):
        try:
            return self.call(f"get project {project_id}", self.sdk.projects.get, id=project_id)
        except ReviewError as e:
            if missing_ok and getattr(e, "status", None) == 404:
                return None
            raise

    def find_project(self, title: str):
        """The one project with exactly this title, or None."""
        found = [p for p in self.call("list projects", lambda: list(self.sdk.projects.list(title=title)))
                 if p.title == title]
        if len(found) > 1:
            raise ReviewError(f"{len(found)} projects in {self.url} are titled {title!r}: pass --project ID")
        return found[0] if found else None

    def find_or_create_project(self, title: str, label_config: str, *, project_id: int | None = None,
                               remembered_id: int | None = None, settings: dict | None = None) -> tuple[object, str]:
        """The project (``project_id``; else ``remembered_id`` from an earlier export if it still
        exists; else by title; else created) with ``label_config`` as its interface.
        Returns (project, what happened: 'created' | 'updated' | 'unchanged')."""
        settings = settings or {}
        if project_id:
            project = self.get_project(project_id)
        else:
            project = self.get_project(remembered_id, missing_ok=True) if remembered_id else None
            project = project or self.find_project(title)
        if project is None:
            # Create, then check by title before any retry: a create that timed out may have happened.
            def created_meanwhile() -> bool:
                return self.find_project(title) is None
            project = self.call("create project", self.sdk.projects.create, title=title,
                                label_config=label_config, before_retry=created_meanwhile, **settings)
            return (project or self.find_project(title)), "created"
        interface_changed = (project.label_config or "").strip() != label_config.strip()
        overlap_changed = "maximum_annotations" in settings and \
            project.maximum_annotations != settings["maximum_annotations"]
        if interface_changed or overlap_changed:
            project = self.call("update the project", self.sdk.projects.update, id=project.id,
                                label_config=label_config, **settings)
            return project, "updated"
        return project, "unchanged"

    # ---- tasks -----------------------------------------------------------------------------------

    def export_json(self, project_id: int, all_tasks: bool = False) -> list[dict]:
        """The project's annotated tasks (or all its tasks) with their annotations, in Label Studio's
        JSON export format: one request."""
        def download():
            chunks = self.sdk.projects.exports.download_sync(project_id, export_type="JSON",
                                                             download_all_tasks=all_tasks)
            return json.loads(b"".join(chunks))
        return self.call(f"export project {project_id}", download)

    def task_index(self, project_id: int) -> dict[str, list[dict]]:
        """{key: [{id, annotations}]} for the project's tasks that carry an evalkit key.  Asks only for
        id, data and the annotation count: on 1,000 tasks several times faster than the JSON export."""
        def listing():
            return list(self.sdk.tasks.list(project=project_id, include="id,data,total_annotations",
                                            page_size=1000))
        out: dict[str, list[dict]] = {}
        for task in self.call(f"list the tasks of project {project_id}", listing):
            key = (task.data or {}).get("key")
            if key:
                out.setdefault(key, []).append({"id": task.id, "annotations": task.total_annotations or 0})
        return out

    def import_tasks(self, project_id: int, tasks: list[dict], *, batch_size: int = 500,
                     have: set | None = None) -> int:
        """Import the tasks the project lacks (by ``data.key``; ``have``: the keys it holds, if known),
        in batches; returns how many the server reported stored.  Safe to rerun, and safe when a batch
        fails after the server stored it: the retry first asks which keys are still missing."""
        have = set(self.task_index(project_id)) if have is None else have
        todo = [t for t in tasks if t["data"]["key"] not in have]
        stored = 0
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]

            def refresh() -> bool:
                nonlocal batch
                present = self.task_index(project_id)
                batch = [t for t in batch if t["data"]["key"] not in present]
                return bool(batch)

            def send():
                return self.sdk.projects.import_tasks(project_id, request=batch, return_task_ids=True)
            answer = self.call(f"import {len(batch)} tasks", send, before_retry=refresh)
            stored += getattr(answer, "task_count", 0) or 0
        return stored

    def delete_task(self, task_id: int) -> None:
        self.call(f"delete task {task_id}", self.sdk.tasks.delete, id=task_id)

    def _remove_duplicates(self, index: dict[str, list[dict]], keys: set) -> int:
        removed = 0
        for key in keys:
            copies = sorted(index.get(key, []), key=lambda t: (-t["annotations"], t["id"]))
            for extra in copies[1:]:
                if extra["annotations"]:
                    continue                 # never delete anyone's work; import merges by key
                self.delete_task(extra["id"])
                removed += 1
        return removed

    def sync_tasks(self, project_id: int, tasks: list[dict], **kw) -> dict:
        """Make the project hold every task of ``tasks`` exactly once.  A duplicate (a key on two
        tasks, e.g. an import that timed out and was finished by the server later) is removed,
        keeping the copy with annotations, else the oldest.  The project is listed again at the end
        only when something was retried or the server stored a different count than was sent:
        otherwise the answers already prove every task arrived once."""
        wanted = {t["data"]["key"] for t in tasks}
        index = self.task_index(project_id)
        before = set(index) & wanted
        removed = self._remove_duplicates(index, wanted)
        retries_before = self.retries
        stored = self.import_tasks(project_id, tasks, have=set(index), **kw)
        if self.retries != retries_before or stored != len(wanted - before):
            index = self.task_index(project_id)
            removed += self._remove_duplicates(index, wanted)
            missing = sorted(wanted - set(index))
            if missing:
                raise ReviewError(f"{len(missing)} tasks did not reach project {project_id} "
                                  f"(first: {missing[0]}); rerun the export to send them")
        return {"already_there": len(before), "added": len(wanted) - len(before), "duplicates_removed": removed,
                "in_project": len(wanted)}

    def users(self) -> dict[int, str]:
        """{user id: email} for the organization (to name annotators in the report)."""
        try:
            return {u.id: u.email for u in self.call("list users", lambda: list(self.sdk.users.list()))}
        except ReviewError:
            return {}

