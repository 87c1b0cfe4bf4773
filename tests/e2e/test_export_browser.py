"""The Export page and the run page's Serve panel in a real Chromium against `streamlit run app.py`.

A tiny text run is trained with the CLI first; the browser exports it as ONNX with int8, reads the parity
figures and the model card, downloads the zip, and opens the run page's Serve panel. Screenshots go to
artifacts/e2e/export_{page,done}.png and serve_panel.png.
"""

from __future__ import annotations

import io
import zipfile
from types import SimpleNamespace

import pytest
from tiny_data import train_tiny_run, write_word_csv
from browser_kit import app_env, goto, idle, no_errors, shot, streamlit_app

pytestmark = pytest.mark.e2e
WORDS = {"pos": ["great", "lovely", "superb", "brilliant"], "neg": ["awful", "poor", "dreadful", "miserable"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e-export")
    home = root / "home"
    env = app_env(home, LEPTON_NO_WORKER="1")
    data = write_word_csv(root / "film_reviews.csv", WORDS, "the film {i} was {word}, really {word}", 64)
    run = train_tiny_run(env, "--data", str(data), "--adapter", "lora", "--epochs", "3", "--name", "films lora")
    with streamlit_app(env, root / "streamlit.log") as url:
        yield SimpleNamespace(url=url, home=home, run=run)


def test_export_a_run_as_onnx_and_download_the_zip(server, page):
    goto(page, server, f"/export?run={server.run}")
    no_errors(page)
    page.get_by_text("onnx", exact=True).click()
    idle(page)
    page.get_by_text("Also write an int8 copy").click()
    idle(page)
    shot(page, "export_page")
    page.get_by_role("button", name="Export").click()
    page.locator(".st-key-export_result").wait_for(timeout=120_000)
    idle(page)
    no_errors(page)
    page.locator(".st-key-export_result [data-testid='stCode']", has_text="pipeline_tag").wait_for()  # drawn last
    shot(page, "export_done")
    result = page.locator(".st-key-export_result").inner_text()
    assert "Top-1 agreement" in result and "100.0%" in result and "int8 macro-F1" in result
    assert "pipeline_tag: text-classification" in result and "Intended use" in result and "How to load it" in result
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download the folder (zip)").click()
    data = open(dl.value.path(), "rb").read()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert {"onnx/model.onnx", "onnx/model.int8.onnx", "onnx/README.md", "onnx/meta.json"} <= set(names)


def test_the_serve_panel_shows_the_command_for_this_run(server, page):
    goto(page, server, f"/runs?run={server.run}")
    page.locator(".st-key-serve_panel").wait_for()
    page.get_by_text("Serve it over HTTP").click()
    idle(page)
    no_errors(page)
    # st.code draws its text a moment after the block appears
    page.locator(".st-key-serve_panel [data-testid='stCode']", has_text="lepton serve").wait_for()
    text = page.locator(".st-key-serve_panel").inner_text()
    assert f"lepton serve {server.run} --port 8000" in text and "curl -s localhost:8000/predict" in text
    page.locator(".st-key-serve_panel").scroll_into_view_if_needed()
    shot(page, "serve_panel")
