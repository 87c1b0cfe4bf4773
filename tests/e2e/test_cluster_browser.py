"""The dashboard beside a Ray worker, in a real Chromium against `streamlit run app.py`.

A real local Ray cluster (a head with no CPUs, two one-CPU nodes) and a real `lepton worker --executor ray` train two
tiny runs; the sidebar shows the cluster's free CPUs and GPUs, the run page and the Runs table say which executor and
node trained each run. Screenshots: artifacts/e2e/cluster_run.png and cluster_runs.png.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from browser_kit import REPO, app_env, goto, idle, no_errors, shot, stop, streamlit_app
from job_fixtures import wait_for, write_job_csv
from lepton.jobs.store import Store

pytestmark = pytest.mark.e2e
cluster_utils = pytest.importorskip("ray.cluster_utils", reason="the ray extra (make extras) is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e-cluster")
    home = root / "home"
    env = app_env(home, LEPTON_NO_WORKER="1", RAY_AUTH_MODE="disabled")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    worker = subprocess.Popen([sys.executable, "-m", "lepton", "worker", "--executor", "ray", "--address",
                               cluster.address, "--poll", "0.2"], cwd=str(REPO), env=env,
                              stdout=open(root / "worker.out", "wb"), stderr=subprocess.STDOUT)
    try:
        data = write_job_csv(root / "reviews.csv", n=40)
        ids = [json.loads(subprocess.run(
            [sys.executable, "-m", "lepton", "submit", "--data", str(data), "--backbone", "tiny-text", "--adapter", "full",
             "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--name", f"on the cluster {i}", "--seed", str(i)],
            cwd=str(REPO), env=env, capture_output=True, text=True, check=True).stdout.splitlines()[-1])["run_id"]
            for i in range(2)]
        st = Store(home / "lepton.db")
        wait_for(lambda: all(st.get_run(i)["status"] == "finished" for i in ids), 180, every=0.5, what="both runs")
        with streamlit_app(env, root / "streamlit.log") as url:
            yield SimpleNamespace(url=url, home=home, runs=[st.get_run(i) for i in ids], nodes=nodes)
    finally:
        stop(worker)
        cluster.shutdown()


def test_the_run_page_and_sidebar_show_the_cluster(server, page):
    run = server.runs[0]
    goto(page, server, f"/runs?run={run['id']}")
    no_errors(page)
    host, _, node_id = run["node"].partition(":")
    page.get_by_text(f"on ray · {host}/{node_id[:8]}").wait_for()
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text("ray cluster: 3 nodes · 2/2 CPUs free · no GPUs").wait_for(timeout=15_000)
    page.get_by_text("Shipped: the fine-tuned model").wait_for()
    idle(page)
    shot(page, "cluster_run")


def test_the_runs_table_draws_beside_a_cluster(server, page):
    goto(page, server, "/runs")
    no_errors(page)
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.wait_for()
    shot(page, "cluster_runs")  # the grid draws on a canvas: its cells are checked in tests/ui (runs_frame)
