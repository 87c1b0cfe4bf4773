"""The Compare and Transfer pages, and the run page's evaluation widgets, under AppTest.

Real tiny runs are made once with `python -m lepton train ... --backbone tiny-text` in a temp
LEPTON_HOME: two cold runs on one dataset and a warm start (`--from`) on a second one.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from tiny_data import train_tiny_run, write_word_csv
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 90


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp-ui")
    home = root / "home"
    words = {"pos": ["great", "lovely", "superb"], "neg": ["awful", "poor", "dreadful"]}
    src = write_word_csv(root / "reviews.csv", words, "the film {i} was {word}, really {word}", 40)
    tgt = write_word_csv(root / "hotels.csv", words, "our hotel stay was {word} and the room {word}", 32)
    env = dict(os.environ, LEPTON_HOME=str(home), PYTHONPATH=str(REPO))
    a = train_tiny_run(env, "--data", str(src), "--adapter", "full", "--epochs", "2", "--name", "alpha")
    b = train_tiny_run(env, "--data", str(src), "--adapter", "lora", "--epochs", "3", "--lr", "0.003", "--name", "beta")
    c = train_tiny_run(env, "--data", str(tgt), "--from", a, "--adapter", "full", "--epochs", "1", "--name", "gamma")
    return {"home": home, "a": a, "b": b, "c": c}


@pytest.fixture
def lhome(world, monkeypatch):
    monkeypatch.setenv("LEPTON_HOME", str(world["home"]))
    monkeypatch.setenv("LEPTON_NO_WORKER", "1")
    monkeypatch.chdir(REPO)
    return world


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    kinds = ("markdown", "caption", "success", "info", "warning", "error", "title", "subheader")
    return "\n".join(str(e.value) for k in kinds for e in getattr(at, k))


def open_page(page: str, **query: str) -> AppTest:
    """Through app.py's router when the page is in the navigation, else the page file itself."""
    from lepton.ui import frame

    routed = any(p[0] == page for p in frame.PAGES)
    at = AppTest.from_file(str(REPO / ("app.py" if routed else page)), default_timeout=TIMEOUT)
    if routed:
        ok(at.run())
        at.switch_page(page)
    at.query_params.update(query)
    return ok(at.run())


def charts(at: AppTest) -> list:
    return at.get("plotly_chart")


def figure(el) -> dict:
    return json.loads(el.proto.spec)


# ---------------------------------------------------------------- compare
def test_compare_page_from_a_shared_url(lhome):
    a, b = lhome["a"], lhome["b"]
    at = open_page("pages/compare.py", runs=f"{a},{b}", metric="val/macro_f1", x="step")
    assert at.multiselect(key="cmp_runs").value == [a, b]
    assert at.selectbox(key="cmp_metric").value == "val/macro_f1"
    curves = figure(charts(at)[0])
    assert {t["name"] for t in curves["data"]} == {"alpha", "beta"}
    assert [len(t["x"]) for t in curves["data"]] == [2, 3]  # two and three validation points
    assert curves["layout"]["xaxis"]["title"]["text"] == "step"
    table, diff = at.dataframe[0].value, at.dataframe[1].value
    assert list(table["run"]) == ["alpha", "beta"] and (table["best"] == "★").sum() == 1
    assert list(table["model"]) == ["tiny-text + full", "tiny-text + lora"]
    assert set(diff["field"]) >= {"adapter", "epochs", "lr", "name"} and "data" not in set(diff["field"])
    per_class = figure(charts(at)[1])
    assert {t["name"] for t in per_class["data"]} == {"alpha", "beta"}


def test_compare_page_controls_update_the_url(lhome):
    at = open_page("pages/compare.py")
    assert len(at.multiselect(key="cmp_runs").value) == 2  # the two newest finished runs by default
    at.selectbox(key="cmp_metric").set_value("train/loss").run()
    ok(at)
    at.query_params  # noqa: B018
    assert at.query_params["metric"] == ["train/loss"] or at.query_params["metric"] == "train/loss"
    figure_after = figure(charts(at)[0])
    assert "train/loss" in figure_after["layout"]["title"]["text"]
    at.multiselect(key="cmp_runs").set_value([lhome["a"]]).run()
    assert "Pick at least one more run" in texts(ok(at))


# ---------------------------------------------------------------- transfer
def test_transfer_page_matrix_and_forgetting(lhome):
    from lepton.jobs.store import get_store

    at = open_page("pages/transfer.py")
    fig = figure(charts(at)[0])
    heat = fig["data"][0]
    assert len(heat["y"]) == 3 and len(heat["x"]) == 2  # three runs, two datasets
    assert any("(from alpha)" in y for y in fig["layout"]["yaxis"]["ticktext"])
    assert "Forgetting" in texts(at)
    btn = next(b for b in at.button if b.label.startswith("Measure forgetting"))
    btn.click().run()
    ok(at)
    evals = get_store().evaluations(run_id=lhome["c"])
    assert len(evals) == 1 and evals[0]["split"] == "test"
    forgetting = at.dataframe[0].value
    assert forgetting["after"].notna().all()


def test_transfer_page_evaluate_button_stores(lhome):
    from lepton.jobs.store import get_store

    n0 = len(get_store().evaluations(run_id=lhome["b"]))
    at = open_page("pages/transfer.py")
    at.selectbox(key="tr_run").set_value(lhome["b"]).run()
    at.button(key="tr_page_go").click().run()
    ok(at)
    assert len(get_store().evaluations(run_id=lhome["b"])) == n0 + 1


# ---------------------------------------------------------------- the run page's widgets
def _report_app(run_id: str, section: str) -> AppTest:
    def script(run_id: str, section: str) -> None:
        import json as _json
        from pathlib import Path as _Path

        from lepton.jobs.store import get_store
        from lepton.ui import report as report_ui, transfer as transfer_ui

        run = get_store().get_run(run_id)
        rep = _json.loads((_Path(run["run_dir"]) / "report.json").read_text())
        if section == "report":
            report_ui.run_report(run, rep)
        else:
            transfer_ui.run_section(run)

    at = AppTest.from_function(script, args=(run_id, section), default_timeout=TIMEOUT)
    return ok(at.run())


def _open_tab(at: AppTest, name: str) -> AppTest:
    at.session_state["rep_tabs"] = name  # what a click on the tab sets: the tabs rerun the page (lazy)
    return ok(at.run())


def test_run_report_widgets(lhome):
    at = _report_app(lhome["a"], "report")
    # Only the open tab is built: the first one's figure and metrics, none of the others'.
    titles = [figure(c)["layout"]["title"]["text"] for c in charts(at)]
    assert len(titles) == 1 and titles[0].startswith("Per-class F1")
    assert {"Pretrained macro-F1", "Fine-tuned macro-F1", "Fixed by fine-tuning",
            "Broken by fine-tuning"} <= {m.label for m in at.metric}
    assert "Expected calibration error" not in {m.label for m in at.metric} and not at.get("download_button")
    titles = [figure(c)["layout"]["title"]["text"] for c in charts(_open_tab(at, "Calibration"))]
    assert len(titles) == 1 and titles[0].startswith("Reliability (ECE")
    assert "Expected calibration error" in {m.label for m in at.metric}
    titles = [figure(c)["layout"]["title"]["text"] for c in charts(_open_tab(at, "Embedding map"))]
    assert [t.split(":")[0] for t in titles] == ["Before", "After"]
    # The embedding map's projection switches to t-SNE, computed from the run's stored features.
    at.button_group(key="rep_emb_method").set_value("t-SNE").run()
    maps = [figure(c) for c in charts(ok(at)) if figure(c)["layout"]["title"]["text"].startswith(("Before", "After"))]
    assert len(maps) == 2 and all(f["layout"]["xaxis"]["title"]["text"] == "t-SNE 1" for f in maps)
    assert "t-SNE of the test features" in texts(at)
    # The mistakes browser filters by true and predicted label.
    view = _open_tab(at, "Mistakes").selectbox(key=f"mis_view_{lhome['a']}")
    view.set_value("all").run()
    n_all = len(ok(at).get("expandable")) or texts(at).count("true **")
    at.selectbox(key=f"mis_true_{lhome['a']}").set_value("pos").run()
    assert "true **neg**" not in texts(ok(at))
    assert texts(at).count("true **pos**") <= n_all
    assert len(_open_tab(at, "Downloads").get("download_button")) == 2


def test_run_transfer_section(lhome):
    at = _report_app(lhome["c"], "transfer")
    assert "Transfer" in texts(at)
    heat = figure(charts(at)[0])["data"][0]
    assert len(heat["y"]) == 2  # the warm-started run and its source
    at.button(key=f"tr_run_{lhome['c']}_go").click().run()
    ok(at)


# ---------------------------------------------------------------- train: continue from a run (last: it queues a run)
def test_train_page_continue_from_run(lhome):
    from lepton.data import list_datasets
    from lepton.jobs.store import get_store

    ds = next(d for d in list_datasets() if d["name"] == "hotels")
    at = open_page("pages/train.py", dataset=ds["id"])
    at.selectbox(key="train_backbone_text").set_value("tiny-text").run()
    sel = ok(at).selectbox(key="cfg_from_run")
    assert sel.value is None and len(sel.options) == 4  # none + the three finished tiny-text runs
    sel.set_value(lhome["a"]).run()
    assert "--from-run " + lhome["a"] in ok(at).code[0].value
    at.button(key="start").click().run()
    queued = get_store().list_runs(status="queued")
    assert len(queued) == 1 and queued[0]["config"]["from_run"] == lhome["a"]


@pytest.mark.parametrize("modality", ["image", "audio"])
def test_mistakes_browser_shows_files(tmp_path, monkeypatch, modality):
    """Images as thumbnails and clips as players, read from the stored dataset via predictions.csv."""
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_data import write_audio_folder, write_image_folder

    monkeypatch.setenv("LEPTON_HOME", str(tmp_path / "home"))
    from lepton.config import RunConfig
    from lepton.train import run

    data = (write_image_folder if modality == "image" else write_audio_folder)(tmp_path / modality)
    res = run(RunConfig(data=str(data), backbone=f"tiny-{modality}", adapter="linear-probe", epochs=2))
    def script(run_dir: str) -> None:
        import json as _json
        from pathlib import Path as _Path

        from lepton.ui import report as report_ui

        rep = _json.loads((_Path(run_dir) / "report.json").read_text())
        report_ui.misclassified_section("r", _Path(run_dir), rep)

    at = AppTest.from_function(script, args=(res["run_dir"],), default_timeout=TIMEOUT)
    at.run()
    at.selectbox(key="mis_view_r").set_value("all").run()
    ok(at)
    shown = at.get("image") if modality == "image" else at.get("audio")
    assert len(shown) >= 1, texts(at)
    assert "file not available" not in texts(at)


def test_a_finished_runs_page_draws_its_secondary_curves_when_asked(lhome):
    run_id = lhome["a"]
    at = open_page("pages/runs.py", run=run_id)
    titles = lambda: [figure(c)["layout"]["title"]["text"] for c in charts(at)]  # noqa: E731
    assert "Training loss" in titles() and "Learning rate" not in titles()
    at.session_state[f"more_curves_{run_id}"] = True  # what opening the expander sets
    ok(at.run())
    assert {"Training loss", "Learning rate", "Throughput (samples/s)"} <= set(titles())
