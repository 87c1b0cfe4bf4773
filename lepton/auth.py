"""Who is looking, and what they may see and change: Lepton's one set of ownership rules.

Everything a person creates (datasets, runs, studies) carries an owner: the `id` of a `User`.
Another user sees it only when it is shared (a toggle: shared with every signed-in user), and
only its owner or an admin may change it (cancel, resume, delete, share). Admins see everything.

    user = from_claims(st.user, settings)        # the dashboard, when login is on
    user = local_user()                          # the dashboard as a single-user local app
    user = cli_user()                            # the command line
    can_see(user, run["owner"], run["shared"])   # one item
    sql, args = visible_sql(user)                # the same rule as a WHERE clause for a list

No streamlit here: lepton/ui/access.py reads st.user and st.secrets and passes them in.
"""

from __future__ import annotations

import getpass
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from lepton.errors import ConfigError

LOCAL_PREFIX = "local:"  # the unix user of a single-user app or of the CLI
SUB_PREFIX = "sub:"      # a signed-in user whose provider sent no usable email
ENV_USER = "LEPTON_USER"  # the CLI creates things as this owner instead of local:<unix user>
SETTINGS_SECTION = "lepton"
SETTINGS_KEYS = {"admins", "allowed", "session_hours"}


@dataclass(frozen=True)
class User:
    id: str                   # the owner written on what this user creates
    name: str                 # what the sidebar calls them
    admin: bool = False       # sees and manages everything
    signed_in: bool = False   # False for the local user (single-user app, CLI)

    @property
    def label(self) -> str:
        return self.name if self.name == self.id else f"{self.name} ({self.id})"


@dataclass(frozen=True)
class Settings:
    """The `[lepton]` section of .streamlit/secrets.toml, plus whether `[auth]` turns login on."""

    login: bool = False
    admins: frozenset[str] = frozenset()
    allowed: tuple[str, ...] = ()       # emails and "@domain" entries; empty: whoever the provider lets in
    session_hours: float | None = None  # sign in again after this long; None: Streamlit's 30-day cookie
    problems: tuple[str, ...] = field(default=())


def _owner_key(value: str) -> str:
    return value.strip().lower() if "@" in value and not value.startswith((LOCAL_PREFIX, SUB_PREFIX)) else value.strip()


def _string_list(section: Mapping[str, Any], key: str, example: str) -> list[str]:
    value = section.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"`{key}` in [{SETTINGS_SECTION}] of .streamlit/secrets.toml must be a list of "
                          f"non-empty strings, e.g. {key} = {example}")
    return [_owner_key(v) for v in value]


def settings(secrets: Mapping[str, Any] | None) -> Settings:
    """Parse the deployment's secrets (st.secrets as a mapping; None when there is no secrets.toml).

    A bad `[lepton]` section never raises: the problem is kept in `problems` for the dashboard to
    show, and the setting falls back to its safe side (no admins, nobody allowed, short sessions).
    """
    secrets = secrets or {}
    login = bool(secrets.get("auth"))
    section = secrets.get(SETTINGS_SECTION) or {}
    problems: list[str] = []
    if not isinstance(section, Mapping):
        return Settings(login=login, allowed=("",) if login else (), problems=(
            f"[{SETTINGS_SECTION}] in .streamlit/secrets.toml must be a table of settings "
            f"({', '.join(sorted(SETTINGS_KEYS))}); nobody can sign in until it is fixed",))
    unknown = sorted(set(section) - SETTINGS_KEYS)
    if unknown:
        problems.append(f"unknown setting(s) {', '.join(unknown)} in [{SETTINGS_SECTION}] of .streamlit/secrets.toml; "
                        f"the known ones are {', '.join(sorted(SETTINGS_KEYS))}")
    admins: list[str] = []
    allowed: list[str] = []
    hours: float | None = None
    try:
        admins = _string_list(section, "admins", '["you@example.com"]')
    except ConfigError as e:
        problems.append(f"{e}; nobody is an admin until it is fixed")
    try:
        allowed = _string_list(section, "allowed", '["@example.com", "guest@partner.org"]')
    except ConfigError as e:
        problems.append(f"{e}; nobody can sign in until it is fixed")
        allowed = [""]  # matches no email: fail closed
    if "session_hours" in section:
        raw = section["session_hours"]
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw > 0:
            hours = float(raw)
        else:
            problems.append(f"`session_hours` in [{SETTINGS_SECTION}] of .streamlit/secrets.toml must be a positive "
                            f"number of hours, e.g. session_hours = 12 (got {raw!r}); sessions last 1 hour until it is fixed")
            hours = 1.0
    return Settings(login=login, admins=frozenset(admins), allowed=tuple(allowed), session_hours=hours,
                    problems=tuple(problems))


# ---------------------------------------------------------------- who is this
def local_user(admin: bool = True) -> User:
    """The person at this machine: the whole of a single-user app, and the CLI's operator."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        name = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return User(id=LOCAL_PREFIX + name, name=name, admin=admin, signed_in=False)


def cli_user(env: Mapping[str, str] | None = None) -> User:
    """The command line: the machine's operator, who can read every file under LEPTON_HOME anyway,
    so it sees and manages everything. What it creates is owned by LEPTON_USER (a dashboard user's
    email, to submit for them) or, without it, by local:<unix user>."""
    env = os.environ if env is None else env
    local = local_user(admin=True)
    as_user = (env.get(ENV_USER) or "").strip()
    return User(id=_owner_key(as_user), name=as_user, admin=True) if as_user else local


def owner_from_claims(claims: Mapping[str, Any]) -> str | None:
    """The owner key for a signed-in user: the verified email, else sub:<issuer>|<sub>.

    An email the provider says is not verified (`email_verified: false`) is not trusted: anyone
    could have typed it, so it must not match the owner (or admin) of that address. Providers that
    send no `email_verified` at all (Microsoft Entra) are trusted to send only real addresses.
    """
    email = claims.get("email")
    verified = claims.get("email_verified")
    if isinstance(verified, str):
        verified = verified.strip().lower() not in ("false", "0", "no")
    if isinstance(email, str) and "@" in email and verified is not False:
        key = _owner_key(email)
        if not key.startswith((LOCAL_PREFIX, SUB_PREFIX)):
            return key
    sub = claims.get("sub")
    if isinstance(sub, str) and sub.strip():
        iss = claims.get("iss")
        return SUB_PREFIX + (f"{iss}|{sub.strip()}" if isinstance(iss, str) and iss else sub.strip())
    return None


def from_claims(claims: Mapping[str, Any], conf: Settings) -> User | None:
    """The signed-in user from the identity token's claims (st.user); None if nobody is signed in."""
    if not claims.get("is_logged_in"):
        return None
    owner = owner_from_claims(claims)
    if owner is None:
        return None
    name = next((str(claims[k]) for k in ("name", "preferred_username", "email") if claims.get(k)), owner)
    return User(id=owner, name=name, admin=owner in conf.admins, signed_in=True)


def sign_in_problem(user: User, claims: Mapping[str, Any], conf: Settings, now: float | None = None) -> str | None:
    """Why this signed-in user may not use the dashboard (not on the allowed list, session too old), or None."""
    if conf.allowed and not user.admin and not _allowed(user.id, conf.allowed):
        return (f"{user.id} is not on this deployment's list of allowed users. Ask an admin to add you "
                f"(`allowed` in [{SETTINGS_SECTION}] of .streamlit/secrets.toml), or sign in with another account.")
    if conf.session_hours is not None:
        issued = claims.get("iat")
        age_h = ((now or time.time()) - float(issued)) / 3600 if isinstance(issued, (int, float)) else None
        if age_h is None or age_h > conf.session_hours:
            return f"Your session is older than {conf.session_hours:g} hours: sign in again."
    return None


def _allowed(owner: str, allowed: Iterable[str]) -> bool:
    for entry in allowed:
        if not entry:
            continue
        if entry.startswith("@") and "@" in owner and owner.endswith(entry):  # "@example.com": the whole domain
            return True
        if owner == entry:
            return True
    return False


# ---------------------------------------------------------------- what they may see and do
def can_see(user: User | None, owner: str | None, shared: Any) -> bool:
    """user None: an internal caller (worker, reports) that is not acting for anyone."""
    return user is None or user.admin or bool(shared) or (owner is not None and owner == user.id)


def can_manage(user: User | None, owner: str | None) -> bool:
    """Cancel, resume, delete, share: the owner or an admin, never just anyone it is shared with."""
    return user is None or user.admin or (owner is not None and owner == user.id)


def visible_sql(user: User | None, owner: str = "owner", shared: str = "shared") -> tuple[str, list[Any]]:
    """can_see as a WHERE condition over a table with owner and shared columns, and its arguments."""
    if user is None or user.admin:
        return "1=1", []
    return f"({owner} = ? OR {shared} = 1)", [user.id]


def visible(user: User | None, rows: Iterable[Mapping[str, Any]]) -> list:
    """The rows (dicts with owner and shared) this user may see, in their order."""
    return [r for r in rows if can_see(user, r.get("owner"), r.get("shared"))]


# ---------------------------------------------------------------- datasets: stored once, owned by each uploader
def dataset_link(user: User | None, links: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """Which of a dataset's owner links this user sees it through: their own, else the oldest shared one.

    The same content uploaded by several people is stored once (content-addressed), and each upload
    adds a link (owner, the name they gave it, when, shared). A dataset is visible through a link
    can_see allows; what the user sees (its name, when it was added) comes from that link, so one
    user never learns another's name for it, or that someone else uploaded it too."""
    if user is not None:
        mine = next((l for l in links if l.get("owner") == user.id), None)
        if mine is not None:
            return mine
    return next((l for l in sorted(links, key=lambda l: l.get("created") or 0) if l.get("shared")), None)


def visible_dataset_ids(user: User | None, owners: Mapping[str, Mapping[str, Any]]) -> set[str] | None:
    """Ids of the datasets this user may see (owners: as for present_datasets); None: every one."""
    if user is None or user.admin:
        return None
    return {ds_id for ds_id, info in owners.items() if dataset_link(user, list(info.get("links") or []))}


def present_datasets(user: User | None, manifests: Iterable[dict], owners: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """The dataset manifests (from the folders) as this user may see them, newest first.

    owners: {dataset id: {"owner": who first stored it, "links": [{owner, name, shared, created}]}}.
    Each manifest gains "owner" (through whom it is seen), "mine", "shared" (the user's own link),
    "shared_by" (for a dataset seen through someone else's share) and "can_manage".
    Details that describe one person's upload (source file name, skipped files, warnings) are kept
    only when the link seen is that upload's."""
    out = []
    for m in manifests:
        info = owners.get(m["id"]) or {}
        links = list(info.get("links") or [])
        sees_all = user is None or user.admin
        link = dataset_link(user, links)
        mine = user is not None and link is not None and link.get("owner") == user.id
        if sees_all and not mine:
            link = None  # an admin sees the upload as it was stored, with every owner
        elif link is None:
            continue
        d = dict(m)
        if link is not None:
            d["name"] = link.get("name") or d.get("name")
            d["created"] = _iso(link.get("created")) or d.get("created")
            if link.get("owner") != info.get("owner"):
                d.update(source=None, skipped=[], warnings=[])
        d.update(owner=(link or {}).get("owner") or info.get("owner"), mine=mine,
                 shared=bool(mine and link.get("shared")), shared_by=None if mine or link is None else link.get("owner"),
                 owners=[l.get("owner") for l in links] if sees_all else None, can_manage=mine or sees_all)
        out.append(d)
    out.sort(key=lambda d: str(d.get("created") or ""), reverse=True)
    return out


def _iso(t: Any) -> str | None:
    if not isinstance(t, (int, float)):
        return None
    from datetime import datetime, timezone

    return datetime.fromtimestamp(float(t), timezone.utc).isoformat(timespec="seconds")
