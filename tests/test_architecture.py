"""Boundaries the design depends on, checked on the source itself."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
    return out


CORE = [p for p in (ROOT / "lepton").rglob("*.py") if "ui" not in p.relative_to(ROOT / "lepton").parts]


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_never_imports_streamlit(path):
    assert "streamlit" not in _imports(path), f"{path.relative_to(ROOT)} imports streamlit; only lepton/ui/ may"


def test_the_check_would_catch_it(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from streamlit import session_state\n")
    assert "streamlit" in _imports(bad)


def test_pages_stay_thin():
    for page in (ROOT / "pages").glob("*.py"):
        text = page.read_text(encoding="utf-8")
        assert "torch" not in _imports(page), f"{page.name} imports torch; pages call lepton.ui"
        assert len(text.splitlines()) <= 80, f"{page.name} has {len(text.splitlines())} lines; move logic to lepton/ui"
