"""The dashboard's side of login and ownership: st.login / st.user / st.logout and lepton/auth.py's rules.

With an `[auth]` section in .streamlit/secrets.toml every page needs a signed-in user (OpenID
Connect through Streamlit's st.login, Authlib underneath), and every list, deep link and action
goes through the helpers here, so a user meets only what they own and what is shared. Without
`[auth]` the dashboard is a single-user local app, and the sidebar says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from lepton import auth
from lepton.errors import RunError
from lepton.ui import common

SECRETS = ".streamlit/secrets.toml"
SHARE_HELP = ("Every signed-in user can see it and use it (open it, compare it, try it in the Playground, train "
              "from it). Only you and the admins can change it.")


@dataclass(frozen=True)
class Access:
    conf: auth.Settings
    user: auth.User | None = None        # who is using this session; None: nobody may yet
    why: str | None = None               # shown instead of the pages (not allowed, session too old, bad secrets)
    signed_in: auth.User | None = None   # who signed in, also when `why` keeps them out
    can_sign_in: bool = True


# ---------------------------------------------------------------- who is this session
def _secrets() -> tuple[dict[str, Any] | None, str | None]:
    """(the secrets, or None when there are none; a problem reading a secrets file that exists)."""
    try:
        return {k: st.secrets[k] for k in st.secrets.keys()}, None
    except FileNotFoundError as e:  # StreamlitSecretNotFoundError: missing, or present but unreadable
        if getattr(e, "error_id", None) == "no-secrets-found":
            return None, None
        return None, str(e)


def current() -> Access:
    secrets, broken = _secrets()
    conf = auth.settings(secrets)
    if broken:
        # A secrets file that cannot be read may be the one that turns login on: stay locked, not open.
        return Access(conf, why=f"The dashboard is locked: {broken}. Fix {SECRETS} and reload.", can_sign_in=False)
    if not conf.login:
        return Access(conf, user=auth.local_user(admin=True))
    claims = st.user.to_dict()
    user = auth.from_claims(claims, conf)
    if user is None:
        if claims.get("is_logged_in"):
            return Access(conf, why="Your identity provider sent neither an email nor a subject (sub) for you, so "
                                    "Lepton cannot tell whose work is whose. Ask your admin to add the email scope.")
        return Access(conf)
    why = auth.sign_in_problem(user, claims, conf)
    return Access(conf, user=None if why else user, why=why, signed_in=user)


def login_on() -> bool:
    return current().conf.login


def viewer() -> auth.User:
    """The user this script run acts for. A run that has none (signed out meanwhile) stops here."""
    user = current().user
    if user is None:
        st.stop()
    return user


# ---------------------------------------------------------------- the login screen and the sidebar
def providers(conf_auth: Any) -> list[tuple[str | None, str]]:
    """(provider for st.login, button label) for each provider configured under [auth]."""
    keys = ("client_id", "server_metadata_url")
    out: list[tuple[str | None, str]] = []
    if any(k in conf_auth for k in keys):
        out.append((None, "Sign in"))
    for name, value in conf_auth.items():
        if hasattr(value, "keys") and any(k in value for k in keys):
            out.append((name, f"Sign in with {name.replace('-', ' ').title()}"))
    return out


def _login(provider: str | None) -> None:
    from streamlit.errors import StreamlitAuthError, StreamlitMissingAuthlibError

    try:
        st.login(provider) if provider else st.login()
    except StreamlitMissingAuthlibError:
        st.error("Login needs the Authlib package: run `pip install -r requirements.txt` (or `make setup`).",
                 icon=":material/error:")
    except StreamlitAuthError as e:
        st.error(f"Login is not configured correctly in {SECRETS}: {' '.join(str(e).split())}", icon=":material/error:")


def login_screen() -> None:
    """The one page a visitor who may not use the dashboard gets, whatever the URL asked for."""
    a = current()
    st.title("Lepton")
    st.markdown("<p class='lp-lead'>This Lepton is shared: sign in to see your datasets and runs, and what "
                "others share with you.</p>", unsafe_allow_html=True)
    if a.why:
        st.warning(a.why, icon=":material/lock:")
    for problem in a.conf.problems:
        st.warning(problem, icon=":material/settings:")
    if a.signed_in is not None:
        st.caption(f"Signed in as {a.signed_in.label}")
        if st.button("Log out", key="logout_blocked", icon=":material/logout:"):
            st.logout()
        return
    if not a.can_sign_in:
        return
    secrets, _ = _secrets()
    options = providers((secrets or {}).get("auth") or {})
    if not options:
        st.error(f"[auth] in {SECRETS} names no identity provider: give it client_id, client_secret and "
                 "server_metadata_url (README, Security).", icon=":material/error:")
        return
    bar = st.container(horizontal=True)
    for i, (provider, label) in enumerate(options):
        if bar.button(label, key=f"login_{provider or 'default'}", type="primary" if i == 0 else "secondary",
                      icon=":material/login:"):
            _login(provider)


def sidebar_identity() -> None:
    """Who is signed in, with Log out; or that this is a single-user app without login."""
    a = current()
    if a.user is None:
        return
    if not a.conf.login:
        st.markdown(":gray-badge[:material/person: single-user local app]",
                    help=f"No login is configured, so everyone who can open this address works as you and sees "
                         f"everything. To share Lepton, configure [auth] in {SECRETS} (README, Security).")
        return
    badge = " :violet-badge[admin]" if a.user.admin else ""
    st.markdown(f":material/account_circle: **{a.user.name}**{badge}", help=f"Signed in as {a.user.id}. "
                + ("Admins see and manage everything." if a.user.admin else "You see your own work and what others share."))
    if a.user.admin:
        for problem in a.conf.problems:
            st.warning(problem, icon=":material/settings:")
    if st.button("Log out", key="logout", icon=":material/logout:"):
        st.logout()


# ---------------------------------------------------------------- what this user may see
def runs(**filters: Any) -> list[dict]:
    """store.list_runs, limited to the runs the current user may see."""
    return common.store().list_runs(viewer=viewer(), **filters)


def find_run(ref: str) -> dict:
    """A run the current user may see, by id, prefix or name; RunError "not found" otherwise, whoever owns it."""
    try:
        return common.store().find_run(ref, viewer=viewer())
    except RunError as e:
        if not str(e).startswith("no run "):
            raise  # an ambiguous prefix: its message lists only runs this user may see
        # The store's words point at the CLI; here the same words cover "missing" and "not yours".
        raise RunError(f"Run `{ref}` was not found among the runs you can see.") from None


def visible_run(ref: str | None) -> dict | None:
    if not ref:
        return None
    try:
        return find_run(ref)
    except RunError:
        return None


def not_found(refs: list[str], among: str = "runs") -> None:
    """What a deep link to a missing run says; the same words for someone else's private run."""
    st.warning(f"Not found among the {among} you can see: {', '.join(f'`{r}`' for r in refs)}.",
               icon=":material/search_off:")


def datasets() -> list[dict]:
    """Stored dataset manifests the current user may see, as they see them (lepton.auth.present_datasets)."""
    from lepton.data import list_datasets

    return auth.present_datasets(viewer(), list_datasets(), common.store().dataset_owners())


def can_manage(item: dict) -> bool:
    """Cancel, resume, delete, share: a run's or dataset's owner, or an admin."""
    if "can_manage" in item:  # a presented dataset already knows
        return bool(item["can_manage"])
    return auth.can_manage(viewer(), item.get("owner"))


def owner_label(owner: str | None) -> str:
    me = viewer()
    if owner and owner == me.id:
        return "you"
    if not owner:
        return "nobody (admins only)"
    return owner[len(auth.LOCAL_PREFIX):] + " (command line)" if owner.startswith(auth.LOCAL_PREFIX) else owner


def ownership_note(item: dict, kind: str) -> None:
    """One caption saying whose a run or dataset is, when login is on (a single-user app has one owner)."""
    if not login_on():
        return
    owner = item.get("shared_by") or item.get("owner")
    whose = owner_label(owner)
    if whose == "you":
        note = f"Your {kind}" + (", shared with everyone" if item.get("shared") else ", private to you and the admins")
    else:
        note = f"Owner: {whose}" + (" · shared with everyone" if item.get("shared") or item.get("shared_by") else "")
    st.caption(f":material/group: {note}")


def share_toggle(kind: str, item_id: str, shared: bool, key: str, name: str) -> None:
    """The share switch of a run ("runs") or of the user's own upload of a dataset ("datasets")."""
    if not login_on():
        return  # a single-user app has nobody to share with
    # The stored state is part of the key, so the switch redraws from the store after anyone changes it.
    on = st.toggle("Shared with everyone", value=shared, key=f"{key}_{int(shared)}", help=SHARE_HELP)
    if on != shared:
        with common.guard("Could not change sharing"):
            me = viewer()
            common.store().set_shared(kind, item_id, on, owner=me.id if kind == "datasets" else None)
            common.flash("success", f"{name} is now " + ("shared with every signed-in user." if on
                                                            else "private to you and the admins."))
            st.rerun()


def check_model_ref(ref: str) -> None:
    """A backbone typed on the Train page: in a shared deployment, a hub id, never a folder of this server.

    A folder path would let anyone read what the server can (other users' runs under LEPTON_HOME
    included); admins, and the single-user app, may still use local folders."""
    from pathlib import Path

    from lepton.errors import ConfigError

    if not login_on() or viewer().admin:
        return
    if ref.startswith(("/", ".", "~", "\\")) or Path(ref).expanduser().exists():
        raise ConfigError(f"`{ref}` is a folder on the server: in a shared Lepton only admins may train from local "
                          "folders. Use a Hugging Face model id (org/name), or ask an admin to add the model.")


# ---------------------------------------------------------------- datasets: stored once, owned per upload
def claim_dataset(result: Any, name: str | None) -> None:
    """After an ingest: the current user owns their upload of it, under the name they gave it.

    `result.reused` then says whether *they* had it already, never that someone else uploaded the same
    content (that would tell them what another user stored)."""
    me = viewer()
    added = common.store().add_dataset_owner(result.dataset.id, me.id, name or result.dataset.name)
    result.reused = bool(result.reused and not added)


def delete_dataset(manifest: dict) -> None:
    """An owner deletes their upload; the files go with the last owner. An admin deletes it for everyone."""
    from lepton.data import delete_dataset as delete_files

    me = viewer()
    if not can_manage(manifest):
        raise RunError(f"only its owner or an admin can delete dataset {manifest.get('name') or manifest['id']}")
    left = 0 if me.admin and not manifest.get("mine") else common.store().remove_dataset_owner(manifest["id"], me.id)
    if left == 0:
        delete_files(manifest["id"])
