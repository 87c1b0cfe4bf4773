"""Login and ownership in a real Chromium against `streamlit run app.py` and a real OpenID Connect
provider on localhost (oidc-provider-mock, Authlib on both sides), offline.

Alice and Bob each own runs (submitted with `LEPTON_USER=… lepton submit`, one of each shared with
`lepton share run`). Alice signs in, sees her runs and Bob's shared one, is refused Bob's private
run by deep link, shares one more run with the page's toggle and logs out, which ends her access.
Bob signs in and sees his own runs and what Alice shared, never her private run.
Screenshots: artifacts/e2e/login_*.png.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest
from tiny_data import write_word_csv
from browser_kit import REPO, app_env, free_port, goto, idle, shot, stop, streamlit_app

pytestmark = pytest.mark.e2e

USERS = {"alice": "Alice Archer", "bob": "Bob Baker"}
SIGNED_OUT = "sign in to see your datasets and runs"


@contextlib.contextmanager
def oidc_provider(log_path: Path) -> Iterator[str]:
    """oidc-provider-mock on a free localhost port, with Alice and Bob as one-click users; yields its issuer URL."""
    port = free_port()
    users = [json.dumps({"sub": sub, "email": f"{sub}@example.com", "email_verified": True, "name": name})
             for sub, name in USERS.items()]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--port", str(port), "--require-nonce", "true",
                                 *[a for u in users for a in ("--user-claims", u)]],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        issuer = f"http://localhost:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                meta = json.loads(urllib.request.urlopen(issuer + "/.well-known/openid-configuration", timeout=2).read())
                assert meta["issuer"] == issuer
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the OIDC provider did not start:\n" + log_path.read_text()[-3000:])
                time.sleep(0.2)
        try:
            yield issuer
        finally:
            stop(proc)


def lepton(env: dict, *args: str, user: str) -> str:
    res = subprocess.run([sys.executable, "-m", "lepton", *args], capture_output=True, text=True, timeout=120,
                         env={**env, "LEPTON_USER": f"{user}@example.com"}, cwd=str(REPO))
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1]).get("run_id", "")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e-login")
    home = root / "home"
    env = app_env(home, LEPTON_NO_WORKER="1")  # the runs stay queued: this is about who sees them
    data = write_word_csv(root / "reviews.csv", {"pos": ["great", "lovely"], "neg": ["awful", "poor"]},
                          "the film {i} was {word}", 24)
    runs = {name: lepton(env, "submit", "--data", str(data), "--backbone", "tiny-text", "--epochs", "1", "--name", name,
                         user=name.split()[0])
            for name in ("alice private", "alice shared", "alice later", "bob private", "bob shared")}
    for name in ("alice shared", "bob shared"):
        lepton(env, "share", "run", runs[name], user=name.split()[0])
    with oidc_provider(root / "oidc.log") as issuer:
        secrets_file = root / "secrets.toml"
        secrets_file.write_text(
            "[auth]\n"
            'redirect_uri = "http://localhost:{port}/oauth2callback"\n'  # Streamlit fills in its port
            f'cookie_secret = "{secrets.token_hex(32)}"\n'
            'client_id = "lepton-e2e"\nclient_secret = "e2e-secret"\n'
            f'server_metadata_url = "{issuer}/.well-known/openid-configuration"\n'
            "\n[lepton]\nadmins = [\"root@example.com\"]\n", encoding="utf-8")
        with streamlit_app(env, root / "streamlit.log", secrets=secrets_file) as url:
            # The identity cookie belongs to the redirect_uri's host: the browser must use that name too.
            yield SimpleNamespace(url=url.replace("127.0.0.1", "localhost"), runs=runs, home=home, issuer=issuer)


def body(page) -> str:
    return page.locator("[data-testid='stApp']").inner_text()


def recent_runs(page, server) -> set[str]:
    """Names of the runs the Home page lists (its recent-runs rows are text, unlike canvas tables)."""
    goto(page, server, "/")
    page.get_by_text("Recent runs").wait_for()
    text = body(page)
    return {name for name in ("alice private", "alice shared", "alice later", "bob private", "bob shared") if name in text}


def sign_in(page, server, who: str) -> None:
    goto(page, server, "/")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.issuer + "/oauth2/authorize*")
    shot(page, "login_provider")
    page.locator(f"button[name='sub'][value='{who}']").click()  # the provider's one-click user
    page.wait_for_url(server.url + "/**")
    page.wait_for_selector('[data-testid="stApp"]')
    idle(page)
    page.locator("[data-testid='stSidebar']").get_by_text(USERS[who]).wait_for()


def sign_out(page, server) -> None:
    page.locator("[data-testid='stSidebar']").get_by_role("button", name="Log out").click()
    # Streamlit clears its identity cookie and sends the browser to the provider's end-session page.
    page.wait_for_url(server.issuer + "/oauth2/end_session*")
    page.get_by_role("button", name="End session").click()
    page.wait_for_url(server.url + "/**")
    page.get_by_text(SIGNED_OUT).wait_for()


def refused(page, server, name: str, shot_name: str) -> None:
    """A deep link to someone else's private run: "not found", and nothing of the run on the page."""
    goto(page, server, f"/runs?run={server.runs[name]}")
    page.get_by_text(f"Run {server.runs[name]} was not found among the runs you can see.").wait_for()
    assert name not in body(page)
    shot(page, shot_name)


def shared_in_store(server, run_id: str) -> bool:
    with contextlib.closing(sqlite3.connect(server.home / "lepton.db")) as db:
        return bool(db.execute("SELECT shared FROM runs WHERE id=?", (run_id,)).fetchone()[0])


def test_two_users_see_their_own_and_shared_runs_and_logout_ends_access(server, page):
    runs = server.runs
    # Signed out, a deep link shows the sign-in screen and nothing of the run.
    goto(page, server, f"/runs?run={runs['alice private']}")
    page.get_by_text(SIGNED_OUT).wait_for()
    assert "alice private" not in body(page) and runs["alice private"] not in body(page)
    shot(page, "login_signed_out")

    # Alice: her runs and Bob's shared one.
    sign_in(page, server, "alice")
    assert page.locator("[data-testid='stSidebar']").get_by_text("Home:").count() == 0  # no server paths for users
    assert recent_runs(page, server) == {"alice private", "alice shared", "alice later", "bob shared"}
    shot(page, "login_alice_home")
    goto(page, server, "/runs")
    page.locator("[data-testid='stDataFrame']").wait_for()
    shot(page, "login_alice_runs")
    # Bob's private run, by deep link on the Runs and Compare pages: not found, like a run that does not exist.
    refused(page, server, "bob private", "login_alice_denied")
    goto(page, server, f"/compare?runs={runs['alice private']},{runs['bob private']}")
    page.get_by_text("Not found among the runs you can see").wait_for()
    assert "bob private" not in body(page)
    # She shares one more run with the run page's toggle.
    goto(page, server, f"/runs?run={runs['alice later']}")
    page.get_by_text("Your run, private to you and the admins").wait_for()
    page.locator("label", has_text="Shared with everyone").click()
    page.get_by_text("Your run, shared with everyone").wait_for()
    page.get_by_text("alice later is now shared with every signed-in user.").wait_for()
    idle(page)
    assert shared_in_store(server, runs["alice later"])
    shot(page, "login_alice_shares")

    # Logging out ends access: the same deep link is the sign-in screen again.
    sign_out(page, server)
    goto(page, server, f"/runs?run={runs['alice private']}")
    page.get_by_text(SIGNED_OUT).wait_for()
    assert "alice private" not in body(page) and page.get_by_text("Page not found").count() == 0
    shot(page, "login_after_logout")

    # Bob: his runs and what Alice shared, never her private run.
    sign_in(page, server, "bob")
    assert recent_runs(page, server) == {"bob private", "bob shared", "alice shared", "alice later"}
    shot(page, "login_bob_home")
    refused(page, server, "alice private", "login_bob_denied")
    goto(page, server, f"/runs?run={runs['alice shared']}")
    page.get_by_text("Owner: alice@example.com · shared with everyone").wait_for()
    assert page.get_by_role("button", name="Cancel").count() == 0  # shared with him: his to open, not to change
    assert page.locator("label", has_text="Shared with everyone").count() == 0
    shot(page, "login_bob_shared_run")
