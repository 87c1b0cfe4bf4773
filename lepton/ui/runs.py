"""Runs page: the list of runs, and one run's live view (curves, progress, actions, final report).

The store is the truth. st.session_state only caches metric rows already read (by id), so each
one-second tick asks the store for what is new (after_id) instead of re-reading the whole run.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from lepton.ui import access, charts, common, task_views

LIVE_EVERY_S = 1.0
LIST_EVERY_S = 2.0
ACTIVE = {"queued", "running"}
RESUMABLE = {"interrupted", "cancelled", "failed"}
METRIC_CACHE_RUNS = 6  # runs whose metric rows stay cached in the session


# ---------------------------------------------------------------- actions (the same calls as the CLI)
def cancel(run_id: str) -> dict:
    from lepton.jobs import launcher

    return launcher.cancel(run_id)


def resume(run_id: str) -> str:
    import os

    from lepton.jobs import launcher

    rid = launcher.resume(run_id)
    if not os.environ.get("LEPTON_NO_WORKER"):
        launcher.ensure_worker()
    return rid


def open_run(run_id: str | None) -> None:
    # A fresh table key next time: a kept row selection would reopen this run on the way back.
    st.session_state["_runs_table_nonce"] = st.session_state.get("_runs_table_nonce", 0) + 1
    common.set_query_param("run", run_id)
    st.rerun()


# ---------------------------------------------------------------- metrics, read incrementally
def metric_rows(run: dict) -> list[dict]:
    """All metric rows of a run: cached ones plus those with id > the last seen (one small query)."""
    cache: dict[str, dict] = st.session_state.setdefault("_metric_cache", {})
    entry = cache.get(run["id"])
    if entry is None or entry["attempt"] != run.get("attempt"):
        # A resumed run replays from its checkpoint and drops later rows: start over.
        entry = {"after": 0, "rows": [], "attempt": run.get("attempt")}
    new = common.store().metrics(run["id"], after_id=entry["after"])
    if new:
        entry["rows"].extend(new)
        entry["after"] = new[-1]["id"]
    cache.pop(run["id"], None)
    cache[run["id"]] = entry  # most recently used last
    while len(cache) > METRIC_CACHE_RUNS:
        cache.pop(next(iter(cache)))
    return entry["rows"]


def series(rows: list[dict], split: str, name: str, x: str = "step") -> tuple[list, list]:
    xs, ys = [], []
    for r in rows:
        if r["split"] == split and r["name"] == name and r["value"] is not None:
            xs.append(r[x])
            ys.append(r["value"])
    return xs, ys


def latest(rows: list[dict], split: str, name: str) -> float | None:
    for r in reversed(rows):
        if r["split"] == split and r["name"] == name:
            return r["value"]
    return None


# ---------------------------------------------------------------- the list
def runs_frame(runs: list[dict]) -> pd.DataFrame:
    datasets = common.datasets_by_id()
    owners = access.login_on()  # a single-user app has one owner: no column for it
    rows = []
    for r in runs:
        cfg = r.get("config") or {}
        data, backbone, adapter = common.run_parts(r, datasets)
        res = (r.get("result") or {}).get("metrics") or {}
        rows.append({
            "status": r["status"],
            "name": r.get("name") or cfg.get("name") or r["id"],
            # Beside the name, where a narrow window still shows it.
            **({"owner": access.owner_label(r.get("owner")) + (" · shared" if r.get("shared") else "")} if owners else {}),
            "dataset": data,
            "backbone": backbone,
            "adapter": adapter,
            "runs on": common.where(r),  # where a narrow window still shows it; dropped below on one machine
            "progress": float(r.get("progress") or 0.0),
            "accuracy": None if res.get("accuracy") is None else 100 * res["accuracy"],
            "macro-F1": res.get("macro_f1"),
            # Multi-label and regression runs: their primary metric (micro-F1, R²), shown once such a run exists.
            "score": res.get(res["primary"]) if res.get("primary") not in (None, "macro_f1") else None,
            "created": common.fmt_ago(r.get("created")),
        })
    df = pd.DataFrame(rows)
    if df.empty or df["score"].isna().all():
        df = df.drop(columns="score", errors="ignore")
    # The column earns its width once runs go to a cluster: on one machine every row would say the same.
    return df if any(map(common.on_cluster, runs)) else df.drop(columns="runs on", errors="ignore")


RUNS_COLUMNS = {
    "status": st.column_config.TextColumn(width=90),
    "name": st.column_config.TextColumn(width=150, help="The run's name, or its id"),
    "dataset": st.column_config.TextColumn(width=120),
    "backbone": st.column_config.TextColumn(width=120),
    "adapter": st.column_config.TextColumn(width=95),
    "progress": st.column_config.ProgressColumn(width=100, min_value=0.0, max_value=1.0, format="percent"),
    "accuracy": st.column_config.NumberColumn("accuracy", width=80, format="%.1f %%",  # one decimal, every row
                                              help="Test accuracy of a finished run"),
    "macro-F1": st.column_config.NumberColumn("macro-F1", width=75, format="%.3f",
                                              help="Test macro-F1 of a finished run"),
    "score": st.column_config.NumberColumn("score", width=70, format="%.3f",
                                           help="A multi-label or regression run's primary test metric: micro-F1 or R²"),
    "created": st.column_config.TextColumn(width=90),
    "owner": st.column_config.TextColumn(width=140, help="Whose run it is; shared runs are visible to every signed-in user"),
    "runs on": st.column_config.TextColumn(width=130, help="The executor and the node that trains it (lepton worker --executor)"),
}


def styled(df: pd.DataFrame):
    """The status column in the badge colours (tables cannot hold badges)."""
    def paint(v: str) -> str:
        fg, bg = common.STATUS_CSS.get(str(v), ("#555", "#eee"))
        return f"color: {fg}; background-color: {bg}; font-weight: 600"

    return df.style.map(paint, subset=["status"])


def runs_list() -> None:
    runs = access.runs(limit=200)
    if not runs:
        common.empty_state("No runs yet. Pick a dataset and a backbone on **Train**, or start a demo on **Home**.",
                           common.PAGE_TRAIN, "Train a model", ":material/model_training:")
        return
    active = any(r["status"] in ACTIVE for r in runs)
    st.fragment(run_every=LIST_EVERY_S if active else None)(_runs_table)(active)


def _runs_table(was_active: bool) -> None:
    with common.guard("Could not list the runs"):
        _runs_table_body(was_active)


def _runs_table_body(was_active: bool) -> None:
    runs = access.runs(limit=200)
    if was_active and not any(r["status"] in ACTIVE for r in runs):
        st.rerun()  # the last active run ended: a full rerun stops this fragment's timer
    st.caption("Select a row to open the run.")
    event = st.dataframe(styled(runs_frame(runs)), hide_index=True, width="stretch", column_config=RUNS_COLUMNS,
                         on_select="rerun", selection_mode="single-row",
                         key=f"runs_table_{st.session_state.get('_runs_table_nonce', 0)}")
    picked = (event.selection.rows if event is not None and hasattr(event, "selection") else []) or []
    if picked:
        open_run(runs[picked[0]]["id"])


# ---------------------------------------------------------------- one run
def run_view(run_id: str) -> None:
    run = None
    from lepton.errors import LeptonError

    try:
        run = access.find_run(run_id)  # someone else's private run is "no run", like one that does not exist
    except LeptonError as e:
        st.error(str(e))
    if run is None:
        if st.button("All runs", icon=":material/arrow_back:", key="back"):
            open_run(None)
        return
    header(run)
    actions(run)
    plan_section(run)
    live(run["id"], run["status"] in ACTIVE)
    outcome(run)
    details(run)


def header(run: dict) -> None:
    cfg = run.get("config") or {}
    data, backbone, adapter = common.run_parts(run, common.datasets_by_id())
    title = run.get("name") or cfg.get("name") or f"{data} · {backbone} + {adapter}"
    st.markdown(f"## {title}")
    st.markdown(
        f"<span class='lp-kv'>id <code>{run['id']}</code> · dataset <b>{data}</b>"
        f" · backbone <b>{backbone}</b> · adapter <b>{adapter}</b>"
        f" · created {common.fmt_ago(run.get('created'))}</span>", unsafe_allow_html=True)
    access.ownership_note(run, "run")


def actions(run: dict) -> None:
    status = run["status"]
    bar = st.container(horizontal=True, gap="small")
    cols = [bar, bar, bar]
    if cols[0].button("All runs", icon=":material/arrow_back:", key="back"):
        open_run(None)
    manage = access.can_manage(run)  # shared with you: open it, try it, compare it; its owner changes it
    if status in ACTIVE and manage:
        requested = bool(run.get("cancel_requested"))
        if cols[1].button("Cancelling…" if requested else "Cancel", icon=":material/stop_circle:", key="cancel",
                          disabled=requested, help="Stop this run; Resume continues it later from its last checkpoint"):
            with common.guard("Could not cancel the run"):
                cancel(run["id"])
                st.rerun()
    if status in RESUMABLE and manage:
        if cols[1].button("Resume", icon=":material/play_arrow:", key="resume", type="primary",
                          help="Queue it again; it continues from its last checkpoint"):
            with common.guard("Could not resume the run"):
                resume(run["id"])
                common.flash("success", f"Run {run['id']} is queued again; it continues from its last checkpoint.")
                st.rerun()
    if status == "finished":
        if cols[2].button("Try it in the Playground", icon=":material/science:", key="to_playground", type="primary"):
            st.switch_page(common.PAGE_PLAYGROUND, query_params={"run": run["id"]})
    if manage:
        with bar:
            access.share_toggle("runs", run["id"], bool(run.get("shared")), key=f"share_run_{run['id']}",
                                name=run.get("name") or run["id"])


def plan_section(run: dict) -> None:
    """What auto (or the policy) chose for this run and why, one line each, from the run's plan.json."""
    plan = common.read_json(Path(run.get("run_dir") or "") / "plan.json")
    if not plan or not plan.get("reasons"):
        return
    with st.expander("How this run was planned", icon=":material/auto_awesome:", expanded=run["status"] in ACTIVE):
        st.markdown("\n".join(f"- {line}" for line in plan["reasons"]))


def live(run_id: str, active: bool) -> None:
    """The part that changes while a run trains: redrawn every second in a fragment, not a full page."""
    st.fragment(run_every=LIVE_EVERY_S if active else None)(_live_body)(run_id, active)


def _live_body(run_id: str, was_active: bool) -> None:
    with st.container(key="live"), common.guard("Could not read the run"):
        _live(run_id, was_active)


def _live(run_id: str, was_active: bool) -> None:
    run = common.store().get_run(run_id)
    if run is None:
        st.error(f"Run {run_id} no longer exists.")
        return
    if was_active and run["status"] not in ACTIVE:
        st.rerun()  # final now: redraw the page once with the report; the timer stops with it
    rows = metric_rows(run)
    progress_block(run, rows)
    curves(run, rows)


def progress_block(run: dict, rows: list[dict]) -> None:
    status = run["status"]
    c1, c2 = st.columns([4, 1.3])
    with c1:
        common.status_badge(status)
        frac = float(run.get("progress") or 0.0)
        phase = run.get("phase") or ""
        message = run.get("message") or ""
        text = f"{frac:.0%}" + (f" · {phase}" if phase and status == "running" else "") + (f" · {message}" if message else "")
        st.progress(min(max(frac, 0.0), 1.0), text=text)
        now = time.time()
        bits = []
        if run.get("started"):
            took = common.fmt_duration((run.get("finished") or now) - run["started"])
            bits.append(f"took {took}" if status not in ACTIVE else f"elapsed {took}")
        if status == "running":
            eta = run.get("eta_s")
            bits.append(f"about {common.fmt_duration(eta)} left" if eta is not None else "estimating the time left…")
        elif status == "queued":
            bits.append("waiting for the worker to pick it up")
        if common.where(run):
            bits.append(f"on {common.where(run)}")
        st.caption(" · ".join(bits) if bits else "")
    rss, gpu = latest(rows, "system", "rss_mb"), latest(rows, "system", "gpu_mb")
    if rss is None and status not in ACTIVE:
        return
    with c2:
        peak = max((r["value"] for r in rows if r["split"] == "system" and r["name"] == "rss_mb"
                    and r["value"] is not None), default=None)
        st.metric("Memory (RSS)", f"{rss:,.0f} MB" if rss is not None else "–",
                  help="Resident memory of the training process, last reading"
                       + (f"; peak {peak:,.0f} MB" if peak is not None else "") + (f"; GPU {gpu:,.0f} MB" if gpu else ""))
        if gpu:
            st.caption(f"GPU {gpu:,.0f} MB")


def curves(run: dict, rows: list[dict]) -> None:
    if not rows and run["status"] not in ACTIVE:
        st.caption("No training step was recorded for this run.")
        return
    from lepton.tasks.base import task_for_curves

    loss = series(rows, "train", "loss")
    task = task_for_curves({r["name"] for r in rows if r["split"] == "val"})
    val = {task_views.title(m): series(rows, "val", m, "epoch") for m in task.curve}
    n_val = len(next(iter(val.values()))[0])
    low = min((y for _, ys in val.values() for y in ys), default=0.0)  # R² can go below 0
    epochs = planned_epochs(run)
    n = len(loss[0])
    st.caption(f"{n} point{'s' if n != 1 else ''} of training loss · {n_val} validation point{'s' if n_val != 1 else ''}")
    waiting = "waiting for the first step…" if run["status"] in ACTIVE else "no data"
    a, b = st.columns(2)
    with a.container(key="chart-loss"):
        st.plotly_chart(charts.curve({"train loss": loss}, "Training loss", empty_note=waiting),
                        key="fig_loss", config={"displayModeBar": False})
    with b.container(key="chart-val"):
        st.plotly_chart(charts.curve(val, "Validation", x_title="epoch", y_range=(min(0.0, low * 1.05), 1.02),
                                     x_range=(0, epochs) if epochs else None,
                                     empty_note="after the first epoch" if run["status"] in ACTIVE else "no data"),
                        key="fig_val", config={"displayModeBar": False})
    if run["status"] in ACTIVE:
        _lr_and_speed_curves(rows, waiting)
        return
    # A finished run's page draws these two only when asked: every plotly chart costs the browser its own
    # render, and on cores busy training that, not the script (~0.08 s), is what made the page slow.
    more = st.expander("Learning rate and throughput", icon=":material/speed:", key=f"more_curves_{run['id']}",
                       on_change="rerun")
    if more.open:
        with more:
            _lr_and_speed_curves(rows, waiting)


def _lr_and_speed_curves(rows: list[dict], waiting: str) -> None:
    c, d = st.columns(2)
    with c.container(key="chart-lr"):
        st.plotly_chart(charts.curve({"learning rate": series(rows, "train", "lr")}, "Learning rate", height=220,
                                     empty_note=waiting, y_format=".1e"), key="fig_lr", config={"displayModeBar": False})
    with d.container(key="chart-speed"):
        st.plotly_chart(charts.curve({"samples/s": series(rows, "train", "samples_per_s")}, "Throughput (samples/s)",
                                     height=220, empty_note=waiting), key="fig_speed", config={"displayModeBar": False})


def planned_epochs(run: dict) -> int | None:
    """Epochs the run is set to train (its config, else its adapter's default): the validation chart's width."""
    cfg = run.get("config") or {}
    if cfg.get("epochs"):
        return int(cfg["epochs"])
    try:
        from lepton.adapters import ADAPTERS

        ds = common.datasets_by_id().get(cfg.get("data")) or {}
        _, adapter = common.model_names(cfg, ds.get("modality"))
        return int(ADAPTERS.get(adapter).default_epochs)
    except Exception:  # noqa: BLE001 - the chart then scales to its points
        return None


# ---------------------------------------------------------------- the end of a run
def load_report(run: dict) -> dict | None:
    return common.read_json(Path(run.get("run_dir") or "") / "report.json")


def outcome(run: dict) -> None:
    status = run["status"]
    if status == "failed":
        st.error(f"This run failed: {run.get('error') or run.get('message') or 'no error recorded'}",
                 icon=":material/error:")
        if run.get("log_tail"):
            with st.expander("Last lines of its log", expanded=True):
                st.code(run["log_tail"], language=None)
    elif status == "interrupted":
        st.warning(run.get("message") or "The process training this run stopped. Resume continues from its last checkpoint.",
                   icon=":material/pause_circle:")
    elif status == "cancelled":
        st.info(run.get("message") or "Cancelled. Resume continues from its last checkpoint.", icon=":material/cancel:")
    elif status == "finished":
        report = load_report(run)
        if report is None:
            st.warning("The run finished but its report.json could not be read.")
            return
        final_report(run, report)


def final_report(run: dict, report: dict) -> None:
    from lepton.tasks import TASKS

    st.subheader("Results")
    summary = report.get("summary") or {}
    split = summary.get("eval_split") or report.get("split") or "test"
    task = TASKS.get(report.get("task") or "single-label")
    first, second = task.headline[:2]
    c = st.columns(4)
    for col, metric in ((c[0], first), (c[1], second)):
        col.metric(f"{task_views.title(metric)} ({split})", task_views.fmt(metric, report.get(metric)),
                   help=task_views.METRIC_HELP.get(metric))
    best = summary.get("best_val_score", summary.get("best_val_macro_f1"))
    c[2].metric(f"Best validation {task_views.title(task.primary)}", task_views.fmt(task.primary, best),
                help=f"at epoch {summary.get('best_epoch')}" if summary.get("best_epoch") is not None else None)
    c[3].metric("Training time", common.fmt_duration(summary.get("train_seconds")),
                help=f"{summary.get('trainable_params', 0):,} trainable parameters" if summary.get("trainable_params") else None)
    kept = report.get("kept") or {}
    if kept.get("model") == "probe":
        tuned = kept.get("finetuned_test_score", kept.get("finetuned_test_macro_f1"))
        st.info(f"**Shipped: the untuned backbone's linear probe.** {kept.get('why', '').capitalize()}."
                + (f" The fine-tuned model, not shipped, scored {tuned:.3f} {task_views.title(task.primary)} on {split}."
                   if tuned is not None else ""), icon=":material/verified:")
    elif kept.get("model"):
        st.success(f"**Shipped: the fine-tuned model.** {kept.get('why', '').capitalize()}.", icon=":material/verified:")
    comp = kept.get("companion")
    if comp:
        st.caption(f":material/join: Blended with a TF-IDF logistic regression ({comp['kind']} companion) at weight "
                   f"{comp['weight']:g}: the blend scored {comp['val_macro_f1']:.3f} on validation, higher than the "
                   "model alone. Predictions use the blend.")
    from lepton.ui import report as report_ui

    with common.guard("Could not show the per-modality scores"):
        report_ui.modalities_section(report)  # multimodal runs: fused against each modality alone
    task_views.view_of(task.name).body(run, report)
    extensions(run, report)


def extensions(run: dict, report: dict) -> None:
    """The finished run's evaluation tabs and transfer section, each failing on its own."""
    from lepton.tasks import TASKS
    from lepton.ui import export as export_ui, report as report_ui, transfer as transfer_ui

    with common.guard("Could not show the evaluation"):
        report_ui.run_report(run, report)
    with common.guard("Could not show the transfer results"):
        transfer_ui.run_section(run)
    if TASKS.get(report.get("task") or "single-label").exclusive:  # the HTTP server answers with class probabilities
        export_ui.serve_panel(run, report_ui.modality_of(report))


def details(run: dict) -> None:
    from lepton.config import RunConfig

    with st.expander("Configuration and log", icon=":material/description:"):
        cfg = None
        try:
            cfg = RunConfig.from_dict(run.get("config") or {})
        except Exception:  # noqa: BLE001 - an old config still shows as YAML below
            pass
        if cfg is not None:
            import shlex

            st.code("lepton train " + " ".join(shlex.quote(a) for a in cfg.cli_args()), language="bash", wrap_lines=True)
            st.code(cfg.to_yaml(), language="yaml")
        st.caption(f"Run folder: `{run.get('run_dir')}`")
        if run.get("log_tail") and run["status"] != "failed":
            st.code(run["log_tail"], language=None)


def page() -> None:
    common.show_flash()
    run_id = common.query_param("run")
    if run_id:
        run_view(run_id)
    else:
        st.title("Runs")
        runs_list()
