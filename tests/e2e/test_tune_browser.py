"""The Tune page in a real Chromium: a study started from the form runs in the dashboard's worker, its
trials appear live, and the finished study links to its best run. Screenshots: artifacts/e2e/tune_*.png."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from tiny_data import write_word_csv
from browser_kit import app_env, goto, idle, no_errors, shot, streamlit_app

pytestmark = pytest.mark.e2e

WORDS = {"pos": ["great", "lovely", "superb", "brilliant"], "neg": ["awful", "poor", "dreadful", "miserable"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e-tune")
    home = root / "home"
    env = app_env(home)  # the dashboard starts its worker: the study really runs
    data = write_word_csv(root / "reviews.csv", WORDS, "the film {i} was {word}, really {word}", 64)
    from lepton.data import ingest
    import os

    os.environ["LEPTON_HOME"] = str(home)
    ds = ingest(data).dataset
    with streamlit_app(env, root / "streamlit.log") as url:
        yield SimpleNamespace(url=url, home=home, dataset=ds.id)


def test_a_study_started_in_the_browser_runs_and_links_its_best_run(server, page):
    goto(page, server, "/tune")
    page.get_by_text("Optuna TPE").click()
    idle(page)
    budget = page.locator(".st-key-study_budget_minutes input")
    budget.fill("0.75")
    budget.press("Enter")
    idle(page)
    trials = page.locator(".st-key-study_max_trials input")
    trials.fill("2")
    trials.press("Enter")
    idle(page)
    shot(page, "tune_01_form")
    page.locator(".st-key-tune_start button").click()
    idle(page)
    page.wait_for_function("() => location.search.includes('study=')", timeout=20_000)
    # Live: the first trial shows up in the table while the study runs.
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=120_000)
    shot(page, "tune_02_running")
    deadline = time.monotonic() + 240
    while page.get_by_text("Best trial (chosen on validation)").count() == 0:
        assert time.monotonic() < deadline, "the study did not finish in time"
        time.sleep(2)
    idle(page)
    no_errors(page)
    assert page.locator(".js-plotly-plot").count() >= 3
    shot(page, "tune_03_finished")
    page.get_by_role("button", name="Open best run").click()
    idle(page)
    page.wait_for_function("() => location.pathname.endsWith('/runs') && location.search.includes('run=')",
                           timeout=20_000)
    shot(page, "tune_04_best_run")
