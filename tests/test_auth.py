"""lepton/auth.py: who a user is, what they may see and change, and how datasets stored once are owned per upload."""

from __future__ import annotations

import itertools
import sqlite3

import pytest

from lepton import auth
from lepton.auth import User

ALICE = User(id="alice@example.com", name="Alice", signed_in=True)
BOB = User(id="bob@example.com", name="Bob", signed_in=True)
ADMIN = User(id="root@example.com", name="Root", admin=True, signed_in=True)
AUTH = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                 "client_id": "lepton", "client_secret": "s", "server_metadata_url": "http://idp/.well-known/openid-configuration"}}


# ---------------------------------------------------------------- settings
def test_no_secrets_is_a_single_user_app():
    conf = auth.settings(None)
    assert not conf.login and not conf.admins and not conf.problems


def test_auth_section_turns_login_on_and_admins_are_matched_without_case():
    conf = auth.settings({**AUTH, "lepton": {"admins": ["Root@Example.com", "sub:https://idp|42"], "session_hours": 8}})
    assert conf.login and conf.admins == {"root@example.com", "sub:https://idp|42"} and conf.session_hours == 8
    user = auth.from_claims({"is_logged_in": True, "email": "ROOT@example.com", "sub": "1"}, conf)
    assert user.admin and user.id == "root@example.com"


@pytest.mark.parametrize("section,needle,safe", [
    ({"admins": "root@example.com"}, None, lambda c: c.admins == {"root@example.com"}),  # one string is a list of one
    ({"admins": [1, 2]}, "nobody is an admin", lambda c: not c.admins),
    ({"admins": [""]}, "nobody is an admin", lambda c: not c.admins),
    ({"allowed": {"x": 1}}, "nobody can sign in", lambda c: c.allowed == ("",)),
    ({"session_hours": "a day"}, "positive number of hours", lambda c: c.session_hours == 1.0),
    ({"session_hours": 0}, "positive number of hours", lambda c: c.session_hours == 1.0),
    ({"session_hours": True}, "positive number of hours", lambda c: c.session_hours == 1.0),
    ({"admin": ["root@example.com"]}, "unknown setting(s) admin", lambda c: not c.admins),
])
def test_a_bad_lepton_section_is_explained_and_falls_back_to_the_safe_side(section, needle, safe):
    conf = auth.settings({**AUTH, "lepton": section})
    if needle is None:
        assert not conf.problems
    else:
        assert any(needle in p and "secrets.toml" in p for p in conf.problems), conf.problems
    assert safe(conf)


def test_a_lepton_section_that_is_not_a_table_locks_sign_in():
    conf = auth.settings({**AUTH, "lepton": "admins=me"})
    assert conf.problems and "must be a table" in conf.problems[0]
    user = auth.from_claims({"is_logged_in": True, "email": "a@example.com"}, conf)
    assert auth.sign_in_problem(user, {}, conf)


# ---------------------------------------------------------------- identity
@pytest.mark.parametrize("claims,owner", [
    ({"email": "Alice@Example.com", "email_verified": True, "sub": "1"}, "alice@example.com"),
    ({"email": "alice@example.com", "sub": "1"}, "alice@example.com"),  # no email_verified claim (Entra): trusted
    ({"email": "alice@example.com", "email_verified": False, "sub": "1", "iss": "https://idp"}, "sub:https://idp|1"),
    ({"email": "alice@example.com", "email_verified": "false", "sub": "1"}, "sub:1"),
    ({"sub": "abc", "iss": "https://idp"}, "sub:https://idp|abc"),
    ({"email": "not-an-email", "sub": "abc"}, "sub:abc"),
    ({"email": "local:root@x", "sub": "7"}, "sub:7"),  # never mistaken for the CLI's local user
    ({"name": "nobody"}, None),
])
def test_owner_is_the_verified_email_else_the_subject(claims, owner):
    assert auth.owner_from_claims(claims) == owner


def test_from_claims_needs_a_login_and_names_the_user():
    conf = auth.settings(AUTH)
    assert auth.from_claims({"email": "a@example.com"}, conf) is None  # AppTest's default user: not signed in
    assert auth.from_claims({"is_logged_in": False, "email": "a@example.com"}, conf) is None
    assert auth.from_claims({"is_logged_in": True}, conf) is None
    u = auth.from_claims({"is_logged_in": True, "email": "a@example.com", "name": "Ann"}, conf)
    assert (u.id, u.name, u.admin, u.signed_in, u.label) == ("a@example.com", "Ann", False, True, "Ann (a@example.com)")
    assert auth.from_claims({"is_logged_in": True, "sub": "9"}, conf).name == "sub:9"


def test_allowed_list_and_session_age():
    conf = auth.settings({**AUTH, "lepton": {"allowed": ["@example.com", "guest@partner.org"], "admins": ["boss@else.org"],
                                             "session_hours": 2}})
    now = 1_000_000.0
    fresh = {"iat": now - 3600}

    def problem(owner: str, claims: dict) -> str | None:
        user = auth.from_claims({"is_logged_in": True, "email": owner}, conf)
        return auth.sign_in_problem(user, claims, conf, now=now)

    assert problem("alice@example.com", fresh) is None
    assert problem("guest@partner.org", fresh) is None
    assert problem("boss@else.org", fresh) is None  # admins always get in
    assert "not on this deployment's list" in problem("eve@evil.org", fresh)
    assert "not on this deployment's list" in problem("eve@notexample.com", fresh)  # a domain, not a suffix
    assert "sign in again" in problem("alice@example.com", {"iat": now - 3 * 3600})
    assert "sign in again" in problem("alice@example.com", {})  # no issue time: cannot tell, so not trusted


def test_cli_user_is_the_operator_and_owns_as_lepton_user():
    local = auth.cli_user({})
    assert local.id.startswith(auth.LOCAL_PREFIX) and local.admin and not local.signed_in
    as_alice = auth.cli_user({auth.ENV_USER: " Alice@Example.com "})
    assert as_alice.id == "alice@example.com" and as_alice.admin


# ---------------------------------------------------------------- visibility: one rule, in Python and in SQL
OWNERS = [None, ALICE.id, BOB.id, "local:ops"]


@pytest.mark.parametrize("user", [ALICE, BOB, ADMIN, None], ids=["alice", "bob", "admin", "internal"])
def test_visible_sql_selects_exactly_what_can_see_allows(user):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, owner TEXT, shared INTEGER)")
    rows = [{"id": i, "owner": o, "shared": s} for i, (o, s) in enumerate(itertools.product(OWNERS, (0, 1)))]
    db.executemany("INSERT INTO runs VALUES (:id, :owner, :shared)", rows)
    sql, args = auth.visible_sql(user)
    got = {r[0] for r in db.execute(f"SELECT id FROM runs WHERE {sql}", args)}
    assert got == {r["id"] for r in auth.visible(user, rows)}
    assert got == {r["id"] for r in rows if auth.can_see(user, r["owner"], r["shared"])}


def test_who_sees_and_who_manages():
    assert auth.can_see(ALICE, ALICE.id, 0) and auth.can_manage(ALICE, ALICE.id)
    assert not auth.can_see(ALICE, BOB.id, 0) and not auth.can_see(ALICE, None, 0)
    assert auth.can_see(ALICE, BOB.id, 1) and not auth.can_manage(ALICE, BOB.id)  # shared: use it, not change it
    assert auth.can_see(ADMIN, None, 0) and auth.can_manage(ADMIN, BOB.id)
    assert not auth.can_manage(ALICE, None)  # nobody's item (made before ownership): admins only


# ---------------------------------------------------------------- datasets stored once, owned per upload
def manifest(ds_id: str, name: str = "reviews", created: str = "2026-12-01T10:00:00+00:00") -> dict:
    return {"id": ds_id, "name": name, "created": created, "source": "alice-complaints.csv",
            "skipped": [{"file": "alice-notes.txt", "reason": "not a table"}], "warnings": ["1 file skipped"]}


def link(owner: str, name: str, created: float, shared: bool = False) -> dict:
    return {"owner": owner, "name": name, "shared": shared, "created": created}


def test_a_second_uploader_sees_their_own_upload_and_nothing_of_the_first():
    owners = {"d1": {"owner": ALICE.id, "links": [link(ALICE.id, "complaints", 100.0), link(BOB.id, "my data", 200.0)]}}
    (a,) = auth.present_datasets(ALICE, [manifest("d1")], owners)
    (b,) = auth.present_datasets(BOB, [manifest("d1")], owners)
    assert a["name"] == "complaints" and a["source"] == "alice-complaints.csv" and a["skipped"] and a["mine"]
    assert b["name"] == "my data" and b["mine"] and b["can_manage"] and b["shared_by"] is None
    assert b["source"] is None and b["skipped"] == [] and b["warnings"] == []  # Alice's upload details stay hers
    assert b["created"].startswith("1970-01-01T00:03:20")  # when Bob added it, not when Alice did
    carol = User(id="carol@example.com", name="Carol", signed_in=True)
    assert auth.present_datasets(carol, [manifest("d1")], owners) == []
    assert auth.visible_dataset_ids(carol, owners) == set() and auth.visible_dataset_ids(BOB, owners) == {"d1"}


def test_a_shared_upload_is_seen_through_its_sharer_and_cannot_be_managed():
    carol = User(id="carol@example.com", name="Carol", signed_in=True)
    owners = {"d1": {"owner": ALICE.id, "links": [link(ALICE.id, "complaints", 100.0),
                                                  link(BOB.id, "my data", 200.0, shared=True)]}}
    (c,) = auth.present_datasets(carol, [manifest("d1")], owners)
    assert c["name"] == "my data" and c["shared_by"] == BOB.id and not c["mine"] and not c["can_manage"]
    assert c["skipped"] == []  # seen through Bob's upload: Alice's details are not his to share
    (b,) = auth.present_datasets(BOB, [manifest("d1")], owners)
    assert b["shared"] and b["mine"]
    (a,) = auth.present_datasets(ALICE, [manifest("d1")], owners)
    assert not a["shared"]  # Alice's own upload stays private: her name for it is not shown to anyone


def test_admins_see_every_dataset_as_stored_with_its_owners():
    owners = {"d1": {"owner": ALICE.id, "links": [link(ALICE.id, "complaints", 100.0), link(BOB.id, "mine", 200.0)]}}
    got = auth.present_datasets(ADMIN, [manifest("d1"), manifest("legacy", created="2025-01-01T00:00:00+00:00")], owners)
    assert [d["id"] for d in got] == ["d1", "legacy"]  # newest first; one nobody owns still shows to admins
    assert got[0]["name"] == "reviews" and got[0]["owners"] == [ALICE.id, BOB.id] and got[0]["can_manage"]
    assert got[1]["owner"] is None and auth.present_datasets(ALICE, [manifest("legacy")], owners) == []
    assert auth.visible_dataset_ids(ADMIN, owners) is None
