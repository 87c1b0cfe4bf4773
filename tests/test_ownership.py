"""Ownership in the job store and the CLI: owners on runs and datasets, sharing, and lookups that treat
someone else's private run exactly like one that does not exist."""

from __future__ import annotations

import json
import sqlite3

import pytest

from job_fixtures import job_csv, job_home  # noqa: F401
from lepton import auth
from lepton.auth import User
from lepton.cli import main as cli_main
from lepton.config import RunConfig
from lepton.errors import RunError
from lepton.jobs import launcher
from lepton.jobs.store import SCHEMA_VERSION, Store, get_store

ALICE = User(id="alice@example.com", name="Alice", signed_in=True)
BOB = User(id="bob@example.com", name="Bob", signed_in=True)
ADMIN = User(id="root@example.com", name="Root", admin=True, signed_in=True)


def cfg(**kw) -> RunConfig:
    return RunConfig(**{"data": "tiny.csv", "backbone": "tiny-text", "adapter": "full", "epochs": 1, **kw})


@pytest.fixture
def runs(job_home):
    st = get_store()
    ids = {"alice": st.create_run(cfg(name="alice private"), owner=ALICE.id),
           "alice_shared": st.create_run(cfg(name="alice shared"), owner=ALICE.id, shared=1),
           "bob": st.create_run(cfg(name="bob private"), owner=BOB.id),
           "nobody": st.create_run(cfg(name="from before ownership"))}
    return st, ids


def test_list_runs_shows_own_shared_and_for_admins_everything(runs):
    st, ids = runs
    names = lambda user, **kw: {r["name"] for r in st.list_runs(viewer=user, **kw)}  # noqa: E731
    assert names(ALICE) == {"alice private", "alice shared"}
    assert names(BOB) == {"alice shared", "bob private"}
    assert names(ADMIN) == names(None) == {"alice private", "alice shared", "bob private", "from before ownership"}
    assert names(BOB, status="queued", limit=1) == {"bob private"}  # the filter comes before the limit


@pytest.mark.parametrize("how", ["id", "prefix", "name"])
def test_someone_elses_private_run_is_not_found_like_a_missing_one(runs, how):
    st, ids = runs
    # A prefix of Alice's id no other run's id starts with (ids made in one second share most of theirs).
    prefix = next(ids["alice"][:n] for n in range(9, 21)
                  if not any(v.startswith(ids["alice"][:n]) for k, v in ids.items() if k != "alice"))
    ref = {"id": ids["alice"], "prefix": prefix, "name": "alice private"}[how]
    with pytest.raises(RunError) as private:
        st.find_run(ref, viewer=BOB)
    with pytest.raises(RunError) as missing:
        st.find_run("no-such-run", viewer=BOB)
    assert str(private.value) == str(missing.value).replace("no-such-run", ref)
    assert st.find_run(ref, viewer=ALICE)["id"] == ids["alice"]
    assert st.find_run(ref, viewer=ADMIN)["id"] == ids["alice"]


def test_an_ambiguous_prefix_never_lists_runs_the_viewer_cannot_see(runs):
    st, ids = runs
    common = ids["bob"][:9]  # the date part: every run made in this test shares it
    with pytest.raises(RunError) as err:
        st.find_run(common, viewer=BOB)
    assert ids["alice"] not in str(err.value) and ids["nobody"] not in str(err.value)


def test_a_viewer_cannot_reach_a_run_by_its_folder(runs):
    st, ids = runs
    folder = st.get_run(ids["alice"])["run_dir"]
    assert st.find_run(folder)["id"] == ids["alice"]  # the CLI may (it can read the folder anyway)
    with pytest.raises(RunError):
        st.find_run(folder, viewer=ALICE)  # the dashboard never resolves server paths


def test_sharing_a_run(runs):
    st, ids = runs
    assert st.set_shared("runs", ids["bob"], True)
    assert st.find_run(ids["bob"], viewer=ALICE)["shared"] == 1
    st.set_shared("runs", ids["bob"], False)
    with pytest.raises(RunError):
        st.find_run(ids["bob"], viewer=ALICE)
    assert not st.set_shared("runs", "no-such-run", True)
    with pytest.raises(ValueError):
        st.set_shared("metrics", ids["bob"], True)
    with pytest.raises(ValueError):
        st.set_shared("datasets", "d1", True)  # whose upload? a dataset is shared through an owner's link


def test_datasets_are_owned_per_upload_and_shared_per_owner(job_home):
    st = get_store()
    st.record_dataset({"id": "d1", "name": "complaints", "modality": "text"})
    assert st.add_dataset_owner("d1", ALICE.id, "complaints")
    assert not st.add_dataset_owner("d1", ALICE.id, "renamed")  # a second upload by Alice changes nothing
    assert st.add_dataset_owner("d1", BOB.id, "my data")
    owners = st.dataset_owners()["d1"]
    assert owners["owner"] == ALICE.id and [(l["owner"], l["name"]) for l in owners["links"]] == [
        (ALICE.id, "complaints"), (BOB.id, "my data")]
    # Re-ingesting the same content records the manifest again: owner and sharing survive it.
    st.set_shared("datasets", "d1", True, owner=BOB.id)
    st.record_dataset({"id": "d1", "name": "complaints", "modality": "text"})
    row = sqlite3.connect(st.path).execute("SELECT owner, shared FROM datasets WHERE id='d1'").fetchone()
    assert row == (ALICE.id, 1)
    assert [l["shared"] for l in st.dataset_owners()["d1"]["links"]] == [False, True]
    # Bob removes his upload: no one shares it any more; Alice still has hers.
    assert st.remove_dataset_owner("d1", BOB.id) == 1
    assert sqlite3.connect(st.path).execute("SELECT shared FROM datasets WHERE id='d1'").fetchone() == (0,)
    assert st.remove_dataset_owner("d1", ALICE.id) == 0
    # An admin may share a dataset nobody owns (one made before ownership): it becomes theirs to share.
    st.record_dataset({"id": "d2", "name": "legacy", "modality": "text"})
    assert st.set_shared("datasets", "d2", True, owner=ADMIN.id)
    assert auth.visible_dataset_ids(BOB, st.dataset_owners()) == {"d2"}
    st.delete_dataset("d2")
    assert "d2" not in st.dataset_owners()


def test_schema_3_files_gain_dataset_owners(job_home):
    st = get_store()
    st.record_dataset({"id": "d1", "name": "old", "modality": "text"})
    path = st.path
    st.close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE dataset_owners")
    db.execute("PRAGMA user_version=3")
    db.commit()
    db.close()
    again = Store(path)
    assert again.pragma("user_version") == SCHEMA_VERSION
    assert again.add_dataset_owner("d1", ALICE.id, "old") and again.dataset_owners()["d1"]["owner"] == ALICE.id


def test_launcher_submit_records_the_owner(job_home):
    rid = launcher.submit(cfg(), owner=BOB.id)
    assert get_store().get_run(rid)["owner"] == BOB.id
    get_store().set_status(rid, "failed", error="x")
    launcher.resume(rid)  # the same row again: the owner stays
    assert get_store().get_run(rid)["owner"] == BOB.id


def test_cli_owns_as_the_local_user_or_lepton_user_and_shares(job_home, job_csv, capsys, monkeypatch):
    monkeypatch.delenv(auth.ENV_USER, raising=False)
    assert cli_main(["submit", "--data", str(job_csv), "--epochs", "1"]) == 0
    mine = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    monkeypatch.setenv(auth.ENV_USER, "Alice@Example.com")
    assert cli_main(["submit", "--data", str(job_csv), "--epochs", "1", "--name", "for alice"]) == 0
    theirs = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    st = get_store()
    assert st.get_run(mine)["owner"] == auth.local_user().id and st.get_run(theirs)["owner"] == ALICE.id
    # The CLI is the operator: it lists every run, with owner and sharing in --json.
    assert cli_main(["runs", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[theirs]["owner"] == ALICE.id and rows[theirs]["shared"] is False and mine in rows
    assert cli_main(["share", "run", "for alice"]) == 0
    assert json.loads(capsys.readouterr().out) == {"kind": "run", "id": theirs, "shared": True}
    assert st.find_run(theirs, viewer=BOB)["id"] == theirs
    assert cli_main(["status", theirs]) == 0
    assert "alice@example.com, shared with everyone" in capsys.readouterr().out
    assert cli_main(["share", "run", theirs, "--off"]) == 0
    assert st.get_run(theirs)["shared"] == 0
    capsys.readouterr()
    # `lepton ingest` makes LEPTON_USER an owner of the dataset; `share dataset` shares their upload.
    assert cli_main(["ingest", str(job_csv), "--name", "tiny reviews"]) == 0
    ds_id = json.loads(capsys.readouterr().out)["id"]
    (link,) = st.dataset_owners()[ds_id]["links"]
    assert (link["owner"], link["name"]) == (ALICE.id, "tiny reviews")
    assert cli_main(["share", "dataset", ds_id[:8]]) == 0
    assert auth.visible_dataset_ids(BOB, st.dataset_owners()) == {ds_id}
    capsys.readouterr()
    for argv, msg in ((["share", "dataset", str(job_csv)], "is a path: give the dataset id"),
                      (["share", "run", "no-such-run"], "no run 'no-such-run'"),
                      (["share", "dataset", "ffffffff"], "no dataset or file")):
        assert cli_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1, err


def test_transfer_matrix_shows_a_viewer_only_what_they_may_see(job_home):
    from lepton.transfer import transfer_matrix

    st = get_store()
    for ds, owner in (("dA", ALICE.id), ("dB", BOB.id)):
        st.record_dataset({"id": ds, "name": f"{ds} name", "modality": "text"})
        st.add_dataset_owner(ds, owner, f"{ds} name")

    def finished(name: str, owner: str, ds: str, shared: int = 0, from_run: str | None = None) -> str:
        rid = st.create_run(cfg(name=name, data=ds, from_run=from_run), status="finished", owner=owner, shared=shared)
        run_dir = st.get_run(rid)["run_dir"]
        with open(f"{run_dir}/report.json", "w") as f:
            json.dump({"dataset": ds, "dataset_name": f"{ds} name", "split": "test", "macro_f1": 0.9}, f)
        return rid

    a_private = finished("a private", ALICE.id, "dA")
    b_shared = finished("b shared", BOB.id, "dB", shared=1, from_run=a_private)  # warm-started from Alice's private run
    st.add_evaluation(b_shared, "dB", {"macro_f1": 0.5, "dataset_name": "dB name"}, "all")
    st.add_evaluation(b_shared, "dA", {"macro_f1": 0.7, "dataset_name": "dA name"}, "test")
    m = transfer_matrix([b_shared], viewer=BOB)
    assert [r["id"] for r in m["runs"]] == [b_shared]  # the private source is not a row for Bob
    assert set(m["cells"][b_shared]) == {"dB"} and not m["forgetting"]  # nor is a score on Alice's dataset
    m = transfer_matrix(None, viewer=ALICE)
    assert {r["id"] for r in m["runs"]} == {a_private, b_shared}
    assert set(m["cells"][b_shared]) == {"dB", "dA"} and b_shared in m["forgetting"]
    assert {r["id"] for r in transfer_matrix(None, viewer=ADMIN)["runs"]} == {a_private, b_shared}
