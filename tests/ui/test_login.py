"""Login and ownership in the dashboard under AppTest: `[auth]` in the secrets turns login on, st.user is
the signed-in user, and every page, deep link and action shows a user only their own work and what is
shared. (The real OIDC round trip runs in Chromium: tests/e2e/test_login_browser.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from test_apptest import REPO, TIMEOUT, lhome, ok, settle, texts, write_csv  # noqa: F401

SECRETS = {
    "auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "c" * 32, "client_id": "lepton",
             "client_secret": "s", "server_metadata_url": "http://localhost:9/.well-known/openid-configuration"},
    "lepton": {"admins": ["root@example.com"]},
}


def claims(who: str, **extra) -> dict:
    return {"is_logged_in": True, "email": f"{who}@example.com", "email_verified": True, "sub": who,
            "name": who.title(), **extra}


def visit(user: dict, page: str | None = None, secrets: dict | None = None, **query: str) -> AppTest:
    """app.py's router as this user (claims as st.user), on a page, with a deep link's query params."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.secrets = dict(secrets or SECRETS)
    at.user = user
    ok(at.run())
    if page:
        at.switch_page(page)
    at.query_params.update(query)
    return ok(at.run())


def sidebar(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption") for e in getattr(at.sidebar, kind))


@pytest.fixture
def runs(lhome):
    """Runs of alice and bob (one of each private, one of each shared) and one from before ownership."""
    from lepton.config import RunConfig
    from lepton.jobs.store import get_store

    st = get_store()

    def make(name: str, owner: str | None, shared: int = 0, status: str = "queued") -> str:
        return st.create_run(RunConfig(data="tiny.csv", backbone="tiny-text", adapter="full", name=name), status=status,
                             owner=owner, shared=shared)

    return {"alice": make("alice private", "alice@example.com"), "alice_shared": make("alice shared", "alice@example.com", 1),
            "bob": make("bob private", "bob@example.com"), "bob_done": make("bob finished", "bob@example.com", 0, "finished"),
            "alice_done": make("alice finished", "alice@example.com", 0, "finished"), "old": make("from before", None)}


def run_names(at: AppTest) -> set[str]:
    return set(at.dataframe[0].value["name"].tolist())


# ---------------------------------------------------------------- signed out
def test_without_auth_it_is_a_single_user_app_and_says_so(lhome):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    ok(at.run())
    assert "single-user local app" in sidebar(at)
    assert not [b for b in at.sidebar.button if b.label == "Log out"]


@pytest.mark.parametrize("page", ["app.py", "pages/runs.py"])  # routed, and a page file run alone (a deep link)
def test_a_signed_out_visitor_gets_only_the_sign_in_screen(runs, page):
    at = AppTest.from_file(str(REPO / page), default_timeout=TIMEOUT)
    at.secrets = dict(SECRETS)
    at.user = {"is_logged_in": False}
    at.query_params["run"] = runs["alice_shared"]
    ok(at.run())
    shown = texts(at) + sidebar(at)
    assert "sign in to see your datasets and runs" in shown
    assert [b.label for b in at.button] == ["Sign in"]
    assert "alice shared" not in shown and runs["alice_shared"] not in shown and not at.dataframe
    assert "Home:" not in shown and "worker" not in shown  # nothing about the machine either


def test_sign_in_with_an_incomplete_provider_setup_is_a_readable_error(runs):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.secrets = dict(SECRETS)
    at.user = {"is_logged_in": False}
    ok(at.run())
    # st.login checks the real secrets file, which this test machine does not have.
    ok(at.button(key="login_default").click().run())
    assert at.error and "Login is not configured correctly in .streamlit/secrets.toml" in at.error[0].value
    assert "Traceback" not in texts(at)


def test_an_auth_section_without_a_provider_says_what_to_add(lhome):
    secrets = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "c" * 32}}
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.secrets, at.user = secrets, {"is_logged_in": False}
    ok(at.run())
    assert at.error and "names no identity provider" in at.error[0].value and not at.button


def test_a_secrets_file_that_cannot_be_read_locks_the_dashboard(lhome, monkeypatch):
    import streamlit
    from streamlit.errors import StreamlitSecretNotFoundError

    class Unreadable:
        def keys(self):
            raise StreamlitSecretNotFoundError("Error parsing secrets file at {path}: {error}", path="secrets.toml",
                                               error="Invalid value (at line 3, column 9)",
                                               error_id="failed-parsing-secrets-file")

    monkeypatch.setattr(streamlit, "secrets", Unreadable())
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    ok(at.run())
    assert any("locked" in w.value and "line 3" in w.value for w in at.warning)
    assert not at.button and "single-user" not in sidebar(at)


# ---------------------------------------------------------------- signed in
def test_each_user_sees_their_own_runs_and_the_shared_ones(runs):
    alice = visit(claims("alice"), "pages/runs.py")
    assert run_names(alice) == {"alice private", "alice shared", "alice finished"}
    owners = dict(zip(alice.dataframe[0].value["name"], alice.dataframe[0].value["owner"]))
    assert owners["alice shared"] == "you · shared" and owners["alice private"] == "you"
    assert "Alice" in sidebar(alice) and [b.label for b in alice.sidebar.button if b.label == "Log out"]
    bob = visit(claims("bob"), "pages/runs.py")
    assert run_names(bob) == {"bob private", "bob finished", "alice shared"}
    assert dict(zip(bob.dataframe[0].value["name"], bob.dataframe[0].value["owner"]))["alice shared"] == \
        "alice@example.com · shared"
    root = visit(claims("root"), "pages/runs.py")
    assert "from before" in run_names(root) and len(run_names(root)) == 6 and "admin" in sidebar(root)


def test_home_lists_only_visible_runs(runs):
    at = visit(claims("bob"))
    shown = texts(at)
    assert "bob private" in shown and "alice shared" in shown and "alice private" not in shown


@pytest.mark.parametrize("ref", ["alice", "alice_prefix", "alice_name"])
def test_a_deep_link_to_someone_elses_private_run_is_not_found(runs, ref):
    # A prefix of Alice's id that no other run's id starts with (run ids made in one second share most).
    prefix = next(runs["alice"][:n] for n in range(9, 21)
                  if not any(v.startswith(runs["alice"][:n]) for k, v in runs.items() if k != "alice"))
    target = {"alice": runs["alice"], "alice_prefix": prefix, "alice_name": "alice private"}[ref]
    at = visit(claims("bob"), "pages/runs.py", run=target)
    assert at.error and at.error[0].value == f"Run `{target}` was not found among the runs you can see."
    rest = texts(at).replace(at.error[0].value, "")  # the message repeats the link; nothing else is about the run
    assert "alice private" not in rest and prefix not in rest and not at.dataframe
    missing = visit(claims("bob"), "pages/runs.py", run="no-such-run")
    assert missing.error[0].value == at.error[0].value.replace(target, "no-such-run")  # indistinguishable


def test_a_shared_run_opens_for_others_but_only_its_owner_changes_it(runs):
    from lepton.jobs.store import get_store

    bob = visit(claims("bob"), "pages/runs.py", run=runs["alice_shared"])
    assert "alice shared" in texts(bob) and "Owner: alice@example.com · shared with everyone" in texts(bob)
    assert not [b for b in bob.button if b.key == "cancel"] and not bob.toggle
    alice = visit(claims("alice"), "pages/runs.py", run=runs["alice"])
    assert "Your run, private to you and the admins" in texts(alice) and alice.button(key="cancel")
    share = next(t for t in alice.toggle if t.label == "Shared with everyone")
    assert share.value is False
    settle(share.set_value(True).run())
    assert get_store().get_run(runs["alice"])["shared"] == 1
    assert "alice private" in texts(visit(claims("bob"), "pages/runs.py", run=runs["alice"]))
    # An admin manages anyone's run.
    root = visit(claims("root"), "pages/runs.py", run=runs["bob"])
    root.button(key="cancel").click().run()
    assert get_store().get_run(runs["bob"])["status"] == "cancelled"


def test_compare_playground_and_transfer_links_skip_private_runs(runs):
    at = visit(claims("bob"), "pages/compare.py", runs=f"{runs['bob']},{runs['alice']}")
    assert any(f"`{runs['alice']}`" in w.value and "Not found among the runs you can see" in w.value for w in at.warning)
    assert at.multiselect(key="cmp_runs").value == [runs["bob"]]
    assert runs["alice"] not in at.multiselect(key="cmp_runs").options
    pg = visit(claims("bob"), "pages/playground.py", run=runs["alice_done"])
    assert any("Not found among the finished runs you can see" in w.value for w in pg.warning)
    assert pg.selectbox(key="pg_run").options and runs["alice_done"] not in pg.selectbox(key="pg_run").options
    assert pg.selectbox(key="pg_run").value == runs["bob_done"]
    tr = visit(claims("bob"), "pages/transfer.py", run=runs["alice_done"])
    assert any("Not found among the finished runs you can see" in w.value for w in tr.warning)
    assert "alice finished" not in texts(tr) and tr.selectbox(key="tr_run").value == runs["bob_done"]


def test_logging_out_ends_access(runs):
    at = visit(claims("alice"), "pages/runs.py", run=runs["alice"])
    assert "alice private" in texts(at)
    at.sidebar.button(key="logout").click().run()
    at.run()
    assert at.user == {"is_logged_in": False}
    assert "sign in to see your datasets and runs" in texts(at) and "alice private" not in texts(at)


def test_a_user_off_the_allowed_list_is_kept_out_and_can_log_out(runs):
    secrets = {**SECRETS, "lepton": {"allowed": ["@partner.org"], "admins": ["root@example.com"]}}
    at = visit(claims("alice"), secrets=secrets)
    assert any("not on this deployment's list of allowed users" in w.value for w in at.warning)
    assert "alice private" not in texts(at) and at.button(key="logout_blocked")
    assert "Home:" not in sidebar(at)
    assert "alice private" in run_names(visit(claims("root"), "pages/runs.py", secrets=secrets))  # admins always


def test_a_session_older_than_session_hours_must_sign_in_again(runs):
    import time

    secrets = {**SECRETS, "lepton": {"session_hours": 1}}
    at = visit(claims("alice", iat=time.time() - 7200), secrets=secrets)  # only the sign-in page exists for them
    assert any("older than 1 hours" in w.value for w in at.warning) and at.button(key="logout_blocked")
    assert run_names(visit(claims("alice", iat=time.time() - 60), "pages/runs.py", secrets=secrets))


def test_a_non_admin_cannot_train_from_a_server_folder(lhome, tmp_path):
    at = visit(claims("alice"), "pages/data.py")
    src = write_csv(tmp_path / "reviews.csv")
    at.file_uploader[0].upload("reviews.csv", src.read_bytes(), "text/csv")
    ok(at.run())
    at.button(key="ingest").click().run()
    at = visit(claims("alice"), "pages/train.py")
    at.selectbox(key="train_backbone_text").set_value("__custom__").run()
    at.text_input(key="train_custom_text").input(str(lhome)).run()
    assert at.error and "only admins may train from local folders" in ok(at).error[0].value


# ---------------------------------------------------------------- datasets: stored once, owned by each uploader
def upload(who: str, src: Path, name: str) -> AppTest:
    at = visit(claims(who), "pages/data.py")
    at.file_uploader[0].upload(src.name, src.read_bytes(), "text/csv")
    ok(at.run())
    at.text_input(key=next(t.key for t in at.text_input if t.label == "Name")).input(name).run()
    at.button(key="ingest").click().run()
    return ok(at)


def test_the_same_upload_by_two_users_is_stored_once_and_owned_by_each(lhome, tmp_path):
    from lepton.data import list_datasets

    src = write_csv(tmp_path / "complaints.csv")
    alice = upload("alice", src, "alice complaints")
    assert any("is stored as **alice complaints**" in s.value for s in alice.success)
    bob = upload("bob", src, "bob reviews")
    # Bob is not told that someone stored this before, nor under which name.
    assert any("is stored as **bob reviews**" in s.value for s in bob.success)
    assert "alice complaints" not in texts(bob) and "already stored" not in texts(bob)
    (stored,) = list_datasets()  # one copy on disk
    picker = visit(claims("bob"), "pages/data.py").selectbox(key="data_selected")
    assert picker.value == stored["id"] and [o.split(" · ")[0] for o in picker.options] == ["bob reviews"]
    again = upload("bob", src, "bob reviews")
    assert any("already stored" in s.value for s in again.success)  # his own, the second time
    carol = visit(claims("carol"), "pages/data.py")
    assert "No datasets yet" in texts(carol)
    # Bob deletes his: Alice keeps hers, so the files stay.
    at = visit(claims("bob"), "pages/data.py")
    settle(at.button(key="delete").click().run())
    at.button(key="delete_yes").click().run()
    assert "No datasets yet" in texts(ok(at).run())
    assert list_datasets() and "alice complaints" in texts(visit(claims("alice"), "pages/data.py"))
    # Alice shares hers: Carol trains on it, but cannot delete it.
    at = visit(claims("alice"), "pages/data.py")
    settle(next(t for t in at.toggle if t.label == "Shared with everyone").set_value(True).run())
    carol = visit(claims("carol"), "pages/data.py")
    assert "alice complaints" in texts(carol) and "Owner: alice@example.com · shared with everyone" in texts(carol)
    assert carol.button(key="to_train") and not [b for b in carol.button if b.key == "delete"]
    # The last owner deletes it: now the files go.
    at = visit(claims("alice"), "pages/data.py")
    settle(at.button(key="delete").click().run())
    at.button(key="delete_yes").click().run()
    assert not list_datasets()


# ---------------------------------------------------------------- safe defaults
def test_the_shipped_configuration_keeps_the_safe_defaults():
    tomllib = pytest.importorskip("tomllib")
    server = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))["server"]
    assert server.get("enableXsrfProtection", True) is True
    assert isinstance(server["maxUploadSize"], int) and server["maxUploadSize"] > 0
    assert ".streamlit/secrets.toml" in (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()
    # The example parses, turns login on, and its [lepton] section has no mistakes.
    from lepton import auth

    example = tomllib.loads((REPO / ".streamlit" / "secrets.example.toml").read_text(encoding="utf-8"))
    conf = auth.settings(example)
    assert conf.login and not conf.problems and conf.admins == {"you@example.com"}
    pins = (REPO / "requirements.txt").read_text(encoding="utf-8")
    assert "Authlib==" in pins and "httpx==" in pins  # st.login's packages, pinned
