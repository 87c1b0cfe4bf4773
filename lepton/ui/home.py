"""Home: what Lepton is, one-click demos, and the recent runs."""

from __future__ import annotations

import streamlit as st

from lepton.ui import access, common, task_views

# (modality, file under assets/demo, title, what it is)
DEMOS = [
    ("text", "topics.csv", "Text: topics", "Sentences labelled by topic."),
    ("image", "shapes.zip", "Images: shapes", "Pictures of shapes, by shape."),
    ("audio", "spoken_words.zip", "Audio: spoken words", "Short clips of spoken words."),
]


def intro() -> None:
    st.title("Lepton")
    st.markdown("<p class='lp-lead'>Teach a pretrained model your own labels, for text, images or audio. "
                "Upload examples, pick a backbone, watch it train live, then try it: all on your machine.</p>",
                unsafe_allow_html=True)


# The demos train a head on the offline default backbone's frozen features: the backbone runs once
# over the data and every epoch after costs milliseconds, so a first run ends in seconds on a laptop
# CPU (the recommended LoRA/full fine-tuning of the text default takes minutes there).
DEMO_ADAPTER = "linear-probe"


def demo_backbone(modality: str) -> str | None:
    try:
        from lepton.backbones import default_backbone

        return default_backbone(modality).name
    except Exception:  # noqa: BLE001 - the run itself reports a missing backbone
        return None


def start_demo(modality: str, filename: str, title: str) -> str:
    """Ingest the bundled demo (stored once, reused after) and queue a run with the default backbone."""
    from lepton.config import RunConfig
    from lepton.ui import data as data_ui
    from lepton.ui import train as train_ui

    res = data_ui.ingest_file(common.ASSETS / "demo" / filename, name=f"demo-{filename.split('.')[0]}")
    cfg = RunConfig(data=res.dataset.id, backbone=demo_backbone(modality), adapter=DEMO_ADAPTER,
                    name=f"Demo · {title.split(': ')[-1]}")
    return train_ui.submit(cfg)


def quick_start() -> None:
    demos = [d for d in DEMOS if (common.ASSETS / "demo" / d[1]).exists()]
    st.subheader("Quick start")
    if not demos:
        common.empty_state("Upload a CSV of labelled sentences, or a .zip of images or sounds in label folders, "
                           "on the **Data** page.", common.PAGE_DATA, "Add a dataset", ":material/database:")
        return
    st.caption("Train on a bundled demo dataset with the recommended settings: one click, then watch it learn.")
    cols = st.columns(len(demos))
    for col, (modality, filename, title, what) in zip(cols, demos):
        with col.container(border=True, key=f"demo-{modality}"):
            st.markdown(f"**{common.MODALITY_ICON.get(modality, '')} {title}**")
            st.caption(what)
            st.caption(f":material/neurology: {demo_backbone(modality) or 'default backbone'} + {DEMO_ADAPTER}")
            if st.button("Train the demo", key=f"demo_{modality}", type="primary", icon=":material/rocket_launch:",
                         width="stretch"):
                with common.guard("Could not start the demo"):
                    with st.spinner("Preparing the demo data…"):
                        run_id = start_demo(modality, filename, title)
                    st.switch_page(common.PAGE_RUNS, query_params={"run": run_id})


def recent_runs(limit: int = 6) -> None:
    st.subheader("Recent runs")
    runs = access.runs(limit=limit)
    if not runs:
        st.caption("No runs yet: start a demo above, or add your own data on the **Data** page.")
        return
    active = any(r["status"] in ("queued", "running") for r in runs)
    st.fragment(run_every=2.0 if active else None)(_recent_list)(limit, active)
    st.page_link(common.PAGE_RUNS, label="All runs", icon=":material/arrow_forward:")


def _recent_list(limit: int, was_active: bool) -> None:
    with common.guard("Could not list the runs"):
        _recent_rows(limit, was_active)


def _recent_rows(limit: int, was_active: bool) -> None:
    runs = access.runs(limit=limit)
    if was_active and not any(r["status"] in ("queued", "running") for r in runs):
        st.rerun()
    datasets = common.datasets_by_id()
    for r in runs:
        metrics = (r.get("result") or {}).get("metrics") or {}
        with st.container(border=True):
            c = st.columns([1.1, 2.8, 2.6, 1.1, 0.8], vertical_alignment="center")
            with c[0]:
                common.status_badge(r["status"])
            data, backbone, adapter = common.run_parts(r, datasets)
            title = r.get("name") or f"{data} · {backbone} + {adapter}"
            c[1].markdown(f"**{title}**  \n<span class='lp-muted'>{backbone} · {adapter} · {r['id']}</span>",
                          unsafe_allow_html=True)
            if r["status"] == "finished" and metrics.get("accuracy") is not None:
                c[2].markdown(f"accuracy **{metrics['accuracy']:.1%}** · macro-F1 **{metrics.get('macro_f1', 0):.3f}**")
            elif r["status"] == "finished" and isinstance(metrics.get(metrics.get("primary")), float):
                c[2].markdown(f"{task_views.title(metrics['primary'])} **{metrics[metrics['primary']]:.3f}**")
            elif r["status"] in ("queued", "running"):
                c[2].progress(float(r.get("progress") or 0.0), text=f"{float(r.get('progress') or 0):.0%}")
            else:
                c[2].caption(r.get("message") or "")
            c[3].caption(common.fmt_ago(r.get("created")))
            if c[4].button("Open", key=f"open_{r['id']}", width="stretch"):
                st.switch_page(common.PAGE_RUNS, query_params={"run": r["id"]})


def page() -> None:
    common.show_flash()
    intro()
    quick_start()
    recent_runs()
