"""Real offline pretrained backbones on the bundled demo data (real structure, not noise)."""

from pathlib import Path

import pytest

from lepton.backbones import default_backbone
from lepton.config import RunConfig
from lepton.predict import Predictor
from lepton.train import run

DEMO = Path(__file__).parent.parent / "assets" / "demo"
CASES = [("text", DEMO / "topics.csv", "linear-probe"),
         ("image", DEMO / "shapes.zip", "linear-probe"),
         ("audio", DEMO / "spoken_words.zip", "linear-probe")]


@pytest.mark.integration
@pytest.mark.parametrize("modality, data, adapter", CASES, ids=[c[0] for c in CASES])
def test_default_backbone_beats_chance_clearly(modality, data, adapter, home):
    spec = default_backbone(modality)
    result = run(RunConfig(data=str(data), backbone=spec.name, adapter=adapter))
    n_classes = len(Predictor.load(result["run_id"]).classes)
    chance = 1 / n_classes
    # "Clearly": at least halfway from chance to perfect on held-out data.
    assert result["metrics"]["accuracy"] >= chance + (1 - chance) / 2, result["metrics"]


@pytest.mark.integration
def test_lora_on_real_minilm_trains_and_predicts(home):
    result = run(RunConfig(data=str(DEMO / "topics.csv"), backbone="minilm-l6", adapter="lora", epochs=1,
                           batch_size=32))
    assert result["metrics"]["trainable_params"] < 0.02 * result["metrics"]["total_params"]
    pred = Predictor.load(result["run_id"])
    out = pred.predict("the striker scored twice in the second half")
    assert set(out["probs"]) == set(pred.classes)
