"""The dashboard in a real Chromium against a real `streamlit run app.py` and the worker it starts.

Text: upload a CSV → train (tiny-text, full fine-tuning) → watch the loss curve grow without reloading
→ reload mid-run → finished with a confusion matrix → a sentence in the Playground. Images and audio:
upload a .zip → train (linear probe) → finished → an uploaded file in the Playground.
Screenshots of every step land in artifacts/e2e/; the two timings are printed and saved as JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from browser_kit import ART, REPO, app_env, goto, idle, no_errors, shot, streamlit_app

pytestmark = pytest.mark.e2e

DEMO = REPO / "assets" / "demo"
TIMINGS: dict[str, float] = {}

POINTS_JS = """(sel) => {
  const el = document.querySelector(sel + ' .js-plotly-plot');
  if (!el || !el.data) return -1;
  return el.data.reduce((n, t) => n + (t.x ? t.x.length : 0), 0);
}"""


def _stop_pid(pid: int, timeout: float = 15) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e-home")
    env = app_env(home)
    env.pop("LEPTON_NO_WORKER", None)  # the app starts the worker itself, as `make run` does
    with streamlit_app(env, home / "streamlit.log") as url:
        yield SimpleNamespace(url=url, home=home)
    # The worker the app started outlives the app on purpose; this test started it, so it stops it.
    try:
        _stop_pid(int((home / "worker.pid").read_text().strip()))
    except (OSError, ValueError):
        pass
    (ART / "timings.json").write_text(json.dumps(TIMINGS, indent=2))


def choose(page, key: str, prefix: str) -> None:
    page.locator(f".st-key-{key} input[role='combobox']").click()
    page.locator("[role='option']").filter(has_text=re.compile("^" + re.escape(prefix))).first.click()
    idle(page)


def number(page, key: str, value: float | int) -> None:
    box = page.locator(f".st-key-{key} input")
    box.fill(str(value))
    box.press("Enter")
    idle(page)


def upload_dataset(page, server, path: Path) -> None:
    goto(page, server, "/data")
    page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(str(path))
    page.locator(".st-key-ingest button").first.click(timeout=60_000)
    page.locator("[data-testid='stAlertContentSuccess']").filter(has_text=path.name).wait_for(timeout=120_000)
    idle(page)


def points(page, key: str = "chart-loss") -> int:
    return page.evaluate(POINTS_JS, f".st-key-{key}")


def run_status(server, run_id: str) -> str:
    import sqlite3

    with sqlite3.connect(server.home / "lepton.db", timeout=10) as c:
        return c.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()[0]


def start_training(page, modality: str, backbone: str, adapter: str, options: dict | None = None, **fields) -> str:
    """From a dataset's "Train on this dataset" to a filled Train form; returns the command line shown.
    options: the adapter's own options, set in the Model options section."""
    page.locator(".st-key-to_train button").first.click()
    page.wait_for_url("**/train?dataset=*")
    idle(page)
    choose(page, f"train_backbone_{modality}", backbone + " ·")
    # Auto is offered first and chosen unless the user picks: it says what it will choose before anything runs.
    page.get_by_text("Auto will choose:").wait_for(timeout=20_000)  # shown only while Auto is the adapter
    assert page.get_by_text("min: none given").count() == 1  # the budget it picks from the dataset's size
    assert modality != "image" or page.get_by_text("px: the images are about").count() == 1
    shot(page, f"{modality}_02_train_auto")
    choose(page, f"train_adapter_{backbone}", adapter + " ·")
    if options:
        page.get_by_text("Model options").click()
        for key, value in options.items():
            number(page, f"opt_{adapter}_{key}", value)
    if "log_every" in fields:
        page.get_by_text("System options").click()
    for key, value in fields.items():
        number(page, f"cfg_{key}", value)
    page.get_by_text("Reproduce from the command line").click()
    # The form reruns after each value; wait until the command line shows all of them.
    wanted = ([f"--backbone {backbone}", f"--adapter {adapter}"] + [f"--{k.replace('_', '-')} {v}" for k, v in fields.items()]
              + [f"--adapter-option {k}={v}" for k, v in (options or {}).items()])
    code = page.locator("[data-testid='stCode']").first
    deadline = time.monotonic() + 30
    while not all(w in (text := code.text_content() or "") for w in wanted):
        assert time.monotonic() < deadline, f"the command line never showed {wanted}: {text!r}"
        time.sleep(0.3)
    idle(page)
    return text


def click_start(page) -> tuple[str, float]:
    t0 = time.monotonic()
    page.locator(".st-key-start button").first.click()
    page.wait_for_url("**/runs?run=*")
    return page.url.split("run=")[-1].split("&")[0], t0


def wait_finished(page, server, run_id: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while page.locator(".st-key-confusion").count() == 0:
        status = run_status(server, run_id)
        assert status in ("queued", "running", "finished"), f"run {run_id} ended {status}:\n" + page.inner_text("body")[-2000:]
        assert time.monotonic() < deadline, f"run {run_id} still {status} after {timeout} s"
        time.sleep(0.5)
    page.locator(".st-key-confusion .js-plotly-plot").wait_for()
    idle(page)  # elements of the running view stay until the rerun that replaced them ends


def extract_one(zip_path: Path, suffixes: tuple[str, ...], dest: Path) -> Path:
    with zipfile.ZipFile(zip_path) as z:
        name = next(n for n in z.namelist() if n.lower().endswith(suffixes) and "/test/" not in n)
        out = dest / Path(name).name
        out.write_bytes(z.read(name))
    return out


def note(name: str, seconds: float, capsys) -> None:
    TIMINGS[name] = round(seconds, 2)
    with capsys.disabled():
        print(f"\n[e2e timing] {name}: {seconds:.2f} s", flush=True)


# ---------------------------------------------------------------- scenarios
def test_text_upload_train_watch_reload_finish_predict(server, page, tmp_path, capsys):
    src = tmp_path / "e2e_topics.csv"
    shutil.copy(DEMO / "topics.csv", src)
    # 1. upload on the Data page (a deep link as the server's first request still gets the whole frame)
    upload_dataset(page, server, src)
    assert page.locator("[data-testid='stSidebar']").get_by_text("Playground").is_visible()
    shot(page, "text_01_data_uploaded")
    # 2. configure and start a run on the Train page
    # 60 epochs of tiny-text: ~15 s on 2 CPUs, long enough to watch and reload mid-run on a faster machine.
    cmd = start_training(page, "text", "tiny-text", "full", epochs=60, batch_size=16, log_every=1)
    assert cmd.startswith("lepton train --data "), cmd
    shot(page, "text_02_train_form")
    run_id, t_click = click_start(page)
    # 3. the curve grows while we watch, without reloading
    page.wait_for_function(f"() => ({POINTS_JS})('.st-key-chart-loss') > 0", timeout=180_000)
    note("start_click_to_first_point", time.monotonic() - t_click, capsys)
    seen = [points(page)]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and run_status(server, run_id) == "running" and len(set(seen)) < 3:
        time.sleep(0.5)
        seen.append(points(page))
    assert len(set(seen)) >= 2 and seen == sorted(seen), f"the curve did not grow while watching: {seen}"
    shot(page, "text_03_curve_growing")
    # 4. reload mid-run: the run is still there and still running, the curve comes back at once
    assert run_status(server, run_id) == "running", "the run finished before the reload; give it more epochs"
    t0 = time.monotonic()
    page.reload()
    page.wait_for_function(f"() => ({POINTS_JS})('.st-key-chart-loss') > 0", timeout=60_000)
    note("reload_to_curve_visible_while_training", time.monotonic() - t0, capsys)
    assert page.locator(".st-key-cancel button").first.is_visible()  # rendered as running after the reload
    shot(page, "text_04_after_reload")
    # 5. finished, with a confusion matrix
    wait_finished(page, server, run_id)
    assert page.locator(".st-key-cancel").count() == 0
    shot(page, "text_05_finished")
    # 6. a sentence in the Playground
    page.locator(".st-key-to_playground button").first.click()
    page.wait_for_url("**/playground?run=*")
    box = page.locator(f".st-key-pg_text_{run_id} textarea")
    box.wait_for(timeout=120_000)
    box.fill("The striker scored twice in the final minutes of the match.")
    page.locator(".st-key-pg_predict button").first.click()
    page.locator(".st-key-prediction .js-plotly-plot").wait_for(timeout=120_000)
    label = page.locator(".st-key-prediction .lp-big").inner_text().strip()
    assert label in {"food", "sports", "tech", "weather"}
    shot(page, "text_06_playground")


# Each a different kind of adapter: Houlsby bottlenecks with an option set in the form, and peft's IA3.
@pytest.mark.parametrize("modality,archive,backbone,suffixes,adapter,options", [
    ("image", "shapes.zip", "tiny-image", (".png", ".jpg", ".jpeg"), "houlsby", {"bottleneck": 8}),
    ("audio", "spoken_words.zip", "tiny-audio", (".wav", ".flac", ".ogg"), "ia3", {}),
])
def test_media_upload_train_finish_predict(server, page, tmp_path, modality, archive, backbone, suffixes, adapter,
                                           options):
    src = tmp_path / f"e2e_{archive}"
    shutil.copy(DEMO / archive, src)
    upload_dataset(page, server, src)
    shot(page, f"{modality}_01_data_uploaded")
    start_training(page, modality, backbone, adapter, options, epochs=3)
    shot(page, f"{modality}_02_train_form")
    run_id, _ = click_start(page)
    wait_finished(page, server, run_id)
    import sqlite3

    with sqlite3.connect(server.home / "lepton.db", timeout=10) as c:
        config = json.loads(c.execute("SELECT config FROM runs WHERE id=?", (run_id,)).fetchone()[0])
    assert config["adapter"] == adapter and config["adapter_options"] == options
    shot(page, f"{modality}_03_finished")
    page.locator(".st-key-to_playground button").first.click()
    page.wait_for_url("**/playground?run=*")
    sample = extract_one(DEMO / archive, suffixes, tmp_path)
    up = page.locator(f".st-key-pg_upload_{run_id} input[type='file']")
    up.wait_for(state="attached", timeout=120_000)
    up.set_input_files(str(sample))
    page.locator(".st-key-prediction .js-plotly-plot").wait_for(timeout=120_000)
    assert page.locator(".st-key-prediction .lp-big").inner_text().strip()
    shot(page, f"{modality}_04_playground")


def _train_plain(page, backbone: str, adapter: str, epochs: int) -> str:
    """From a dataset's "Train on this dataset": a backbone, an adapter and epochs; returns the run id."""
    page.locator(".st-key-to_train button").first.click()
    page.wait_for_url("**/train?dataset=*")
    idle(page)
    choose(page, "train_backbone_text", backbone + " ·")
    choose(page, f"train_adapter_{backbone}", adapter + " ·")
    number(page, "cfg_epochs", epochs)
    return click_start(page)[0]


def _finished(page, server, run_id: str, key: str, timeout: float = 240) -> None:
    """Until the run's page shows the task's own result figure (st-key-<key>)."""
    deadline = time.monotonic() + timeout
    while page.locator(f".st-key-{key} .js-plotly-plot").count() == 0:
        status = run_status(server, run_id)
        assert status in ("queued", "running", "finished"), f"run {run_id} ended {status}:\n" + page.inner_text("body")[-2000:]
        assert time.monotonic() < deadline, f"run {run_id} still {status} after {timeout} s"
        time.sleep(0.5)
    idle(page)


def test_multi_label_and_regression_from_upload_to_playground(server, page, tmp_path):
    """A `;`-joined CSV: the Data page offers multi-label; a numeric one: regression. Each trains, shows its own
    results (threshold explorer; predicted-against-true and residuals) and answers in the Playground."""
    import csv as csv_mod
    import random

    rng = random.Random(0)
    topics = {"food": ["pasta", "bread", "soup"], "travel": ["train", "flight", "hotel"], "music": ["guitar", "piano", "song"]}
    numbers = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]
    ml, reg = tmp_path / "e2e_topics_multi.csv", tmp_path / "e2e_prices.csv"
    with ml.open("w", newline="") as f, reg.open("w", newline="") as g:
        a, b = csv_mod.writer(f), csv_mod.writer(g)
        a.writerow(["text", "label"])
        b.writerow(["text", "label"])
        for i in range(120):
            labels = rng.sample(sorted(topics), 1 + i % 2)
            a.writerow([" and ".join(rng.choice(topics[t]) for t in labels) + f" on day {i}", ";".join(labels)])
            k = i % 12
            b.writerow([f"it costs {numbers[k]} coins, item {i}", f"{2 * k + 1}"])
    for path, task, key, answer in ((ml, "multi-label", "thresholds", "Labels above their thresholds"),
                                    (reg, "regression", "scatter", "Predicted value")):
        goto(page, server, "/data")
        page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(str(path))
        offer = page.locator(f"[class*='st-key-use_{task}_'] button")
        offer.wait_for(timeout=60_000)  # the preview's labels look like this task: the page says so and offers it
        shot(page, f"{task}_01_offered")
        offer.click()
        idle(page)
        page.locator(".st-key-ingest button").first.click()
        page.locator("[data-testid='stAlertContentSuccess']").filter(has_text=path.name).wait_for(timeout=120_000)
        idle(page)
        assert page.locator("[data-testid='stMain']").get_by_text(task).count() >= 1
        shot(page, f"{task}_02_stored")
        run_id = _train_plain(page, "tiny-text", "full", 4)
        _finished(page, server, run_id, key)
        if task == "regression":
            page.locator(".st-key-residuals .js-plotly-plot").wait_for()
        no_errors(page)
        shot(page, f"{task}_03_finished")
        page.locator(".st-key-to_playground button").first.click()
        page.wait_for_url("**/playground?run=*")
        box = page.locator(f".st-key-pg_text_{run_id} textarea")
        box.wait_for(timeout=120_000)
        box.fill("pasta and guitar on day 3" if task == "multi-label" else "it costs seven coins, item 3")
        page.locator(".st-key-pg_predict button").first.click()
        page.locator(".st-key-prediction").get_by_text(answer).wait_for(timeout=120_000)
        assert page.locator(".st-key-prediction .lp-big").inner_text().strip()
        no_errors(page)
        shot(page, f"{task}_04_playground")


def test_home_and_runs_list_show_every_run(server, page):
    import sqlite3

    with sqlite3.connect(server.home / "lepton.db", timeout=10) as c:
        n = c.execute("SELECT COUNT(*) FROM runs WHERE status='finished'").fetchone()[0]
    if n < 3:
        pytest.skip("needs the runs of the scenarios above (run the whole file)")
    goto(page, server, "/")
    page.get_by_text("Recent runs").wait_for()
    page.locator("[class*='st-key-open_']").first.wait_for()
    assert page.locator("[class*='st-key-open_']").count() >= 3
    assert page.locator("[data-testid='stMain']").get_by_text("finished").count() >= 3
    shot(page, "overview_01_home")
    goto(page, server, "/runs")
    page.locator("[data-testid='stDataFrame']").wait_for()
    time.sleep(1.5)  # the table is drawn on a canvas a moment after it appears
    shot(page, "overview_02_runs")


BARS_JS = """(sel) => {
  const el = document.querySelector(sel + ' .js-plotly-plot');
  if (!el || !el.data || !el.data.length) return null;
  return {names: Array.from(el.data[0].y).reverse(), values: Array.from(el.data[0].x).reverse()};
}"""


def test_multimodal_from_upload_to_playground(server, page, tmp_path):
    """A zip whose metadata.csv has text, image and audio (some cells blank): the Data page shows rows as they are;
    the Train page takes a backbone and adapter per branch and a fusion; the run page shows fused against each
    modality alone; the Playground takes a text and an image at once and says what each contributes."""
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from tiny_data import write_multimodal

    root = write_multimodal(tmp_path / "e2e_reviews_mm")
    src = tmp_path / "e2e_reviews_mm.zip"
    with zipfile.ZipFile(src, "w") as z:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                z.write(f, f"e2e_reviews_mm/{f.relative_to(root).as_posix()}")
    # 1. the Data page: the modalities, how many rows lack each, and rows side by side
    upload_dataset(page, server, src)
    rows = page.locator(".st-key-multimodal_rows")
    rows.wait_for()
    metrics = page.locator(".st-key-modality_presence [data-testid='stMetric']")
    metrics.nth(2).wait_for()  # a metric draws a moment after its placeholder
    assert metrics.count() == 3 and "rows" in metrics.first.inner_text()
    assert rows.locator("img").count() > 0 and rows.locator("audio").count() > 0
    assert rows.get_by_text("missing").count() > 0
    no_errors(page)
    rows.scroll_into_view_if_needed()
    shot(page, "multimodal_01_data")
    # 2. the Train page: a tiny backbone per branch, LoRA on the image branch, gated fusion
    page.locator(".st-key-to_train button").first.click()
    page.wait_for_url("**/train?dataset=*")
    idle(page)
    for m in ("text", "image", "audio"):
        choose(page, f"train_backbone_{m}", f"tiny-{m} ·")
    choose(page, "train_branch_adapter_image", "lora ·")
    choose(page, "cfg_fusion", "gated")
    number(page, "cfg_epochs", 3)
    page.get_by_text("Reproduce from the command line").click()
    wanted = ["--backbone text=tiny-text,image=tiny-image,audio=tiny-audio", "--fusion gated", "--adapter branches",
              "--adapter-option image=lora", "--epochs 3"]
    code = page.locator("[data-testid='stCode']").first
    deadline = time.monotonic() + 30
    while not all(w in (text := code.text_content() or "") for w in wanted):
        assert time.monotonic() < deadline, f"the command line never showed {wanted}: {text!r}"
        time.sleep(0.3)
    idle(page)
    no_errors(page)
    shot(page, "multimodal_02_train_form")
    run_id, _ = click_start(page)
    # 3. the run page: fused against each modality alone, the numbers of its report
    _finished(page, server, run_id, "modality_scores")
    report = json.loads((server.home / "runs" / run_id / "report.json").read_text())
    bars = page.evaluate(BARS_JS, ".st-key-modality_scores")
    assert bars["names"] == ["fused (every modality)"] + [f"{m} alone" for m in report["modalities"]]
    primary = report["primary"]
    assert bars["values"] == pytest.approx([report[primary]] + [v[primary] for v in report["modalities"].values()])
    assert page.locator(".st-key-serve_panel").count() == 0  # `lepton serve` takes one modality for now
    no_errors(page)
    page.locator(".st-key-modality_scores").scroll_into_view_if_needed()
    shot(page, "multimodal_03_finished")
    page.get_by_role("tab", name="Mistakes").click()
    idle(page)
    choose(page, f"mis_view_{run_id}", "All")
    cards = page.locator(".st-key-evaluation")
    cards.locator("img").first.wait_for()  # each card draws its row's modalities: text, thumbnail, player
    assert cards.locator("audio").count() > 0 and cards.get_by_text("file not available").count() == 0
    no_errors(page)
    cards.locator("img").first.scroll_into_view_if_needed()
    shot(page, "multimodal_03b_mistakes")
    # 4. the Playground: a text and an image at once; the answer without each of them
    page.locator(".st-key-to_playground button").first.click()
    page.wait_for_url("**/playground?run=*")
    box = page.locator(f".st-key-pg_text_text_{run_id} textarea")
    box.wait_for(timeout=120_000)
    box.fill("the hotel was delightful, really delightful")
    up = page.locator(f".st-key-pg_upload_image_{run_id} input[type='file']")
    up.set_input_files(str(next((root / "images").glob("*.png"))))
    idle(page)
    page.locator(".st-key-pg_predict button").first.click()
    page.locator(".st-key-without .js-plotly-plot").wait_for(timeout=120_000)
    assert page.locator(".st-key-prediction .lp-big").inner_text().strip() in {"pos", "neg"}
    bars = page.evaluate(BARS_JS, ".st-key-without")
    assert bars["names"] == ["every input given", "without text", "without image"]
    assert all(0.0 <= v <= 1.0 for v in bars["values"])
    assert page.locator(".st-key-pg_given img").count() == 1  # the input as given: the image, no sound
    no_errors(page)
    shot(page, "multimodal_04_playground")
    # a row of its dataset: every modality it has, at once
    page.locator(".st-key-pg_example button").first.click()
    page.get_by_text("true label").wait_for(timeout=60_000)
    idle(page)
    page.mouse.move(0, 0)  # no tooltip over the answer in the screenshot
    no_errors(page)
    shot(page, "multimodal_05_playground_example")
