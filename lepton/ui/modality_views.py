"""How one item of each modality shows on a page, and how the Playground takes one in: one view per single
modality of lepton/data, registered under the same name, so a multimodal row draws each of its cells (and the
Playground one input per branch) without the pages branching on a modality's name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from lepton.registry import Registry
from lepton.ui import common

VIEWS: Registry[type["ModalityView"]] = Registry("modality view")

IMAGE_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp"]
AUDIO_TYPES = ["wav", "flac", "ogg", "mp3"]
SNIPPET = 280
MISSING = ":gray[:material/block: missing]"


class ModalityView:
    weight: float = 1.0  # its column's share of a multimodal row
    file: bool = True  # a stored item is a file (a path relative to its dataset), not the content itself

    @staticmethod
    def show(x: Any, width: int | str = 120) -> None:
        """One stored item: the text, or a file (a path or its bytes); width: an image's."""
        raise NotImplementedError

    @staticmethod
    def source(key: str) -> Any:
        """The Playground's widget for one input: what the user gave (text, or an uploaded file), or None."""
        raise NotImplementedError

    @staticmethod
    def value(given: Any) -> Any:
        """What a widget gave, as a Predictor input: the text, or the file's bytes; None when nothing was given."""
        return None if given is None else given.getvalue()


def label(modality: str) -> str:
    return f"{common.MODALITY_ICON.get(modality, '')} **{modality}**"


def cell(modality: str, x: Any) -> None:
    """One modality's value in a row, or "missing" where the row has none."""
    if x is None:
        st.markdown(MISSING)
        return
    VIEWS.get(modality).show(x)


def snippet(text: str) -> str:
    # One line: a newline in the text would end the quote, and a long review would push the row apart.
    text = " ".join(str(text).split())
    return f"> {text[:SNIPPET]}{'…' if len(text) > SNIPPET else ''}"


@VIEWS.register("text")
class TextView(ModalityView):
    weight = 3.0
    file = False

    @staticmethod
    def show(x: Any, width: int | str = 120) -> None:
        st.markdown(snippet(x))

    @staticmethod
    def source(key: str) -> Any:
        return st.text_area("Text", key=f"pg_text_{key}", height=120, placeholder="Type or paste a sentence…")

    @staticmethod
    def value(given: Any) -> Any:
        return given if isinstance(given, str) and given.strip() else None


@VIEWS.register("image")
class ImageView(ModalityView):
    weight = 1.4

    @staticmethod
    def show(x: Any, width: int | str = 120) -> None:
        st.image(str(x) if isinstance(x, Path) else x, width=width)

    @staticmethod
    def source(key: str) -> Any:
        tabs = st.tabs(["Upload a file", "Camera"])
        with tabs[0]:
            up = st.file_uploader("Image", type=IMAGE_TYPES, key=f"pg_upload_{key}")
        with tabs[1]:
            shot = st.camera_input("Take a picture", key=f"pg_camera_{key}")
        return up or shot


@VIEWS.register("audio")
class AudioView(ModalityView):
    weight = 2.0

    @staticmethod
    def show(x: Any, width: int | str = 120) -> None:
        st.audio(str(x) if isinstance(x, Path) else x)

    @staticmethod
    def source(key: str) -> Any:
        tabs = st.tabs(["Upload a file", "Record"])
        with tabs[0]:
            up = st.file_uploader("Sound", type=AUDIO_TYPES, key=f"pg_upload_{key}")
        with tabs[1]:
            rec = st.audio_input("Record a few seconds", key=f"pg_mic_{key}")
        return up or rec


def _columns(modalities: list[str], lead: bool) -> list[Any]:
    weights = ([1.0] if lead else []) + [VIEWS.get(m).weight for m in modalities]
    return st.columns(weights, vertical_alignment="center")


def header(modalities: list[str], lead: str | None = None) -> None:
    """The titles above rows drawn by `row`."""
    cols = _columns(modalities, lead is not None)
    if lead is not None:
        cols[0].markdown(lead)
    for col, m in zip(cols[len(cols) - len(modalities):], modalities):
        col.markdown(label(m))


def row(modalities: list[str], x: dict[str, Any], lead: str | None = None, note: str | None = None) -> None:
    """A multimodal row as it is: each modality side by side (text, thumbnail, player), "missing" where blank;
    `lead` is a first, narrow column (the label), `note` a caption under it (where the row came from)."""
    cols = _columns(modalities, lead is not None)
    if lead is not None:
        cols[0].markdown(lead)
        if note:
            cols[0].caption(note)
    for col, m in zip(cols[len(cols) - len(modalities):], modalities):
        with col:
            cell(m, x.get(m))
