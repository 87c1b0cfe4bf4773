"""Every dashboard page under streamlit's AppTest, against a temporary LEPTON_HOME.

No worker runs here (LEPTON_NO_WORKER): submitted runs stay queued unless a test trains one with
the CLI. st.fragment(run_every=…) does not tick in AppTest, so live views are driven with at.run().
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "assets" / "demo"
TIMEOUT = 90


@pytest.fixture
def lhome(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "lepton-home"
    h.mkdir()
    monkeypatch.setenv("LEPTON_HOME", str(h))
    monkeypatch.setenv("LEPTON_NO_WORKER", "1")
    monkeypatch.chdir(REPO)
    return h


def write_csv(path: Path, n: int = 40, text_col: str = "text", label_col: str = "label", labels=("pos", "neg")) -> Path:
    pos = ["great", "lovely", "superb", "brilliant"]
    neg = ["awful", "dreadful", "poor", "miserable"]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", text_col, label_col])
        for i in range(n):
            good = i % len(labels) == 0
            word = (pos if good else neg)[i // 2 % 4]
            w.writerow([i, f"item {i} was {word}, truly {word}", labels[i % len(labels)]])
    return path


def app(page: str | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page:
        at.switch_page(page)
    at.query_params.update(query)
    return at.run()


def settle(at: AppTest) -> AppTest:
    """One more run after an action that called st.rerun/st.switch_page.

    AppTest resets Streamlit's legacy pages/-folder mode before every run, so the run after a
    script-triggered rerun computes different widget ids than the rerun did; interacting with a
    widget from that tree would be lost. A real server stays in one mode, so this is test-only.
    """
    return ok(at.run())


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "success", "info", "warning", "error", "title", "subheader")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def ingest(path: Path):
    from lepton.ui import data as data_ui

    return data_ui.ingest_file(path)


def submit(data_id: str, **kw) -> str:
    from lepton.config import RunConfig
    from lepton.jobs import launcher

    return launcher.submit(RunConfig(data=data_id, **kw))


def train_cli(data: str | Path, backbone: str = "tiny-text") -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-m", "lepton", "train", "--data", str(data), "--backbone", backbone,
                          "--adapter", "full", "--epochs", "1", "--batch-size", "8"],
                         capture_output=True, text=True, timeout=240, env=env, cwd=str(REPO))
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])["run_id"]


# ---------------------------------------------------------------- every page renders
@pytest.mark.parametrize("page", [None, "pages/data.py", "pages/train.py", "pages/runs.py", "pages/playground.py"])
def test_every_page_renders_on_an_empty_home(lhome, page):
    at = ok(app(page))
    assert "Lepton" in texts(at) or at.title  # sidebar frame
    # Empty states say what to do next instead of showing nothing.
    if page in ("pages/train.py",):
        assert "No datasets yet" in texts(at)
    if page == "pages/runs.py":
        assert "No runs yet" in texts(at)
    if page == "pages/playground.py":
        assert "No finished runs yet" in texts(at)


def test_home_shows_one_demo_button_per_bundled_dataset(lhome):
    at = ok(app())
    n = sum((DEMO / f).exists() for f in ("topics.csv", "shapes.zip", "spoken_words.zip"))
    assert len([b for b in at.button if b.label == "Train the demo"]) == n


@pytest.mark.skipif(not (DEMO / "topics.csv").exists(), reason="text demo not bundled")
def test_home_text_demo_ingests_and_queues_a_run(lhome):
    from lepton.jobs.store import get_store

    at = ok(app())
    at.button(key="demo_text").click().run()
    ok(at)
    runs = get_store().list_runs()
    assert len(runs) == 1 and runs[0]["status"] == "queued"
    assert at.query_params.get("run") == runs[0]["id"]  # it took us to the run


# ---------------------------------------------------------------- data
def test_data_page_upload_picks_columns_and_ingests(lhome, tmp_path):
    src = write_csv(tmp_path / "reviews.csv", text_col="sentence", label_col="sentiment")
    at = ok(app("pages/data.py"))
    at.file_uploader[0].upload("reviews.csv", src.read_bytes(), "text/csv")
    ok(at.run())
    # Columns found in the file, with the likely ones preselected.
    text_sel = next(s for s in at.selectbox if s.label == "Text column")
    label_sel = next(s for s in at.selectbox if s.label == "Label column")
    assert set(text_sel.options) == {"id", "sentence", "sentiment"}
    assert (text_sel.value, label_sel.value) == ("sentence", "sentiment")
    at.button(key="ingest").click().run()
    ok(at)
    assert any("reviews.csv" in s.value and "40 examples" in s.value for s in at.success)
    from lepton.data import list_datasets

    (m,) = list_datasets()
    assert m["columns"] and m["modality"] == "text"
    assert any(x.label == "Examples" and x.value == "40" for x in at.metric)
    assert at.dataframe  # datasets table + sample table
    # The same file again is recognised and reused.
    settle(at)
    at.file_uploader[0].upload("reviews.csv", src.read_bytes(), "text/csv")
    at.run()
    next(s for s in at.selectbox if s.label == "Text column").set_value("sentence")
    next(s for s in at.selectbox if s.label == "Label column").set_value("sentiment")
    at.button(key="ingest").click().run()
    assert any("already stored" in s.value for s in ok(at).success)


def test_data_page_bad_upload_is_a_readable_error(lhome, tmp_path):
    src = write_csv(tmp_path / "one.csv", labels=("only",))
    at = ok(app("pages/data.py"))
    at.file_uploader[0].upload("one.csv", src.read_bytes(), "text/csv")
    at.run()
    at.button(key="ingest").click().run()
    ok(at)
    assert at.error and "one.csv" in at.error[0].value
    assert "Traceback" not in texts(at)


def test_data_page_delete_asks_first(lhome, tmp_path):
    res = ingest(write_csv(tmp_path / "d.csv"))
    from lepton.data import list_datasets

    at = ok(app("pages/data.py"))
    settle(at.button(key="delete").click().run())
    assert list_datasets(), "deleted without confirmation"
    settle(at.button(key="delete_no").click().run())
    with pytest.raises(KeyError):
        at.button(key="delete_yes")
    settle(at.button(key="delete").click().run())
    at.button(key="delete_yes").click().run()
    ok(at)
    assert not list_datasets()
    assert any(res.dataset.name in s.value for s in at.success)
    assert "No datasets yet" in texts(at)


@pytest.mark.skipif(not (DEMO / "shapes.zip").exists(), reason="image demo not bundled")
def test_data_page_previews_images_and_audio(lhome):
    at = ok(app("pages/data.py"))
    at.file_uploader[0].upload("shapes.zip", (DEMO / "shapes.zip").read_bytes(), "application/zip")
    at.run()
    at.button(key="ingest").click().run()
    assert len(ok(at).image) > 0


# ---------------------------------------------------------------- train
def _tiny_available(name: str) -> bool:
    try:
        from lepton.backbones import list_backbones

        return any(s.name == name for s in list_backbones())
    except Exception:
        return False


needs_tiny_text = pytest.mark.skipif(not _tiny_available("tiny-text"), reason="tiny-text backbone not registered yet")


@needs_tiny_text
def test_train_page_builds_config_and_submits(lhome, tmp_path):
    from lepton.jobs.store import get_store

    res = ingest(write_csv(tmp_path / "t.csv"))
    at = ok(app("pages/train.py", dataset=res.dataset.id))
    assert at.selectbox(key="train_dataset").value == res.dataset.id
    bb = at.selectbox(key="train_backbone_text")
    assert any(o.startswith("tiny-text ·") for o in bb.options)  # shown with its size and dim
    bb.set_value("tiny-text").run()
    ad = at.selectbox(key="train_adapter_tiny-text")
    ad.set_value("full").run()
    assert at.toggle(key="cfg_companion").value is True  # text has a companion
    at.number_input(key="cfg_epochs").set_value(2).run()
    at.number_input(key="cfg_batch_size").set_value(8).run()
    ok(at)
    cmd = next(c.value for c in at.code if c.value.startswith("lepton train"))
    assert "--data " + res.dataset.id in cmd and "--backbone tiny-text" in cmd and "--adapter full" in cmd
    assert "--epochs 2" in cmd and "--batch-size 8" in cmd
    assert any("epochs: 2" in c.value for c in at.code)  # the YAML
    # The trainable-parameter count is computed on demand.
    at.button(key="count_params").click().run()
    assert "trainable parameters" in texts(ok(at))
    at.button(key="start").click().run()
    ok(at)
    (run,) = get_store().list_runs()
    assert run["status"] == "queued"
    assert run["config"]["backbone"] == "tiny-text" and run["config"]["epochs"] == 2
    assert at.query_params.get("run") == run["id"]


@needs_tiny_text
def test_train_page_out_of_range_value_is_refused_by_the_widget(lhome, tmp_path):
    res = ingest(write_csv(tmp_path / "t.csv"))
    at = ok(app("pages/train.py", dataset=res.dataset.id))
    from lepton.config import RunConfig

    assert at.number_input(key="cfg_batch_size").min == 1
    assert "Examples per optimisation step" in (at.number_input(key="cfg_batch_size").help or "")
    assert RunConfig().batch_size == at.number_input(key="cfg_batch_size").value


# ---------------------------------------------------------------- runs
def test_runs_page_lists_and_cancels_a_queued_run(lhome, tmp_path):
    from lepton.jobs.store import get_store

    res = ingest(write_csv(tmp_path / "r.csv"))
    rid = submit(res.dataset.id, name="my queued run")
    at = ok(app("pages/runs.py"))
    assert at.dataframe and "my queued run" in at.dataframe[0].value["name"].tolist()
    at = ok(app("pages/runs.py", run=rid))
    assert "my queued run" in texts(at)
    settle(at.button(key="cancel").click().run())
    assert get_store().get_run(rid)["status"] == "cancelled"
    assert at.button(key="resume")  # the buttons follow the status
    at.button(key="resume").click().run()
    assert get_store().get_run(rid)["status"] == "queued"


def test_runs_table_says_where_runs_trained_once_one_went_to_a_cluster(lhome, tmp_path):
    from lepton.jobs.store import get_store

    res = ingest(write_csv(tmp_path / "r.csv"))
    here, there = submit(res.dataset.id, name="here"), submit(res.dataset.id, name="there")
    get_store().update_run(here, executor="local", node="vm")
    at = ok(app("pages/runs.py"))
    assert "runs on" not in at.dataframe[0].value.columns  # one machine: every row would say the same
    get_store().update_run(there, executor="ray", node="node-3:6536ee16b00e412a945a")
    table = ok(app("pages/runs.py")).dataframe[0].value.set_index("name")
    assert table.loc["there", "runs on"] == "ray · node-3/6536ee16" and table.loc["here", "runs on"] == "local · vm"


def test_runs_page_reads_metrics_incrementally(lhome, tmp_path):
    from lepton.jobs.store import get_store

    store = get_store()
    res = ingest(write_csv(tmp_path / "r.csv"))
    rid = submit(res.dataset.id)
    at = ok(app("pages/runs.py", run=rid))
    seen = []
    for step in range(1, 5):
        store.add_metrics(rid, [{"step": step, "epoch": step / 4, "split": "train", "name": "loss", "value": 1 / step},
                                {"step": step, "epoch": step / 4, "split": "system", "name": "rss_mb", "value": 300.0}])
        at.run()  # what the fragment's one-second tick does in a browser
        seen.append(next(c.value for c in ok(at).caption if "of training loss" in c.value))
    assert [int(s.split()[0]) for s in seen] == [1, 2, 3, 4]
    cache = at.session_state["_metric_cache"][rid]
    assert cache["after"] == max(r["id"] for r in store.metrics(rid))


def test_unknown_run_is_a_readable_error(lhome):
    at = ok(app("pages/runs.py", run="nope"))
    assert at.error and "nope" in at.error[0].value


@pytest.fixture
def finished_text_run(lhome, tmp_path) -> str:
    if not _tiny_available("tiny-text"):
        pytest.skip("tiny-text backbone not registered yet")
    return train_cli(write_csv(tmp_path / "f.csv", n=48))


def test_finished_run_shows_report_and_confusion_matrix(finished_text_run):
    at = ok(app("pages/runs.py", run=finished_text_run))
    labels = [m.label for m in at.metric]
    assert any(l.startswith("Accuracy") for l in labels) and any(l.startswith("Macro-F1") for l in labels)
    assert at.toggle(key=f"cm_norm_{finished_text_run}").value is False
    at.toggle(key=f"cm_norm_{finished_text_run}").set_value(True).run()
    ok(at)
    assert at.button(key="to_playground")
    with pytest.raises(KeyError):
        at.button(key="cancel")  # nothing to cancel on a finished run


def test_playground_predicts_with_a_finished_run(finished_text_run):
    at = ok(app("pages/playground.py", run=finished_text_run))
    assert at.selectbox(key="pg_run").value == finished_text_run
    at.text_area(key=f"pg_text_{finished_text_run}").input("the hotel was superb, truly superb").run()
    at.button(key="pg_predict").click().run()
    ok(at)
    assert "Prediction" in texts(at)
    assert any(m.value.startswith("<div class='lp-big'>") for m in at.markdown)
    settle(at.button(key="pg_example").click().run())
    assert "true label" in texts(ok(at))


@needs_tiny_text
def test_train_page_custom_backbone_is_checked_on_the_page(lhome, tmp_path):
    res = ingest(write_csv(tmp_path / "t.csv"))
    at = ok(app("pages/train.py", dataset=res.dataset.id))
    at.selectbox(key="train_backbone_text").set_value("__custom__").run()
    at.text_input(key="train_custom_text").input(str(tmp_path / "no-such-model")).run()
    ok(at)
    assert at.error and "no-such-model" in at.error[0].value
    with pytest.raises(KeyError):
        at.button(key="start")  # nothing to start until the backbone is valid


def test_data_page_broken_zip_is_a_readable_error(lhome):
    at = ok(app("pages/data.py"))
    at.file_uploader[0].upload("photos.zip", b"this is not a zip archive", "application/zip")
    at.run()
    at.button(key="ingest").click().run()
    ok(at)
    assert at.error and "photos.zip" in at.error[0].value
    assert not at.expander or all("bug report" not in e.label for e in at.expander)  # a LeptonError, not a bug


@pytest.mark.parametrize("run,expected", [
    # A dashboard run names a stored dataset by id; its modality gives the recommended backbone and adapter.
    ({"config": {"data": "ds1"}}, ("topics", "minilm-l6", "lora")),
    # A CLI run may name a path: its file name shows, and before it finishes the defaults cannot be known yet...
    ({"config": {"data": "/somewhere/reviews.csv"}}, ("reviews.csv", "default", "recommended")),
    # ...after it finishes, its result says what it resolved.
    ({"config": {"data": "/somewhere/reviews.csv"},
      "result": {"metrics": {"backbone": "minilm-l6", "adapter": "linear-probe"}}}, ("reviews.csv", "minilm-l6", "linear-probe")),
    ({"config": {"data": "ds1", "backbone": "tiny-text", "adapter": "full"}}, ("topics", "tiny-text", "full")),
])
def test_run_titles_name_the_dataset_and_model(run, expected):
    from lepton.ui.common import run_parts

    assert run_parts(run, {"ds1": {"name": "topics", "modality": "text"}}) == expected


# ---------------------------------------------------------------- multimodal (issue 14)
TINY_BRANCHES = "text=tiny-text,image=tiny-image,audio=tiny-audio"


def multimodal_zip(tmp_path: Path, name: str = "reviews_mm", **kw) -> Path:
    """A metadata.csv with text, image and audio columns (some cells blank), zipped as a user uploads it."""
    import zipfile

    from tiny_data import write_multimodal

    root = write_multimodal(tmp_path / name, **kw)
    out = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(out, "w") as z:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                z.write(f, f"{name}/{f.relative_to(root).as_posix()}")
    return out


def train_multimodal_cli(data: Path, *extra: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-m", "lepton", "train", "--data", str(data), "--backbone", TINY_BRANCHES,
                          "--epochs", "5", *extra], capture_output=True, text=True, timeout=240, env=env, cwd=str(REPO))
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])["run_id"]


@pytest.fixture
def finished_multimodal_run(lhome, tmp_path) -> str:
    if not all(_tiny_available(n) for n in ("tiny-text", "tiny-image", "tiny-audio")):
        pytest.skip("tiny backbones not registered")
    return train_multimodal_cli(multimodal_zip(tmp_path))


def test_data_page_shows_multimodal_rows_as_they_are(lhome, tmp_path):
    src = multimodal_zip(tmp_path)
    at = ok(app("pages/data.py"))
    at.file_uploader[0].upload(src.name, src.read_bytes(), "application/zip")
    at.run()
    at.button(key="ingest").click().run()
    ok(at)
    assert any(src.name in s.value and "multimodal" in s.value for s in at.success)
    assert any("lack a modality" in w.value for w in at.warning)  # the ingest's own count, kept as a warning
    # One metric per modality: rows that have it, and a caption with how many lack it.
    from lepton.data import list_datasets

    (m,) = list_datasets()
    shown = {x.label.split()[-1]: x.value for x in at.metric if x.label.split()[-1] in ("text", "image", "audio")}
    assert set(shown) == {"text", "image", "audio"}
    assert all(v.endswith(f"/ {sum(m['sizes'].values())} rows") for v in shown.values())
    assert any(c.value.startswith("missing in ") for c in at.caption)
    # Rows side by side: a thumbnail and a player per row that has them, "missing" where a cell is blank.
    assert len(at.image) > 0 and len(at.get("audio")) > 0
    assert any("missing" in md.value for md in at.markdown)
    assert "Traceback" not in texts(at)


def test_train_page_picks_a_backbone_and_adapter_per_branch_and_a_fusion(lhome, tmp_path):
    if not all(_tiny_available(n) for n in ("tiny-text", "tiny-image", "tiny-audio")):
        pytest.skip("tiny backbones not registered")
    from lepton.fusion import FUSIONS
    from lepton.jobs.store import get_store

    res = ingest(multimodal_zip(tmp_path))
    at = ok(app("pages/train.py", dataset=res.dataset.id))
    for m in ("text", "image", "audio"):
        bb = at.selectbox(key=f"train_backbone_{m}")
        assert all(o.split(" · ")[0] not in ("__custom__",) for o in bb.options[:-1])
        bb.set_value(f"tiny-{m}").run()
        # Each branch starts frozen; its adapters are the ones its backbone takes on its own.
        assert at.selectbox(key=f"train_branch_adapter_{m}").value == "linear-probe"
    # Only text has a classical companion: the toggle is not offered for multimodal data.
    assert not [c for c in at.toggle if c.key == "cfg_companion"] and any(n.key == "cfg_max_length" for n in at.number_input)
    fusion = at.selectbox(key="cfg_fusion")
    assert fusion.options == list(FUSIONS) and fusion.value == "concat"
    assert all(FUSIONS.get(n).description in fusion.help for n in FUSIONS)  # each described
    cmd = next(c.value for c in ok(at).code if c.value.startswith("lepton train"))
    assert f"--backbone {TINY_BRANCHES}" in cmd and "--adapter linear-probe" in cmd and "--fusion" not in cmd
    at.selectbox(key="train_branch_adapter_image").set_value("lora").run()
    # The branch's adapter brings its own options into its column, named after the branch.
    assert not [n for n in at.number_input if n.key.startswith("opt_text_")]
    at.number_input(key="opt_image_lora_r").set_value(4).run()
    at.selectbox(key="cfg_fusion").set_value("gated").run()
    at.number_input(key="cfg_epochs").set_value(2).run()
    cmd = next(c.value for c in ok(at).code if c.value.startswith("lepton train"))
    assert "--adapter branches" in cmd and "--adapter-option image=lora" in cmd and "--fusion gated" in cmd
    assert "--adapter-option image.r=4" in cmd
    assert "Trains: this branch runs live" in texts(at)
    # Counting parameters builds the fused model once.
    at.button(key="count_params").click().run()
    assert "trainable parameters" in texts(ok(at))
    at.button(key="start").click().run()
    ok(at)
    (run,) = get_store().list_runs()
    cfg = run["config"]
    assert (cfg["backbone"], cfg["adapter"], cfg["adapter_options"], cfg["fusion"]) == (
        TINY_BRANCHES, "branches", {"image": "lora", "image.r": 4}, "gated")


def test_finished_multimodal_run_shows_fused_against_each_modality(finished_multimodal_run):
    rid = finished_multimodal_run
    at = ok(app("pages/runs.py", run=rid))
    report = json.loads((Path(os.environ["LEPTON_HOME"]) / "runs" / rid / "report.json").read_text())
    table = next(d.value for d in at.dataframe if "model" in d.value.columns)
    assert table["model"].tolist() == ["fused"] + [f"{m} alone" for m in report["modalities"]]
    assert table.loc[0, "Macro-F1"] == pytest.approx(report["macro_f1"])
    for i, m in enumerate(report["modalities"], start=1):
        assert table.loc[i, "Macro-F1"] == pytest.approx(report["modalities"][m]["macro_f1"])
    assert any("the best single modality" in c.value for c in at.caption)
    # `lepton serve` takes one modality for now: no Serve panel for this run.
    assert all("Serve it over HTTP" not in e.label for e in at.expander)
    # The Mistakes tab draws each row's modalities (or "missing").
    at.session_state["rep_tabs"] = "Mistakes"  # what a click on the tab sets: the tabs rerun the page (lazy)
    ok(at.run())
    at.selectbox(key=f"mis_view_{rid}").set_value("all").run()
    shown = texts(ok(at))
    assert "Traceback" not in shown and "file not available" not in shown
    assert len(at.image) > 0 and len(at.get("audio")) > 0


def test_playground_takes_several_inputs_and_shows_each_contribution(finished_multimodal_run, tmp_path):
    from PIL import Image

    rid = finished_multimodal_run
    at = ok(app("pages/playground.py", run=rid))
    img = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (220, 30, 30)).save(img)
    at.text_area(key=f"pg_text_text_{rid}").input("the hotel was delightful, really delightful").run()
    at.button(key="pg_predict").click().run()
    ok(at)
    assert "Give two or more inputs" in texts(at)  # one input: nothing to leave out
    at.file_uploader(key=f"pg_upload_image_{rid}").upload("red.png", img.read_bytes(), "image/png").run()
    at.button(key="pg_predict").click().run()
    ok(at)
    assert any(m.value.startswith("<div class='lp-big'>") for m in at.markdown)
    table = at.dataframe[-1].value
    assert table["input"].tolist() == ["every input given", "without text", "without image"]
    assert "moves the answer most" in texts(at)
    # A random row of its dataset, every modality it has at once.
    settle(at.button(key="pg_example").click().run())
    assert "true label" in texts(ok(at))
