"""Start a real Label Studio server on 127.0.0.1 (for tests, benchmarks and a local trial run).

    >>> from evalkit.review.localserver import LocalLabelStudio, make_template
    >>> template = make_template("/tmp/ls-template")          # migrate once (~1 min)
    >>> with LocalLabelStudio.from_template(template, "/tmp/ls-1") as ls:   # ~6 s per start
    ...     print(ls.url, ls.users)                              # users: {email: token}

The server runs from its own virtual environment (``make review-deps`` builds .venv-ls) so its
Django pins never meet the project's.  What the GUIDE measured is built in: bare HOST/PORT/USERNAME/
PASSWORD/USER_TOKEN variables leak into Label Studio, so they are removed; ``--internal-host`` is the
bind address; a busy port is silently replaced by the next one, so the server is checked to be
ours (our token answers ``whoami``) on the port we chose; the preset token needs the legacy-token
switch.  The template holds a second annotator with a token of their own,
signed up through the server's own form.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
OWNER = "ci@example.com"
SECOND = "reviewer2@example.com"
TEMPLATE_INFO = "evalkit-template.json"
LEAKY_ENV = ("HOST", "PORT", "USERNAME", "PASSWORD", "USER_TOKEN")


def label_studio_python() -> Path:
    """The Python of the Label Studio venv: $SFTKIT_LS_VENV or ./.venv-ls."""
    venv = Path(os.environ.get("SFTKIT_LS_VENV", ROOT / ".venv-ls"))
    py = venv / "bin" / "python"
    if not (venv / "bin" / "label-studio").exists():
        raise RuntimeError(f"no Label Studio in {venv}: run `make review-deps` (installs label-studio 1.23.2 "
                           "into .venv-ls, about 1.5 minutes)")
    return py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(data_dir: Path, password: str, token: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
    env.update(LABEL_STUDIO_BASE_DATA_DIR=str(data_dir), LABEL_STUDIO_USERNAME=OWNER,
               LABEL_STUDIO_PASSWORD=password, LABEL_STUDIO_USER_TOKEN=token,
               LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true", LATEST_VERSION_CHECK="false",
               COLLECT_ANALYTICS="false", SENTRY_DSN="", FRONTEND_SENTRY_DSN="",
               DJANGO_DB="sqlite", PYTHONUNBUFFERED="1")
    return env


class LocalLabelStudio:
    """One server process over ``data_dir``; stop() (or leaving the with-block) ends it."""

    def __init__(self, data_dir, *, password: str, token: str, users: dict | None = None, port: int | None = None):
        self.data_dir = Path(data_dir)
        self.password, self.token = password, token
        self.users = users or {OWNER: token}
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir / "server.log"

    @classmethod
    def from_template(cls, template, data_dir) -> "LocalLabelStudio":
        template, data_dir = Path(template), Path(data_dir)
        if data_dir.exists():
            shutil.rmtree(data_dir)
        shutil.copytree(template, data_dir)
        info = json.loads((data_dir / TEMPLATE_INFO).read_text())
        return cls(data_dir, password=info["password"], token=info["token"], users=info["users"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 300.0) -> "LocalLabelStudio":
        py = label_studio_python()
        for _ in range(3):
            self.port = self.port or free_port()
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [str(py.parent / "label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1",
                 "--port", str(self.port), "--data-dir", str(self.data_dir)],
                env=_env(self.data_dir, self.password, self.token), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.data_dir)
            log.close()
            if self._wait_up(timeout):
                return self
            self.stop()
            self.port = None                 # the port was taken meanwhile: try another
        raise RuntimeError(f"Label Studio did not come up; see {self.log_path}:\n{self._log_tail()}")

    def _wait_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/health", timeout=2).json().get("status") == "UP":
                    # /health answers for any Label Studio; our token proves it is ours on our port.
                    me = httpx.get(f"{self.url}/api/current-user/whoami",
                                   headers={"Authorization": f"Token {self.token}"}, timeout=5)
                    return me.status_code == 200 and me.json().get("email") == OWNER
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        return False

    def _log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # Its own session (start_new_session): signal that group only, never anything else.
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()

    def sign_up(self, email: str, password: str) -> str:
        """Sign a new annotator up through the server's own form (as a colleague would) and return
        a legacy API token for them (reset-token, with their session's CSRF token)."""
        with httpx.Client(base_url=self.url, timeout=60, follow_redirects=True) as web:
            web.get("/user/signup/")
            csrf = web.cookies.get("csrftoken")
            r = web.post("/user/signup/", data={"csrfmiddlewaretoken": csrf, "email": email, "password": password},
                         headers={"Referer": f"{self.url}/user/signup/"})
            r.raise_for_status()
            r = web.post("/api/current-user/reset-token/",
                         headers={"X-CSRFToken": web.cookies.get("csrftoken"), "Referer": f"{self.url}/"})
            if r.status_code != 201:
                raise RuntimeError(f"signing {email} up failed: HTTP {r.status_code} {r.text[:300]}")
            return r.json()["token"]


def make_template(directory, timeout: float = 600.0) -> Path:
    """Migrate a fresh Label Studio data dir once (owner with a preset token, plus a second annotator
    with their own token) and stop it, leaving a folder to copy for each server start."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    password, token = secrets.token_urlsafe(12), secrets.token_hex(20)
    server = LocalLabelStudio(directory, password=password, token=token)
    server.start(timeout=timeout)
    try:
        second_token = server.sign_up(SECOND, secrets.token_urlsafe(12))
    finally:
        server.stop()
    server.log_path.unlink(missing_ok=True)
    (directory / TEMPLATE_INFO).write_text(json.dumps(
        {"password": password, "token": token, "users": {OWNER: token, SECOND: second_token}}))
    return directory
