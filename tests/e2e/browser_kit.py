"""What every browser test shares: a real `streamlit run app.py` server and a Chromium to drive it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from job_fixtures import kill_leftover_jobs

REPO = Path(__file__).resolve().parents[2]
ART = REPO / "artifacts" / "e2e"
CHROMIUM = "/usr/bin/chromium"
CHROME_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
IDLE_JS = """() => { const a = document.querySelector('[data-testid="stApp"]');
  return !!a && a.getAttribute('data-test-script-state') === 'notRunning'; }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(home: Path, **extra: str) -> dict[str, str]:
    return dict(os.environ, LEPTON_HOME=str(home), PYTHONUNBUFFERED="1",
                PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), **extra)


@contextlib.contextmanager
def streamlit_app(env: dict[str, str], log_path: Path, secrets: Path | None = None) -> Iterator[str]:
    """Start the dashboard, wait for its health check, yield its URL, and stop it afterwards.

    secrets: the secrets.toml it reads (`[auth]` turns login on). Without one it reads none at all, so
    a developer's own .streamlit/secrets.toml never turns a test's dashboard into a login page."""
    port = free_port()
    secrets = secrets or log_path.parent / "no-secrets.toml"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.address",
             "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none", "--secrets.files", str(secrets)],
            cwd=str(REPO), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("streamlit did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.2)
        ART.mkdir(parents=True, exist_ok=True)
        try:
            yield url
        finally:
            stop(proc)
            kill_leftover_jobs(Path(env["LEPTON_HOME"]))  # the worker the dashboard started, and its jobs


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate a server this test started; kill it if it does not go."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def idle(page, timeout: float = 60) -> None:
    time.sleep(0.3)  # let a just-triggered rerun start before asking whether it ended
    page.wait_for_function(IDLE_JS, timeout=timeout * 1000)


def goto(page, server, path: str) -> None:
    page.goto(server.url + path)
    page.wait_for_selector('[data-testid="stApp"]')
    idle(page)


def no_errors(page) -> None:
    """No exception box and no error alert on the page (the first one's text is the failure message)."""
    errors = page.locator("[data-testid='stException'], [data-testid='stAlertContentError']")
    assert errors.count() == 0, errors.first.inner_text()


def shot(page, name: str) -> None:
    """A full-page screenshot in artifacts/e2e/, to look at after `make test`."""
    time.sleep(1.5)  # plotly and canvas tables draw a moment after they appear
    page.screenshot(path=str(ART / f"{name}.png"), full_page=True)
