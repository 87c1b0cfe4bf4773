import argparse

import pytest

from lepton.cli import add_config_flags, config_from_args
from lepton.config import RunConfig
from lepton.errors import ConfigError


def test_yaml_round_trip_is_exact():
    cfg = RunConfig(data="abc", backbone="tiny-text", adapter="lora", epochs=3, lr=2e-4, max_minutes=1.5, compile=True)
    assert RunConfig.from_yaml(cfg.to_yaml()) == cfg


def test_every_field_has_help():
    assert all(RunConfig.fields_help().values())


@pytest.mark.parametrize("raw, needle", [
    ({"data": "x", "epoch": 3}, "unknown field(s) epoch"),
    ({"data": "x", "epochs": "three"}, "epochs='three' should be int"),
    ({"data": "x", "device": "tpu"}, "is not one of auto, cpu, cuda, mps"),
    ({"data": "x", "batch_size": 0}, "batch_size=0 is out of range"),
    ({"data": "x", "compile": "maybe"}, "should be bool"),
])
def test_strict_parse_names_the_problem(raw, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        RunConfig.from_dict(raw)


def test_form_strings_are_coerced():
    cfg = RunConfig.from_dict({"data": "x", "epochs": "2", "lr": "1e-3", "compile": "true", "max_minutes": 3})
    assert (cfg.epochs, cfg.lr, cfg.compile, cfg.max_minutes) == (2, 1e-3, True, 3.0)


def test_cli_args_reproduce_the_config(tmp_path):
    cfg = RunConfig(data="ds1", backbone="tiny-text", adapter="full", epochs=2, batch_size=8, lr=1e-4, seed=3)
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    assert config_from_args(parser.parse_args(cfg.cli_args())) == cfg
    # flags override a --config file
    path = tmp_path / "run.yaml"
    cfg.save(path)
    again = config_from_args(parser.parse_args(["--config", str(path), "--epochs", "7"]))
    assert again.epochs == 7 and again.backbone == "tiny-text"


def test_bad_yaml_is_a_readable_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunConfig.load(p)
