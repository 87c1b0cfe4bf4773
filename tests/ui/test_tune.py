"""The Tune page under AppTest: a study started from the form, and a finished study's view (trials, figures, links)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_apptest import REPO, app, ingest, lhome, ok, texts, write_csv  # noqa: F401


def test_tune_page_starts_a_study_from_the_form(lhome, tmp_path):
    from lepton.jobs.store import get_store

    res = ingest(write_csv(tmp_path / "t.csv"))
    at = ok(app("pages/tune.py"))
    assert "No studies yet" in texts(at)
    at.radio(key="tune_strategy").set_value("tpe").run()
    at.number_input(key="study_budget_minutes").set_value(2.0).run()
    ok(at)
    cmd = next(c.value for c in at.code if c.value.startswith("lepton tune"))
    assert f"--data {res.dataset.id}" in cmd and "--strategy tpe" in cmd and "--budget-minutes 2.0" in cmd
    at.button(key="tune_start").click().run()
    ok(at)
    (study,) = get_store().list_studies()
    assert study["status"] == "queued" and study["strategy"] == "tpe" and study["config"]["budget_minutes"] == 2.0
    assert at.query_params.get("study") == study["id"]


def test_tune_page_shows_a_finished_study_and_refuses_an_unknown_one(lhome, tmp_path):
    data = write_csv(tmp_path / "s.csv", n=48)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "lepton", "tune", "--data", str(data), "--backbone", "tiny-text",
                          "--strategy", "random", "--budget-minutes", "0.6", "--max-trials", "3"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=str(REPO))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    at = ok(app("pages/tune.py", study=result["study_id"]))
    assert at.selectbox(key="tune_pick").value == result["study_id"]
    table = at.dataframe[0].value
    assert len(table) == result["trials"] and set(table["status"]) <= {"finished", "failed"}
    assert "Best trial (chosen on validation)" in [m.label for m in at.metric]
    assert len(at.get("plotly_chart")) == 3  # best so far, parallel coordinates, importance
    at.button(key=f"open_{result['study_id']}").click().run()
    assert at.query_params.get("run") == result["best"]["run_id"]  # went to the best run
    at = ok(app("pages/tune.py", study="s-nope"))
    assert "Not found among the studies you can see" in texts(at)
