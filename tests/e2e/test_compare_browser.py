"""Compare, Transfer and a run's evaluation tabs in a real Chromium against `streamlit run app.py`.

Three tiny runs are trained with the CLI first (two on one dataset, a warm start on another), then
the browser opens the shareable Compare URL, the Transfer page and one run's page. Screenshots go
to artifacts/e2e/{compare,transfer,run_report}.png.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from tiny_data import train_tiny_run, write_word_csv
from browser_kit import ART, app_env, goto, idle, no_errors, shot, streamlit_app

pytestmark = pytest.mark.e2e

TRACES_JS = """(sel) => { const el = document.querySelector(sel + ' .js-plotly-plot');
  return el && el.data ? el.data.map(t => ({name: t.name, n: t.x ? t.x.length : 0})) : null; }"""


WORDS = {"pos": ["great", "lovely", "superb", "brilliant"], "neg": ["awful", "poor", "dreadful", "miserable"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e-compare")
    home = root / "home"
    env = app_env(home, LEPTON_NO_WORKER="1")
    src = write_word_csv(root / "film_reviews.csv", WORDS, "the film {i} was {word}, really {word}", 48)
    tgt = write_word_csv(root / "hotel_reviews.csv", WORDS, "our stay at hotel {i} was {word} and the room {word}", 32)
    runs = {"a": train_tiny_run(env, "--data", str(src), "--adapter", "full", "--epochs", "3", "--name", "full fine-tune"),
            "b": train_tiny_run(env, "--data", str(src), "--adapter", "lora", "--epochs", "4", "--lr", "0.003",
                        "--name", "lora r8")}
    runs["c"] = train_tiny_run(env, "--data", str(tgt), "--from", runs["a"], "--epochs", "2", "--name", "hotels warm start")
    with streamlit_app(env, root / "streamlit.log") as url:
        yield SimpleNamespace(url=url, home=home, runs=runs)


def test_compare_two_runs_from_a_shared_url(server, page):
    a, b = server.runs["a"], server.runs["b"]
    goto(page, server, f"/compare?runs={a},{b}&metric=val/macro_f1&x=epoch")
    page.locator(".st-key-cmp-curves .js-plotly-plot").wait_for()
    idle(page)
    no_errors(page)
    traces = page.evaluate(TRACES_JS, ".st-key-cmp-curves")
    assert {t["name"] for t in traces} == {"full fine-tune", "lora r8"}
    assert sorted(t["n"] for t in traces) == [3, 4]  # validation points per epoch of each run
    assert page.locator(".st-key-cmp-table [data-testid='stDataFrame']").count() == 1
    assert page.locator(".st-key-cmp-diff [data-testid='stDataFrame']").count() == 1
    assert page.locator(".st-key-cmp-per-class .js-plotly-plot").count() == 1
    assert "runs=" in page.url and "metric=val" in page.url
    shot(page, "compare")
    # Another x axis from the segmented control updates the URL (shareable) and the chart.
    page.locator(".st-key-cmp_x button").filter(has_text="step").first.click()
    idle(page)
    page.wait_for_function("() => location.search.includes('x=step')", timeout=20_000)
    layout_x = page.evaluate("() => document.querySelector('.st-key-cmp-curves .js-plotly-plot').layout.xaxis.title.text")
    assert layout_x == "step"


def test_transfer_page_and_run_report(server, page):
    goto(page, server, "/transfer")
    page.locator(".st-key-tr-matrix .js-plotly-plot").wait_for()
    no_errors(page)
    heat = page.evaluate("() => document.querySelector('.st-key-tr-matrix .js-plotly-plot').data[0]")
    assert len(heat["y"]) == 3 and len(heat["x"]) == 2
    page.get_by_role("button", name="Measure forgetting (1 run)").click()
    idle(page, 120)
    no_errors(page)
    shot(page, "transfer")
    goto(page, server, f"/runs?run={server.runs['a']}")
    section = page.locator(".st-key-evaluation")
    section.wait_for()
    section.locator(".js-plotly-plot").first.wait_for()  # drawn a moment after the section, on a busy machine
    idle(page)
    no_errors(page)
    for tab, name in (("Pretrained vs fine-tuned", "run_report"), ("Embedding map", "run_report_embeddings"),
                      ("Calibration", "run_report_calibration"), ("Mistakes", "run_report_mistakes")):
        page.get_by_role("tab", name=tab).click()
        idle(page)
        time.sleep(2.0)
        section.screenshot(path=str(ART / f"{name}.png"))
    # The embedding map as t-SNE: computed on the page from the run's stored test features.
    page.get_by_role("tab", name="Embedding map").click()
    page.locator(".st-key-rep_emb_method button").filter(has_text="t-SNE").first.click()
    page.get_by_text("t-SNE of the test features").wait_for()
    section.locator(".js-plotly-plot text", has_text="t-SNE 1").first.wait_for()
    idle(page)
    no_errors(page)
    time.sleep(2.0)
    section.screenshot(path=str(ART / "run_report_embeddings_tsne.png"))
    transfer = page.locator(".st-key-transfer")
    transfer.wait_for()
    transfer.screenshot(path=str(ART / "run_transfer.png"))
    # A finished run draws its learning-rate and throughput charts when their expander is opened.
    assert page.locator(".st-key-chart-lr").count() == 0
    page.get_by_text("Learning rate and throughput").click()
    page.locator(".st-key-chart-lr .js-plotly-plot").wait_for()
    page.locator(".st-key-chart-speed .js-plotly-plot").wait_for()
    idle(page)
    no_errors(page)
