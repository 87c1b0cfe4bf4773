"""Finished tiny runs of every modality, trained once per test session for the export and serving tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny_data import write_audio_folder, write_image_folder, write_text_csv

RECIPES = {  # modality -> (backbone, adapter, data writer): each a real run, a few seconds on 2 cores
    "text": ("tiny-text", "lora", lambda root: write_text_csv(root / "reviews.csv", n=80)),
    "image": ("tiny-image", "full", lambda root: write_image_folder(root / "shapes")),
    "audio": ("tiny-audio", "linear-probe", lambda root: write_audio_folder(root / "tones")),
}


@pytest.fixture(scope="session")
def deploy_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("deploy") / "home"


@pytest.fixture(scope="session")
def deploy_runs(deploy_home, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("deploy-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEPTON_HOME", str(deploy_home))
        from lepton.commands.core import train_foreground
        from lepton.config import RunConfig

        runs = {}
        for modality, (backbone, adapter, write) in RECIPES.items():
            # keep_probe off: the run ships its adapter (LoRA to merge), not the untuned backbone's probe
            cfg = RunConfig(data=str(write(root)), backbone=backbone, adapter=adapter, epochs=2, batch_size=8,
                            keep_probe=False)
            runs[modality] = Path(train_foreground(cfg)["run_dir"])
    return runs


@pytest.fixture
def in_deploy_home(deploy_home, monkeypatch) -> Path:
    monkeypatch.setenv("LEPTON_HOME", str(deploy_home))
    return deploy_home
