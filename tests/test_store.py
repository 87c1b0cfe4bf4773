"""The job store on real SQLite files: WAL, atomic claims across processes, events, liveness, CLI verbs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from job_fixtures import bad_csv, job_csv, job_home, run_lepton, spawn_worker, subprocess_env, wait_for  # noqa: F401
from lepton.cli import main as cli_main
from lepton.config import RunConfig
from lepton.errors import RunError
from lepton.jobs import launcher
from lepton.jobs.status import ACTIVE, FINAL, RESUMABLE, Status
from lepton.jobs.store import SCHEMA_VERSION, Store, get_store, new_run_id


def cfg(**kw) -> RunConfig:
    return RunConfig(**{"data": "tiny.csv", "backbone": "tiny-text", "adapter": "full", "epochs": 1,
                        "batch_size": 4, **kw})


def test_status_enum():
    assert Status("queued") is Status.queued and f"{Status.failed}" == "failed" and Status.running == "running"
    assert ACTIVE == {Status.queued, Status.running}
    assert RESUMABLE == {Status.interrupted, Status.cancelled, Status.failed}
    assert FINAL | ACTIVE == set(Status)


def test_wal_schema_and_settings(job_home):
    st = get_store()
    assert st.path == job_home / "lepton.db"
    assert st.pragma("journal_mode") == "wal"
    assert st.pragma("user_version") == SCHEMA_VERSION
    assert st.pragma("busy_timeout") == 10000
    assert st.pragma("synchronous") == 1  # NORMAL
    assert get_store() is st
    st.create_run(cfg())
    assert (job_home / "lepton.db-wal").exists()
    # A second Store object (another process, in effect) reopens the schema as is.
    assert Store(job_home / "lepton.db").list_runs()[0]["status"] == "queued"


def test_store_per_home(job_home, tmp_path, monkeypatch):
    a = get_store()
    a.create_run(cfg())
    monkeypatch.setenv("LEPTON_HOME", str(tmp_path / "other"))
    b = get_store()
    assert b is not a and b.list_runs() == []


def test_run_ids_sort_by_time():
    a = new_run_id()
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", a)
    time.sleep(1.01)
    assert new_run_id()[:15] > a[:15]


def test_create_get_find_list(job_home, tmp_path):
    st = get_store()
    ids = [st.create_run(cfg(name=f"run{i}", epochs=i + 1)) for i in range(3)]
    run = st.get_run(ids[1])
    assert run["status"] == "queued" and run["attempt"] == 1 and run["cancel_requested"] is False
    assert run["config"]["epochs"] == 2 and run["config"]["backbone"] == "tiny-text"
    assert run["run_dir"] == str(job_home / "runs" / ids[1]) and run["dataset"] == "tiny.csv"
    assert RunConfig.load(Path(run["run_dir"]) / "config.yaml") == cfg(name="run1", epochs=2)
    assert st.get_run("nope") is None

    assert [r["id"] for r in st.list_runs()] == ids[::-1]
    assert [r["id"] for r in st.list_runs(limit=2)] == ids[:0:-1]
    st.set_status(ids[0], Status.failed, error="boom")
    assert [r["id"] for r in st.list_runs(status="failed")] == [ids[0]]
    assert [r["id"] for r in st.list_runs(status=["failed", "queued"])] == ids[::-1]

    assert st.find_run(ids[2])["id"] == ids[2]
    assert st.find_run(run["run_dir"])["id"] == ids[1]
    assert st.find_run("run0")["id"] == ids[0]
    # Ids made in the same second share their first 15 characters, so the prefix case uses fixed ids.
    fixed = st.create_run(cfg(), run_id="20200101-000000-abcd")
    st.create_run(cfg(), run_id="20200101-000000-abef")
    assert st.find_run("20200101-000000-abc")["id"] == fixed
    with pytest.raises(RunError, match="several runs"):
        st.find_run("20200101-000000-ab")
    with pytest.raises(RunError, match=r"^no run 'zzz'; `lepton runs` lists them$"):
        st.find_run("zzz")
    with pytest.raises(RunError, match="several runs"):
        st.find_run(ids[0][:4])
    with pytest.raises(RunError, match="already exists"):
        st.create_run(cfg(), run_id=ids[0])


def test_foreground_run_is_owned_by_this_process(job_home):
    st = get_store()
    rid = st.create_run(cfg(), status="running", run_id="fg-1")
    run = st.get_run(rid)
    assert run["status"] == "running" and run["pid"] == os.getpid() and run["started"]
    assert st.claim_next("w", 1) is None  # never handed to a worker


CLAIMER = """
import json, pathlib, sys, time
from lepton.jobs.store import get_store
st = get_store()
st.list_runs()  # connected; now wait until every claimer is, so they really do compete
barrier = pathlib.Path(sys.argv[2])
(barrier / sys.argv[1]).touch()
while len(list(barrier.iterdir())) < int(sys.argv[3]):
    time.sleep(0.01)
got = []
while True:
    r = st.claim_next(sys.argv[1], 0)
    if r is None:
        break
    got.append(r["id"])
    time.sleep(0.005)  # give the others a turn at the lock
print(json.dumps(got))
"""


def test_claim_next_is_atomic_across_processes(job_home, tmp_path):
    st = get_store()
    ids = [st.create_run(cfg(name=f"r{i}")) for i in range(20)]
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, f"w{i}", str(barrier), "4"], stdout=subprocess.PIPE,
                              text=True, env=subprocess_env()) for i in range(4)]
    claimed = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(1 for c in claimed if c) >= 2, "no contention: one process claimed everything"
    flat = [i for c in claimed for i in c]
    assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat)) == 20
    runs = {r["id"]: r for r in st.list_runs()}
    for w, got in enumerate(claimed):
        for rid in got:
            assert runs[rid]["status"] == "running" and runs[rid]["worker_id"] == f"w{w}"


def test_claim_order_is_oldest_first(job_home):
    st = get_store()
    ids = [st.create_run(cfg()) for _ in range(3)]
    assert [st.claim_next("w", 1)["id"] for _ in range(3)] == ids
    assert st.claim_next("w", 1) is None


def test_status_progress_cancel(job_home):
    st = get_store()
    rid = st.create_run(cfg())
    assert st.claim_next("w", os.getpid())["phase"] == "setup"
    st.set_progress(rid, 1.7, 12.5, "train", "epoch 1/2")
    run = st.get_run(rid)
    assert (run["progress"], run["eta_s"], run["phase"], run["message"]) == (1.0, 12.5, "train", "epoch 1/2")
    assert not st.cancel_requested(rid)
    st.request_cancel(rid)
    assert st.cancel_requested(rid)
    assert not st.set_status(rid, Status.finished, only_from=Status.queued)  # guarded: it is running
    assert st.set_status(rid, Status.finished, result={"metrics": {"accuracy": 0.9}}, only_from="running")
    run = st.get_run(rid)
    assert run["status"] == "finished" and run["finished"] >= run["started"] and run["result"]["metrics"]["accuracy"] == 0.9
    with pytest.raises(RunError):
        st.set_status("missing", Status.failed)


def test_emitter_consumes_train_events(job_home):
    st = get_store()
    rid = st.create_run(cfg())
    emit = st.emitter(rid)
    emit("progress", fraction=0.0, eta_s=None, phase="setup", message="loading data")
    for step in range(1, 31):
        emit("metrics", step=step, epoch=step / 10, split="train", values={"loss": 1 / step, "lr": 0.01, "samples_per_s": 9})
    emit("metrics", step=30, epoch=3.0, split="val", values={"accuracy": 0.75, "macro_f1": 0.7, "loss": 0.5})
    for i in range(60):
        emit("log", message=f"line {i}", level="warning" if i == 59 else "info")
    emit("checkpoint", path="/x/last.pt", epoch=3, step=30)
    emit("progress", fraction=0.5, eta_s=3.0, phase="train", message="half")
    emit("metrics", step=31, epoch=3.1, split="train", values={"loss": 0.01})  # buffered...
    emit("result", result={"run_id": rid, "status": "finished", "metrics": {"accuracy": 1.0}, "seconds": 1.0})
    emit("something-new", x=1)  # unknown kinds are ignored

    rows = st.metrics(rid)
    assert len(rows) == 30 * 3 + 3 + 1  # ...and flushed by the result: nothing lost
    assert rows[-1]["step"] == 31 and rows[-1]["name"] == "loss"
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    val = st.metrics(rid, split="val")
    assert {r["name"]: r["value"] for r in val} == {"accuracy": 0.75, "macro_f1": 0.7, "loss": 0.5}
    assert [r["step"] for r in st.metrics(rid, split="train", name="loss")] == list(range(1, 32))
    after = st.metrics(rid, after_id=rows[-3]["id"])
    assert [r["id"] for r in after] == [r["id"] for r in rows[-2:]]
    run = st.get_run(rid)
    tail = run["log_tail"].splitlines()
    assert len(tail) == 50 and tail[0].endswith("line 10") and tail[-1].endswith("WARNING: line 59")
    assert run["checkpoint"] == "/x/last.pt" and run["checkpoint_step"] == 30
    assert run["progress"] == 0.5 and run["phase"] == "train"
    assert run["result"]["metrics"]["accuracy"] == 1.0 and run["status"] == "queued"  # status is the caller's job


def test_emitter_flush_keeps_last_progress(job_home):
    st = get_store()
    rid = st.create_run(cfg())
    emit = st.emitter(rid)
    emit("progress", fraction=0.1, eta_s=9.0, phase="train", message="a")
    for f in (0.2, 0.3, 0.4):  # throttled: same phase, within the window
        emit("progress", fraction=f, eta_s=1.0, phase="train", message=f"f{f}")
    emit.flush()
    run = st.get_run(rid)
    assert run["progress"] == pytest.approx(0.4) and run["message"] == "f0.4"


def test_threads_share_one_store(job_home):
    st = get_store()
    rid = st.create_run(cfg())
    errors = []

    def work(k: int) -> None:
        try:
            for i in range(40):
                st.add_metrics(rid, [{"step": i, "epoch": 0, "split": "train", "name": f"t{k}", "value": i}])
                st.set_progress(rid, i / 40, None, "train", f"thread {k}")
                st.list_runs()
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(st.metrics(rid)) == 240


def test_datasets(job_home):
    st = get_store()
    st.record_dataset({"id": "ds1", "name": "reviews", "modality": "text", "classes": ["neg", "pos"], "created": 1.0})
    st.record_dataset({"id": "ds2", "name": "photos", "modality": "image", "classes": ["a"], "created": 2.0})
    st.record_dataset({"id": "ds1", "name": "reviews v2", "modality": "text", "classes": ["neg", "pos"], "created": 1.0})
    rows = st.list_datasets()
    assert [d["id"] for d in rows] == ["ds2", "ds1"] and rows[1]["name"] == "reviews v2"
    assert rows[1]["classes"] == ["neg", "pos"] and st.get_dataset("ds2")["modality"] == "image"
    assert st.delete_dataset("ds1") and not st.delete_dataset("ds1")
    assert [d["id"] for d in st.list_datasets()] == ["ds2"]
    with pytest.raises(RunError):
        st.record_dataset({"name": "no id"})


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_heartbeats_and_reaping(job_home):
    st = get_store()
    r_live, r_deadpid, r_stale, r_fg_live, r_fg_dead, r_queued = (st.create_run(cfg(name=n)) for n in "abcdef")
    me, dead = os.getpid(), _dead_pid()
    st.heartbeat("worker-live", me, r_live)
    st.heartbeat("worker-deadpid", dead, [r_deadpid])
    st.heartbeat("worker-stale", me, r_stale)
    for rid, w, pid in ((r_live, "worker-live", me), (r_deadpid, "worker-deadpid", dead), (r_stale, "worker-stale", me)):
        st.update_run(rid, status="running", worker_id=w, pid=pid, host=__import__("socket").gethostname())
    st.update_run(r_fg_live, status="running", pid=me, host=__import__("socket").gethostname())
    st.update_run(r_fg_dead, status="running", pid=dead, host=__import__("socket").gethostname())
    with st._write() as c:  # a heartbeat from a minute ago
        c.execute("UPDATE heartbeats SET beat_time=beat_time-60 WHERE worker_id='worker-stale'")

    live = st.live_workers(max_age_s=15)
    assert [w["worker_id"] for w in live] == ["worker-live"] and live[0]["run_ids"] == [r_live]
    assert sorted(st.reap_dead(max_age_s=15)) == sorted([r_deadpid, r_stale, r_fg_dead])
    status = {r["id"]: r["status"] for r in st.list_runs()}
    assert status == {r_live: "running", r_deadpid: "interrupted", r_stale: "interrupted",
                      r_fg_live: "running", r_fg_dead: "interrupted", r_queued: "queued"}
    assert "lepton resume" in st.get_run(r_stale)["message"]
    assert st.reap_dead() == []  # idempotent
    st.remove_heartbeat("worker-live")
    assert st.live_workers() == []
    assert st.reap_dead() == [r_live]


def test_launcher_submit_cancel_resume(job_home, job_csv, monkeypatch):
    monkeypatch.chdir(job_csv.parent)
    rid = launcher.submit(cfg(data=job_csv.name))
    st = get_store()
    assert st.get_run(rid)["config"]["data"] == str(job_csv)  # relative to the submitter, made absolute
    with pytest.raises(RunError, match="still queued"):
        launcher.resume(rid)
    assert launcher.cancel(rid)["status"] == "cancelled"
    with pytest.raises(RunError, match="already cancelled"):
        launcher.cancel(rid)
    st.update_run(rid, error="old error")
    assert launcher.resume(rid[:12]) == rid
    run = st.get_run(rid)
    assert run["status"] == "queued" and run["attempt"] == 2 and run["error"] is None
    st.claim_next("w", 1)
    run = launcher.cancel(rid)  # running: only a request, the worker does the killing
    assert run["status"] == "running" and run["cancel_requested"]
    st.set_status(rid, Status.finished)
    with pytest.raises(RunError, match="only interrupted, cancelled or failed"):
        launcher.resume(rid)
    with pytest.raises(TimeoutError):
        launcher.wait(launcher.submit(cfg()), timeout=0.3)


def test_cli_verbs(job_home, job_csv, capsys):
    assert cli_main(["submit", "--data", str(job_csv), "--backbone", "tiny-text", "--epochs", "2", "--name", "cli"]) == 0
    out = capsys.readouterr()
    rid = json.loads(out.out.strip().splitlines()[-1])["run_id"]
    assert "no worker is running" in out.err
    assert cli_main(["runs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["id"] == rid and rows[0]["backbone"] == "tiny-text" and rows[0]["status"] == "queued"
    assert cli_main(["runs"]) == 0
    table = capsys.readouterr().out
    assert rid in table and "queued" in table and "tiny-text" in table
    assert cli_main(["status", rid]) == 0
    assert "queued" in capsys.readouterr().out
    assert cli_main(["status", rid, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["epochs"] == 2
    assert cli_main(["cancel", rid]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "cancelled"
    assert cli_main(["resume", rid]) == 0
    assert json.loads(capsys.readouterr().out) == {"run_id": rid, "status": "queued"}
    assert cli_main(["runs", "--status", "finished"]) == 0
    assert capsys.readouterr().err.strip() == "no finished runs"
    # Bad input: exit code 2 and one readable line.
    for argv, msg in ((["status", "nope"], "no run 'nope'"), (["resume", rid], "still queued"),
                      (["worker", "--concurrency", "0"], "at least 1")):
        assert cli_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1


def test_cli_in_a_real_subprocess(job_home, job_csv):
    res = run_lepton("submit", "--data", str(job_csv), "--epochs", "1")
    rid = json.loads(res.stdout.strip().splitlines()[-1])["run_id"]
    assert rid in run_lepton("runs").stdout
    bad = run_lepton("cancel", "no-such-run", check=False)
    assert bad.returncode == 2 and bad.stderr.strip() == "lepton cancel: no run 'no-such-run'; `lepton runs` lists them"


def test_ensure_worker_starts_one_and_respects_running_ones(job_home):
    pids: list[int | None] = []
    threads = [threading.Thread(target=lambda: pids.append(launcher.ensure_worker())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = [p for p in pids if p]
    try:
        assert len(started) == 1, pids  # three dashboards, one worker
        assert launcher.worker_alive()
        wait_for(lambda: get_store().live_workers(), 20, what="the worker's first heartbeat")
        (job_home / "worker.pid").unlink(missing_ok=True)  # as if started by hand: the heartbeat is enough
        assert launcher.worker_alive() and launcher.ensure_worker() is None
    finally:
        for p in started:
            os.kill(p, signal.SIGTERM)
    wait_for(lambda: not get_store().live_workers(), 15, what="the worker to stop and remove its heartbeat")
    assert not launcher.worker_alive()
    assert "worker" in (job_home / "logs" / "worker.log").read_text()


def test_foreground_cli_heartbeat_is_not_a_worker(job_home):
    get_store().heartbeat("cli-20261130-000000-abcd", os.getpid(), "20261130-000000-abcd")
    assert not launcher.worker_alive()


def test_worker_once_exits_on_empty_queue(job_home, spawn_worker):
    p = spawn_worker("--once", "--poll", "0.2")
    assert p.wait(timeout=30) == 0
    assert get_store().live_workers() == []
    assert "queue empty" in (job_home / "logs" / "worker.log").read_text()


def test_schema_4_files_gain_where_runs_execute(job_home, job_csv):
    """A database from before executors (schema 4) opens: its runs and heartbeats gain the new columns, empty."""
    import sqlite3

    st = get_store()
    rid = st.create_run(RunConfig(data=str(job_csv)))
    path = st.path
    st.close()
    db = sqlite3.connect(path)
    for table, col in (("runs", "executor"), ("runs", "node"), ("heartbeats", "executor"), ("heartbeats", "resources")):
        db.execute(f"ALTER TABLE {table} DROP COLUMN {col}")
    db.execute("PRAGMA user_version=4")
    db.commit()
    db.close()
    again = Store(path)
    assert again.pragma("user_version") == SCHEMA_VERSION
    assert again.get_run(rid)["executor"] is None
    again.update_run(rid, executor="ray", node="n1:abc")
    again.heartbeat("w", 1, [rid], executor="ray", resources={"nodes": 2, "cpus": [1.0, 2.0], "gpus": [0.0, 0.0]})
    assert again.get_run(rid)["node"] == "n1:abc"
    row = again._read("SELECT executor, resources FROM heartbeats WHERE worker_id='w'")[0]
    assert row["executor"] == "ray" and json.loads(row["resources"])["cpus"] == [1.0, 2.0]
