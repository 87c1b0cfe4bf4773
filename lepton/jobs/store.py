"""The job store: one SQLite file in WAL mode, the single source of truth between processes.

The dashboard, the CLI, the worker and each job's child process all open the same
`LEPTON_HOME/lepton.db`. Writers use `BEGIN IMMEDIATE` (take the write lock up front, so no
transaction ever has to upgrade a read lock and fail with "database is locked"); readers never
block writers in WAL mode. Everything goes through the `Store` class so a server database can
replace SQLite later without touching the pages.

Times are unix seconds (float). Run ids sort by creation time: `20261130-091512-3fa2`.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from lepton import auth, paths
from lepton.config import RunConfig
from lepton.errors import RunError
from lepton.jobs.status import Status

# 2: evaluations (a finished run scored on another dataset)
# 3: studies (a strategy's trials are runs linked to it) and ownership (owner, shared) on datasets, runs, studies
# 4: dataset_owners: a dataset is stored once per content, and each person who uploaded it owns it (lepton/auth.py)
# 5: where a run executes (runs.executor, runs.node) and what a worker's cluster has free (heartbeats.resources)
SCHEMA_VERSION = 5
LOG_TAIL_LINES = 50

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id        TEXT PRIMARY KEY,
    name      TEXT,
    modality  TEXT,
    manifest  TEXT NOT NULL,          -- json
    created   REAL
);
CREATE TABLE IF NOT EXISTS runs (
    id               TEXT PRIMARY KEY,
    name             TEXT,
    status           TEXT NOT NULL,
    config           TEXT NOT NULL,   -- json of RunConfig.to_dict() (config.yaml in the run folder has it as YAML)
    dataset          TEXT,
    run_dir          TEXT NOT NULL,
    created          REAL NOT NULL,
    started          REAL,
    finished         REAL,
    progress         REAL NOT NULL DEFAULT 0,
    eta_s            REAL,
    phase            TEXT,
    message          TEXT,
    error            TEXT,
    log_tail         TEXT,
    result           TEXT,            -- json
    worker_id        TEXT,            -- NULL for a foreground `lepton train`
    pid              INTEGER,         -- the process responsible: the worker, or the foreground trainer
    host             TEXT,
    child_pid        INTEGER,         -- the job's own process when a worker runs it
    attempt          INTEGER NOT NULL DEFAULT 1,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    checkpoint       TEXT,            -- last checkpoint path and step, from the "checkpoint" event
    checkpoint_step  INTEGER,
    updated          REAL
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, created);
CREATE TABLE IF NOT EXISTS metrics (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT NOT NULL,
    step    INTEGER,
    epoch   REAL,
    split   TEXT,
    name    TEXT NOT NULL,
    value   REAL,
    time    REAL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run_id, id);
CREATE TABLE IF NOT EXISTS evaluations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL,
    dataset_id  TEXT NOT NULL,
    split       TEXT,                 -- the evaluated split: test, val, or all
    metrics     TEXT NOT NULL,        -- json: accuracy, macro_f1, n, ece, per-class F1
    created     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS evaluations_run ON evaluations (run_id, dataset_id);
CREATE TABLE IF NOT EXISTS studies (
    id         TEXT PRIMARY KEY,
    name       TEXT,
    strategy   TEXT NOT NULL,         -- rl, tpe, random (lepton/strategy/)
    status     TEXT NOT NULL,         -- the run statuses: queued/running/finished/failed/cancelled/interrupted
    config     TEXT NOT NULL,         -- json of StudyConfig
    created    REAL NOT NULL,
    started    REAL,
    finished   REAL,
    worker_id  TEXT,
    pid        INTEGER,
    message    TEXT,
    error      TEXT,
    result     TEXT,                  -- json: the CLI's last line
    owner      TEXT,
    shared     INTEGER NOT NULL DEFAULT 0,
    updated    REAL
);
CREATE TABLE IF NOT EXISTS dataset_owners (
    dataset_id TEXT NOT NULL,
    owner      TEXT NOT NULL,
    name       TEXT,                  -- the name this owner gave it (another uploader never sees it)
    shared     INTEGER NOT NULL DEFAULT 0,
    created    REAL NOT NULL,
    PRIMARY KEY (dataset_id, owner)
);
CREATE TABLE IF NOT EXISTS heartbeats (
    worker_id  TEXT PRIMARY KEY,
    pid        INTEGER,
    host       TEXT,
    run_id     TEXT,                  -- the run(s) its children are training, comma-separated
    beat_time  REAL NOT NULL,
    started    REAL
);
"""

# Columns later versions add to tables an older file already has (CREATE TABLE IF NOT EXISTS skips them).
_ADDED_COLUMNS = {
    3: [("datasets", "owner TEXT"), ("datasets", "shared INTEGER NOT NULL DEFAULT 0"),
        ("runs", "owner TEXT"), ("runs", "shared INTEGER NOT NULL DEFAULT 0"),
        ("runs", "study_id TEXT"), ("runs", "trial INTEGER")],
    5: [("runs", "executor TEXT"), ("runs", "node TEXT"),
        ("heartbeats", "executor TEXT"), ("heartbeats", "resources TEXT")],
}

HOST = socket.gethostname()


def _where(sql: str, args: list, **equal: Any) -> tuple[str, list]:
    """sql and args, with "AND column=?" for each filter that is not None."""
    for column, value in equal.items():
        if value is not None:
            sql += f" AND {column}=?"
            args.append(value)
    return sql, args


def _now() -> float:
    return time.time()


def pid_alive(pid: int | None) -> bool:
    """True if a process with this pid exists on this machine and is not a zombie."""
    if not pid or pid <= 0:
        return False
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # someone else's process: it exists
        return True


class Store:
    """The job store behind one small interface. Safe to share between threads of one process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._schema_lock = threading.Lock()
        self._schema_ready_pid: int | None = None

    # ---------------------------------------------------------------- connections
    def _conn(self) -> sqlite3.Connection:
        """One connection per thread (Streamlit runs each session in a thread) and per process."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=10000")
        for _ in range(50):  # switching a fresh file to WAL needs a moment of exclusive access
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:
                time.sleep(0.1)
        conn.execute("PRAGMA synchronous=NORMAL")
        self._local.conn, self._local.pid = conn, os.getpid()
        self._ensure_schema(conn)
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        with self._schema_lock:
            if self._schema_ready_pid == os.getpid():
                return
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RunError(
                    f"{self.path} was written by a newer Lepton (schema {version} > {SCHEMA_VERSION}); upgrade lepton"
                )
            if version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                        for stmt in _SCHEMA.split(";"):  # (so no ";" inside the comments above)
                            if stmt.strip():
                                conn.execute(stmt)
                        # Every statement is IF NOT EXISTS, so re-running the schema adds new tables;
                        # columns new to old tables are added here (a fresh file gets them too).
                        for added in _ADDED_COLUMNS.values():
                            for table, column in added:
                                have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                                if column.split()[0] not in have:
                                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
                        conn.execute("CREATE INDEX IF NOT EXISTS runs_study ON runs (study_id, trial)")
                        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            self._schema_ready_pid = os.getpid()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        if conn.in_transaction:  # a signal landed mid-transaction last time: start clean
            conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, tuple(args)).fetchall()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def pragma(self, name: str) -> Any:
        return self._conn().execute(f"PRAGMA {name}").fetchone()[0]

    # ---------------------------------------------------------------- datasets
    def record_dataset(self, manifest: dict) -> str:
        """Insert or replace a dataset row from its manifest (needs an "id"); returns the id."""
        ds_id = manifest.get("id")
        if not ds_id:
            raise RunError("dataset manifest has no 'id'")
        created = manifest.get("created") or _now()
        with self._write() as c:  # an upsert: re-ingesting the same content keeps its owner and shared flag
            c.execute(
                "INSERT INTO datasets (id, name, modality, manifest, created) VALUES (?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET name=excluded.name, modality=excluded.modality,"
                " manifest=excluded.manifest, created=excluded.created",
                (ds_id, manifest.get("name"), manifest.get("modality"), json.dumps(manifest, default=str), created),
            )
        return ds_id

    def list_datasets(self) -> list[dict]:
        """Manifests, newest first, each with id, name, modality and created filled in."""
        out = []
        for r in self._read("SELECT * FROM datasets ORDER BY created DESC, id DESC"):
            d = json.loads(r["manifest"])
            d.update(id=r["id"], name=r["name"], modality=r["modality"], created=r["created"])
            out.append(d)
        return out

    def get_dataset(self, ds_id: str) -> dict | None:
        rows = self._read("SELECT * FROM datasets WHERE id=?", (ds_id,))
        if not rows:
            return None
        d = json.loads(rows[0]["manifest"])
        d.update(id=rows[0]["id"], name=rows[0]["name"], modality=rows[0]["modality"], created=rows[0]["created"])
        return d

    def delete_dataset(self, ds_id: str) -> bool:
        """Remove the row (the files are the ingest module's business); False if there was none."""
        with self._write() as c:
            c.execute("DELETE FROM dataset_owners WHERE dataset_id=?", (ds_id,))
            return c.execute("DELETE FROM datasets WHERE id=?", (ds_id,)).rowcount > 0

    # ---------------------------------------------------------------- ownership (rules: lepton/auth.py)
    def add_dataset_owner(self, ds_id: str, owner: str, name: str | None = None) -> bool:
        """Record that `owner` uploaded this dataset; False if they already had it (their name stays).

        The first owner is also written on the dataset row: the manifest describes their upload."""
        with self._write() as c:
            added = c.execute("INSERT OR IGNORE INTO dataset_owners (dataset_id, owner, name, shared, created)"
                              " VALUES (?,?,?,0,?)", (ds_id, owner, name, _now())).rowcount > 0
            c.execute("UPDATE datasets SET owner=? WHERE id=? AND owner IS NULL", (owner, ds_id))
        return added

    def remove_dataset_owner(self, ds_id: str, owner: str) -> int:
        """Forget one owner's upload of a dataset; returns how many owners it still has."""
        with self._write() as c:
            c.execute("DELETE FROM dataset_owners WHERE dataset_id=? AND owner=?", (ds_id, owner))
            self._sync_dataset_shared(c, ds_id)
            return c.execute("SELECT COUNT(*) FROM dataset_owners WHERE dataset_id=?", (ds_id,)).fetchone()[0]

    def dataset_owners(self) -> dict[str, dict]:
        """{dataset id: {"owner": who first stored it, "links": [{owner, name, shared, created}]}}, links oldest first."""
        out: dict[str, dict] = {r["id"]: {"owner": r["owner"], "links": []}
                                for r in self._read("SELECT id, owner FROM datasets")}
        for r in self._read("SELECT * FROM dataset_owners ORDER BY created, owner"):
            out.setdefault(r["dataset_id"], {"owner": None, "links": []})["links"].append(
                {"owner": r["owner"], "name": r["name"], "shared": bool(r["shared"]), "created": r["created"]})
        return out

    def set_shared(self, kind: str, item_id: str, shared: bool, owner: str | None = None) -> bool:
        """Share a run or study (kind "runs"/"studies") with every signed-in user, or stop sharing it.

        kind "datasets" shares one owner's upload of it (their link; made if they had none, so an
        admin can share a dataset nobody owns). Returns whether anything changed."""
        flag = 1 if shared else 0
        with self._write() as c:
            if kind == "datasets":
                if not owner:
                    raise ValueError("sharing a dataset needs the owner whose upload is shared")
                c.execute("INSERT INTO dataset_owners (dataset_id, owner, name, shared, created)"
                          " SELECT id, ?, name, ?, ? FROM datasets WHERE id=?"
                          " ON CONFLICT(dataset_id, owner) DO UPDATE SET shared=excluded.shared",
                          (owner, flag, _now(), item_id))
                return self._sync_dataset_shared(c, item_id)
            if kind not in ("runs", "studies"):
                raise ValueError(f"cannot share a {kind!r}: runs, studies or datasets")
            return c.execute(f"UPDATE {kind} SET shared=? WHERE id=?", (flag, item_id)).rowcount > 0

    @staticmethod
    def _sync_dataset_shared(c: sqlite3.Connection, ds_id: str) -> bool:
        # datasets.shared says whether any owner shares it, so the row alone answers "is it shared".
        return c.execute("UPDATE datasets SET shared=(SELECT COUNT(*) > 0 FROM dataset_owners"
                         " WHERE dataset_id=? AND shared=1) WHERE id=?", (ds_id, ds_id)).rowcount > 0

    # ---------------------------------------------------------------- runs
    @staticmethod
    def new_run_id() -> str:
        return paths.new_run_id()

    def create_run(self, config: RunConfig, status: str | Status = "queued", run_id: str | None = None,
                   **columns: Any) -> str:
        """Create <runs_dir>/<id>/config.yaml and the row. A `running` run belongs to this process.

        columns: more run columns to set at once (owner, shared, study_id, trial)."""
        bad = set(columns) - _RUN_COLUMNS
        if bad:
            raise ValueError(f"unknown run column(s): {', '.join(sorted(bad))}")
        status = Status(status)
        run_id = run_id or self.new_run_id()
        run_dir = paths.runs_dir() / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(run_dir / "config.yaml")
        now = _now()
        running = status is Status.running
        with self._write() as c:
            if c.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone():
                raise RunError(f"run '{run_id}' already exists; pick another id or `lepton resume {run_id}`")
            c.execute(
                "INSERT INTO runs (id, name, status, config, dataset, run_dir, created, started, pid, host, updated, message)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id, config.name, status.value, json.dumps(config.to_dict()), config.data, str(run_dir), now,
                    now if running else None, os.getpid() if running else None, HOST if running else None, now,
                    "waiting for a worker" if status is Status.queued else None,
                ),
            )
            if columns:
                c.execute(f"UPDATE runs SET {', '.join(f'{k}=?' for k in columns)} WHERE id=?", (*columns.values(), run_id))
        return run_id

    def _run_dict(self, r: sqlite3.Row) -> dict:
        d = dict(r)
        d["config"] = json.loads(d["config"]) if d["config"] else {}
        d["result"] = json.loads(d["result"]) if d["result"] else None
        d["cancel_requested"] = bool(d["cancel_requested"])
        return d

    def get_run(self, run_id: str) -> dict | None:
        rows = self._read("SELECT * FROM runs WHERE id=?", (run_id,))
        return self._run_dict(rows[0]) if rows else None

    def find_run(self, ref: str, viewer: auth.User | None = None) -> dict:
        """A run by id, unique id prefix, run folder path, or unique name.

        With a viewer (the dashboard's signed-in user), only runs they may see count, and never by
        folder path: someone else's private run is "no run", exactly like one that does not exist."""
        ref = str(ref).strip()
        vis, vis_args = auth.visible_sql(viewer)
        if ref:
            run = self.get_run(ref)
            if run and auth.can_see(viewer, run.get("owner"), run.get("shared")):
                return run
            p = Path(ref).expanduser()
            if viewer is None and p.is_dir() and (p / "config.yaml").exists():
                rows = self._read("SELECT * FROM runs WHERE id=? OR run_dir=?", (p.name, str(p.resolve())))
                if rows:
                    return self._run_dict(rows[0])
            for col, arg in (("id LIKE ? ESCAPE '\\'", _like_prefix(ref)), ("name = ?", ref)):
                rows = self._read(f"SELECT * FROM runs WHERE {col} AND {vis} ORDER BY created DESC LIMIT 6",
                                  (arg, *vis_args))
                if len(rows) == 1:
                    return self._run_dict(rows[0])
                if len(rows) > 1:
                    ids = ", ".join(r["id"] for r in rows[:5])
                    raise RunError(f"'{ref}' matches several runs ({ids}{', …' if len(rows) > 5 else ''}); give more of the id")
        raise RunError(f"no run '{ref}'; `lepton runs` lists them")

    def list_runs(self, limit: int | None = None, status: str | Status | Iterable | None = None,
                  viewer: auth.User | None = None) -> list[dict]:
        """Runs newest first, optionally only those with the given status(es), and only those the viewer may see."""
        vis, args = auth.visible_sql(viewer)
        where, more = _status_in(status)
        sql = f"SELECT * FROM runs WHERE {vis}{where} ORDER BY created DESC, id DESC"
        args += more
        if limit:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [self._run_dict(r) for r in self._read(sql, args)]

    def delete_run(self, run_id: str) -> bool:
        """Drop the row and its metrics (the caller removes the folder if it wants to)."""
        with self._write() as c:
            c.execute("DELETE FROM metrics WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM evaluations WHERE run_id=?", (run_id,))
            return c.execute("DELETE FROM runs WHERE id=?", (run_id,)).rowcount > 0

    def claim_next(self, worker_id: str, pid: int) -> dict | None:
        """Atomically move the oldest queued run to running for this worker; None if the queue is empty."""
        # A plain read first: an idle worker polls often, and an empty queue should not cost a write lock.
        if not self._read("SELECT 1 FROM runs WHERE status='queued' LIMIT 1"):
            return None
        now = _now()
        with self._write() as c:  # BEGIN IMMEDIATE: only one claimer at a time sees the queue
            row = c.execute(
                "SELECT id, attempt FROM runs WHERE status='queued' ORDER BY created, id LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            c.execute(
                "UPDATE runs SET status='running', started=?, finished=NULL, worker_id=?, pid=?, host=?,"
                " child_pid=NULL, cancel_requested=0, error=NULL, phase='setup', message=?, updated=?"
                " WHERE id=? AND status='queued'",
                (now, worker_id, pid, HOST, f"started by worker {worker_id} (attempt {row['attempt']})", now, row["id"]),
            )
        return self.get_run(row["id"])

    def set_config(self, run_id: str, config: RunConfig) -> None:
        """Replace a run's stored config (a study trial retried with another recipe), as create_run stores it."""
        with self._write() as c:
            c.execute("UPDATE runs SET config=?, updated=? WHERE id=?", (json.dumps(config.to_dict()), _now(), run_id))

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set raw columns (worker bookkeeping such as child_pid)."""
        if not fields:
            return
        bad = set(fields) - _RUN_COLUMNS
        if bad:
            raise ValueError(f"unknown run column(s): {', '.join(sorted(bad))}")
        fields["updated"] = _now()
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._write() as c:
            c.execute(f"UPDATE runs SET {cols} WHERE id=?", (*fields.values(), run_id))

    def set_status(
        self,
        run_id: str,
        status: str | Status,
        *,
        error: str | None = None,
        result: dict | None = None,
        message: str | None = None,
        log_tail: str | None = None,
        only_from: str | Status | Iterable | None = None,
    ) -> bool:
        """Change a run's status; with only_from, only if it currently has one of those statuses.

        Returns whether the row changed, so "mark failed if it is still running" is one atomic step.
        """
        status = Status(status)
        now = _now()
        sets: dict[str, Any] = {"status": status.value, "updated": now}
        if status is Status.running:
            sets["started"] = now
        if status in (Status.finished, Status.failed, Status.cancelled, Status.interrupted):
            sets["finished"] = now
            sets["eta_s"] = None
        if status is Status.finished:
            sets["progress"] = 1.0
        if error is not None:
            sets["error"] = error
        if result is not None:
            sets["result"] = json.dumps(result, default=str)
        if message is not None:
            sets["message"] = message
        if log_tail is not None:
            sets["log_tail"] = log_tail
        sql = f"UPDATE runs SET {', '.join(f'{k}=?' for k in sets)} WHERE id=?"
        args: list[Any] = [*sets.values(), run_id]
        if only_from is not None:
            allowed = [Status(only_from).value] if isinstance(only_from, (str, Status)) else [Status(s).value for s in only_from]
            sql += f" AND status IN ({','.join('?' * len(allowed))})"
            args += allowed
        with self._write() as c:
            changed = c.execute(sql, args).rowcount > 0
            if not changed and only_from is None:
                raise RunError(f"no run '{run_id}'; `lepton runs` lists them")
        return changed

    def requeue(self, run_id: str, only_from: Iterable[str | Status]) -> dict | None:
        """Resume: same id back to queued, attempt+1, error cleared. None if the status did not allow it."""
        allowed = [Status(s).value for s in only_from]
        now = _now()
        with self._write() as c:
            n = c.execute(
                "UPDATE runs SET status='queued', attempt=attempt+1, error=NULL, finished=NULL, eta_s=NULL,"
                " cancel_requested=0, worker_id=NULL, pid=NULL, child_pid=NULL, host=NULL,"
                " message='queued to resume: waiting for a worker', updated=?"
                f" WHERE id=? AND status IN ({','.join('?' * len(allowed))})",
                (now, run_id, *allowed),
            ).rowcount
        return self.get_run(run_id) if n else None

    def set_progress(
        self, run_id: str, fraction: float | None, eta_s: float | None = None, phase: str | None = None, message: str | None = None
    ) -> None:
        with self._write() as c:
            self._set_progress(c, run_id, fraction, eta_s, phase, message)

    @staticmethod
    def _set_progress(c: sqlite3.Connection, run_id: str, fraction, eta_s, phase, message) -> None:
        if fraction is not None:
            fraction = min(1.0, max(0.0, float(fraction)))
        c.execute(
            "UPDATE runs SET progress=COALESCE(?, progress), eta_s=?, phase=COALESCE(?, phase),"
            " message=COALESCE(?, message), updated=? WHERE id=?",
            (fraction, eta_s, phase, message, _now(), run_id),
        )

    def request_cancel(self, run_id: str) -> None:
        with self._write() as c:
            c.execute("UPDATE runs SET cancel_requested=1, message='cancelling…', updated=? WHERE id=?", (_now(), run_id))

    def cancel_requested(self, run_id: str) -> bool:
        rows = self._read("SELECT cancel_requested FROM runs WHERE id=?", (run_id,))
        return bool(rows and rows[0][0])

    def append_log(self, run_id: str, lines: str | list[str], keep: int = LOG_TAIL_LINES) -> None:
        new = lines.splitlines() if isinstance(lines, str) else list(lines)
        with self._write() as c:
            self._append_log(c, run_id, new, keep)

    @staticmethod
    def _append_log(c: sqlite3.Connection, run_id: str, new: list[str], keep: int = LOG_TAIL_LINES) -> None:
        row = c.execute("SELECT log_tail FROM runs WHERE id=?", (run_id,)).fetchone()
        old = (row[0] or "").splitlines() if row else []
        tail = "\n".join((old + new)[-keep:])
        c.execute("UPDATE runs SET log_tail=?, updated=? WHERE id=?", (tail, _now(), run_id))

    # ---------------------------------------------------------------- metrics
    def add_metrics(self, run_id: str, rows: Iterable[dict]) -> int:
        """rows: dicts with step, epoch, split, name, value (time defaults to now). Returns the count."""
        with self._write() as c:
            return self._add_metrics(c, run_id, rows)

    @staticmethod
    def _add_metrics(c: sqlite3.Connection, run_id: str, rows: Iterable[dict]) -> int:
        now = _now()
        values = [
            (run_id, r.get("step"), r.get("epoch"), r.get("split"), r["name"], _num(r.get("value")), r.get("time") or now)
            for r in rows
        ]
        if values:
            c.executemany(
                "INSERT INTO metrics (run_id, step, epoch, split, name, value, time) VALUES (?,?,?,?,?,?,?)", values
            )
        return len(values)

    def metrics(self, run_id: str, after_id: int = 0, split: str | None = None, name: str | None = None) -> list[dict]:
        """Metric rows with id > after_id, oldest first: a live chart asks only for what is new."""
        sql, args = _where("SELECT * FROM metrics WHERE run_id=? AND id>?", [run_id, int(after_id or 0)],
                           split=split, name=name)
        return [dict(r) for r in self._read(sql + " ORDER BY id", args)]

    def delete_metrics(self, run_id: str, after_step: int | None = None) -> int:
        """Drop a run's metrics (all, or those past a step: a resumed run replays from its checkpoint)."""
        with self._write() as c:
            if after_step is None:
                return c.execute("DELETE FROM metrics WHERE run_id=?", (run_id,)).rowcount
            return c.execute("DELETE FROM metrics WHERE run_id=? AND step>?", (run_id, after_step)).rowcount

    # ---------------------------------------------------------------- evaluations
    def add_evaluation(self, run_id: str, dataset_id: str, metrics: dict, split: str | None = None) -> int:
        """Record a finished run's score on a dataset (`lepton eval`, the run page's button); returns its id."""
        with self._write() as c:
            return c.execute(
                "INSERT INTO evaluations (run_id, dataset_id, split, metrics, created) VALUES (?,?,?,?,?)",
                (run_id, dataset_id, split, json.dumps(metrics, default=str), _now()),
            ).lastrowid

    def evaluations(self, run_id: str | None = None, dataset_id: str | None = None) -> list[dict]:
        """Stored evaluations, oldest first (so the last one per run and dataset is the newest)."""
        sql, args = _where("SELECT * FROM evaluations WHERE 1=1", [], run_id=run_id, dataset_id=dataset_id)
        out = []
        for r in self._read(sql + " ORDER BY created, id", args):
            d = dict(r)
            d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else {}
            out.append(d)
        return out

    # ---------------------------------------------------------------- liveness
    def heartbeat(self, worker_id: str, pid: int, run_id: str | Iterable[str] | None = None,
                  executor: str | None = None, resources: dict | None = None) -> None:
        """resources: a cluster executor's nodes and free/total CPUs and GPUs, for the dashboard."""
        if run_id is not None and not isinstance(run_id, str):
            run_id = ",".join(run_id) or None
        now = _now()
        res = json.dumps(resources) if resources is not None else None
        with self._write() as c:
            c.execute(
                "INSERT INTO heartbeats (worker_id, pid, host, run_id, beat_time, started, executor, resources)"
                " VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT(worker_id) DO UPDATE SET pid=excluded.pid, host=excluded.host,"
                " run_id=excluded.run_id, beat_time=excluded.beat_time, executor=excluded.executor,"
                " resources=excluded.resources",
                (worker_id, pid, HOST, run_id, now, now, executor, res),
            )

    def remove_heartbeat(self, worker_id: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM heartbeats WHERE worker_id=?", (worker_id,))

    def _worker_alive(self, beat: sqlite3.Row | dict | None, max_age_s: float, now: float) -> bool:
        if beat is None or now - beat["beat_time"] > max_age_s:
            return False
        return beat["host"] != HOST or pid_alive(beat["pid"])

    def live_workers(self, max_age_s: float = 15) -> list[dict]:
        """Workers with a heartbeat younger than max_age_s (and, on this host, a live pid)."""
        now = _now()
        out = []
        for b in self._read("SELECT * FROM heartbeats ORDER BY started"):
            if self._worker_alive(b, max_age_s, now):
                d = dict(b)
                d["age_s"] = now - b["beat_time"]
                d["run_ids"] = b["run_id"].split(",") if b["run_id"] else []
                d["resources"] = json.loads(b["resources"]) if b["resources"] else None
                out.append(d)
        return out

    def reap_dead(self, max_age_s: float = 15) -> list[str]:
        """Mark `running` runs whose process is gone as `interrupted`; returns their ids.

        A worker's run is dead when the worker has no heartbeat younger than max_age_s, or when it
        ran on this host and its pid no longer exists. A foreground run (no worker) is dead when
        its pid is gone from this host. An orphaned job process left behind is terminated.
        """
        now = _now()
        dead: list[tuple[str, str, int | None]] = []
        with self._write() as c:
            beats = {b["worker_id"]: b for b in c.execute("SELECT * FROM heartbeats")}
            for r in c.execute("SELECT id, worker_id, pid, host, child_pid, attempt FROM runs WHERE status='running'").fetchall():
                if r["worker_id"]:
                    beat = beats.get(r["worker_id"])
                    if self._worker_alive(beat, max_age_s, now) and not (r["host"] == HOST and not pid_alive(r["pid"])):
                        continue
                    why = f"worker {r['worker_id']} stopped (no heartbeat for {max_age_s:.0f} s or process gone)"
                else:
                    if r["host"] != HOST or pid_alive(r["pid"]):
                        continue
                    why = f"the process training it (pid {r['pid']}) is gone"
                c.execute(
                    "UPDATE runs SET status='interrupted', finished=?, eta_s=NULL, updated=?, message=?"
                    " WHERE id=? AND status='running'",
                    (now, now, f"interrupted: {why}; `lepton resume {r['id']}` continues from the last checkpoint", r["id"]),
                )
                dead.append((r["id"], r["host"], r["child_pid"]))
            # Studies die with their worker (or foreground process) too; a worker requeues them when it starts.
            for r in c.execute("SELECT id, worker_id, pid FROM studies WHERE status='running'").fetchall():
                # Studies run on this host (the worker's child or a foreground `lepton tune`): its pid must live too.
                alive = pid_alive(r["pid"]) and (not r["worker_id"]
                                                 or self._worker_alive(beats.get(r["worker_id"]), max_age_s, now))
                if not alive:
                    c.execute("UPDATE studies SET status='interrupted', finished=?, updated=?, message=? WHERE id=?",
                              (now, now, "interrupted: the process running it stopped; a worker resumes it with the "
                               "trials it has", r["id"]))
            # Forget workers that have been silent for a day.
            c.execute("DELETE FROM heartbeats WHERE beat_time < ?", (now - 86400,))
        for run_id, host, child_pid in dead:
            if host == HOST and child_pid:
                _kill_orphan(child_pid, run_id)
        return [d[0] for d in dead]

    # ---------------------------------------------------------------- studies (lepton/strategy/study.py)
    def create_study(self, config: Any, status: str | Status = "queued", owner: str | None = None) -> str:
        """A study row from a StudyConfig; its trials are runs with study_id set. A `running` study belongs to this process."""
        status = Status(status)
        study_id = "s" + self.new_run_id()
        now = _now()
        running = status is Status.running
        with self._write() as c:
            c.execute("INSERT INTO studies (id, name, strategy, status, config, created, started, pid, message, owner,"
                      " updated) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                      (study_id, config.name, config.strategy, status.value, json.dumps(config.to_dict()), now,
                       now if running else None, os.getpid() if running else None,
                       "waiting for a worker" if status is Status.queued else None, owner, now))
        return study_id

    @staticmethod
    def _study_dict(r: sqlite3.Row) -> dict:
        d = dict(r)
        d["config"] = json.loads(d["config"]) if d["config"] else {}
        d["result"] = json.loads(d["result"]) if d["result"] else None
        return d

    def get_study(self, study_id: str, viewer: auth.User | None = None) -> dict | None:
        rows = self._read("SELECT * FROM studies WHERE id=?", (study_id,))
        if not rows or not auth.can_see(viewer, rows[0]["owner"], rows[0]["shared"]):
            return None
        return self._study_dict(rows[0])

    def find_study(self, ref: str, viewer: auth.User | None = None) -> dict:
        """A study by id, unique id prefix or unique name (only the viewer's visible ones)."""
        ref = str(ref).strip()
        found = self.get_study(ref, viewer) if ref else None
        if found:
            return found
        vis, args = auth.visible_sql(viewer)
        for col, arg in (("id LIKE ? ESCAPE '\\'", _like_prefix(ref)), ("name = ?", ref)):
            rows = self._read(f"SELECT * FROM studies WHERE {col} AND {vis} ORDER BY created DESC LIMIT 6", (arg, *args))
            if len(rows) == 1:
                return self._study_dict(rows[0])
            if len(rows) > 1:
                raise RunError(f"'{ref}' matches several studies ({', '.join(r['id'] for r in rows[:5])}); give more of the id")
        raise RunError(f"no study '{ref}'; `lepton studies` lists them")

    def list_studies(self, viewer: auth.User | None = None, status: str | Status | Iterable | None = None) -> list[dict]:
        vis, args = auth.visible_sql(viewer)
        where, more = _status_in(status)
        return [self._study_dict(r) for r in self._read(f"SELECT * FROM studies WHERE {vis}{where}"
                                                        " ORDER BY created DESC, id DESC", args + more)]

    def update_study(self, study_id: str, **fields: Any) -> None:
        bad = set(fields) - _STUDY_COLUMNS
        if bad:
            raise ValueError(f"unknown study column(s): {', '.join(sorted(bad))}")
        if "result" in fields and not isinstance(fields["result"], (str, type(None))):
            fields["result"] = json.dumps(fields["result"], default=str)
        fields["updated"] = _now()
        with self._write() as c:
            c.execute(f"UPDATE studies SET {', '.join(f'{k}=?' for k in fields)} WHERE id=?", (*fields.values(), study_id))

    def set_study_status(self, study_id: str, status: str | Status, only_from: Iterable[str | Status] | None = None,
                         **fields: Any) -> bool:
        """Change a study's status (and columns); with only_from, only from those statuses. Returns whether it changed."""
        status = Status(status)
        sets = {"status": status.value, "updated": _now(), **fields}
        if status is Status.running:
            sets.setdefault("started", _now())
        if status in (Status.finished, Status.failed, Status.cancelled, Status.interrupted):
            sets["finished"] = _now()
        if "result" in sets and not isinstance(sets["result"], (str, type(None))):
            sets["result"] = json.dumps(sets["result"], default=str)
        sql = f"UPDATE studies SET {', '.join(f'{k}=?' for k in sets)} WHERE id=?"
        args: list[Any] = [*sets.values(), study_id]
        if only_from is not None:
            allowed = [Status(s).value for s in only_from]
            sql += f" AND status IN ({','.join('?' * len(allowed))})"
            args += allowed
        with self._write() as c:
            return c.execute(sql, args).rowcount > 0

    def study_trials(self, study_id: str) -> list[dict]:
        """The study's runs, in trial order."""
        return [self._run_dict(r) for r in self._read("SELECT * FROM runs WHERE study_id=? ORDER BY trial, created",
                                                      (study_id,))]

    def claim_next_study(self, worker_id: str, pid: int) -> dict | None:
        """Atomically move the oldest queued study to running for this worker; None if there is none."""
        if not self._read("SELECT 1 FROM studies WHERE status='queued' LIMIT 1"):
            return None
        now = _now()
        with self._write() as c:
            row = c.execute("SELECT id FROM studies WHERE status='queued' ORDER BY created, id LIMIT 1").fetchone()
            if row is None:
                return None
            c.execute("UPDATE studies SET status='running', started=COALESCE(started, ?), finished=NULL, worker_id=?,"
                      " pid=?, error=NULL, message=?, updated=? WHERE id=? AND status='queued'",
                      (now, worker_id, pid, f"started by worker {worker_id}", now, row["id"]))
        return self.get_study(row["id"])

    def requeue_study(self, study_id: str, only_from: Iterable[str | Status]) -> bool:
        allowed = [Status(s).value for s in only_from]
        with self._write() as c:
            return c.execute(
                "UPDATE studies SET status='queued', error=NULL, finished=NULL, worker_id=NULL, pid=NULL,"
                f" message='queued to resume: waiting for a worker', updated=? WHERE id=? AND status IN ({','.join('?' * len(allowed))})",
                (_now(), study_id, *allowed)).rowcount > 0

    # ---------------------------------------------------------------- events
    def emitter(self, run_id: str) -> "StoreEmitter":
        return StoreEmitter(self, run_id)


_RUN_COLUMNS = {
    "name", "status", "dataset", "started", "finished", "progress", "eta_s", "phase", "message", "error",
    "log_tail", "worker_id", "pid", "host", "child_pid", "attempt", "cancel_requested", "checkpoint", "checkpoint_step",
    "owner", "shared", "study_id", "trial", "executor", "node",
}


_STUDY_COLUMNS = {"name", "status", "started", "finished", "worker_id", "pid", "message", "error", "result", "owner",
                  "shared"}


def _status_in(status: str | Status | Iterable | None) -> tuple[str, list]:
    """(" AND status IN (?,…)", values) for one status or several; ("", []) for any."""
    if status is None:
        return "", []
    wanted = [Status(status).value] if isinstance(status, (str, Status)) else [Status(s).value for s in status]
    return f" AND status IN ({','.join('?' * len(wanted))})", wanted


def _like_prefix(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _kill_orphan(pid: int, run_id: str) -> None:
    """Stop a job process whose worker died, if it is still around and really is that job."""
    try:
        import psutil

        p = psutil.Process(pid)
        if "lepton.jobs.child" in " ".join(p.cmdline()) and run_id in p.cmdline():
            p.terminate()
    except Exception:
        pass


class StoreEmitter:
    """emit(kind, **data) for lepton.train.run, writing into the store (see lepton/train/events.py).

    Metric rows and progress updates are buffered for up to `every_s` seconds so a fast loop does
    not turn into one transaction per step; any other event, and flush(), writes them out first,
    so the last metrics before a result are never lost.
    """

    def __init__(self, store: Store, run_id: str, every_s: float = 0.5, max_rows: int = 500):
        self.store, self.run_id, self.every_s, self.max_rows = store, run_id, every_s, max_rows
        self._rows: list[dict] = []
        self._progress: tuple | None = None
        self._phase: str | None = None
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, kind: str, **data: Any) -> None:
        if kind == "metrics":
            now = _now()
            step, epoch, split = data.get("step"), data.get("epoch"), data.get("split")
            with self._lock:
                for name, value in (data.get("values") or {}).items():
                    self._rows.append(dict(step=step, epoch=epoch, split=split, name=name, value=value, time=now))
            self._maybe_flush()
        elif kind == "progress":
            p = (data.get("fraction"), data.get("eta_s"), data.get("phase"), data.get("message"))
            with self._lock:
                phase_changed = p[2] != self._phase
                self._progress, self._phase = p, p[2]
            self._maybe_flush(force=phase_changed or (p[0] is not None and p[0] >= 1.0))
        elif kind == "log":
            level = str(data.get("level") or "info")
            line = time.strftime("%H:%M:%S ") + ("" if level == "info" else level.upper() + ": ") + str(data.get("message", ""))
            self._flush(extra=lambda c: Store._append_log(c, self.run_id, line.splitlines()))
        elif kind == "checkpoint":
            msg = f"checkpoint saved (epoch {data.get('epoch')}, step {data.get('step')})"
            self._flush(extra=lambda c: c.execute(
                "UPDATE runs SET message=?, checkpoint=?, checkpoint_step=?, updated=? WHERE id=?",
                (msg, str(data.get("path") or ""), data.get("step"), _now(), self.run_id),
            ))
        elif kind == "result":
            res = json.dumps(data.get("result"), default=str)
            self._flush(extra=lambda c: c.execute(
                "UPDATE runs SET result=?, updated=? WHERE id=?", (res, _now(), self.run_id)
            ))
        # Unknown kinds are ignored: a newer engine must not break an older store.

    def _maybe_flush(self, force: bool = False) -> None:
        if force or len(self._rows) >= self.max_rows or time.monotonic() - self._last_flush >= self.every_s:
            self._flush()

    def flush(self) -> None:
        self._flush()

    def _flush(self, extra=None) -> None:
        with self._lock:
            rows, progress = self._rows, self._progress
            if not rows and progress is None and extra is None:
                self._last_flush = time.monotonic()
                return
            with self.store._write() as c:
                if rows:
                    Store._add_metrics(c, self.run_id, rows)
                if progress is not None:
                    Store._set_progress(c, self.run_id, *progress)
                if extra is not None:
                    extra(c)
            # Only forget the buffer once it is committed: an interrupted write is retried next time.
            self._rows, self._progress = [], None
            self._last_flush = time.monotonic()


_STORES: dict[str, Store] = {}
_STORES_LOCK = threading.Lock()


def get_store() -> Store:
    """The store for the current LEPTON_HOME (one Store object per database path)."""
    key = str(paths.db_path().resolve())
    with _STORES_LOCK:
        st = _STORES.get(key)
        if st is None:
            st = _STORES[key] = Store(key)
        return st


def new_run_id() -> str:
    return Store.new_run_id()


# Module-level shortcuts on the current LEPTON_HOME's store: `store.create_run(cfg)` == `get_store().create_run(cfg)`.
def _shortcut(name: str):
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(get_store(), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = getattr(Store, name).__doc__
    return call


record_dataset = _shortcut("record_dataset")
list_datasets = _shortcut("list_datasets")
get_dataset = _shortcut("get_dataset")
delete_dataset = _shortcut("delete_dataset")
add_dataset_owner = _shortcut("add_dataset_owner")
remove_dataset_owner = _shortcut("remove_dataset_owner")
dataset_owners = _shortcut("dataset_owners")
set_shared = _shortcut("set_shared")
create_run = _shortcut("create_run")
get_run = _shortcut("get_run")
find_run = _shortcut("find_run")
list_runs = _shortcut("list_runs")
delete_run = _shortcut("delete_run")
claim_next = _shortcut("claim_next")
set_status = _shortcut("set_status")
set_progress = _shortcut("set_progress")
request_cancel = _shortcut("request_cancel")
cancel_requested = _shortcut("cancel_requested")
add_metrics = _shortcut("add_metrics")
metrics = _shortcut("metrics")
heartbeat = _shortcut("heartbeat")
live_workers = _shortcut("live_workers")
reap_dead = _shortcut("reap_dead")
emitter = _shortcut("emitter")
add_evaluation = _shortcut("add_evaluation")
evaluations = _shortcut("evaluations")
