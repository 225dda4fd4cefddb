from pathlib import Path

from hydra import compose, initialize_config_dir

from covid_tl.config_check import group_options, unknown_group_option

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_unknown_backbone_gives_one_line_with_valid_options():
    error = unknown_group_option(["backbone=nope"], CONF)
    assert error == "error: unknown backbone 'nope'; valid backbone options: " + ", ".join(group_options(CONF, "backbone"))
    assert {"simple_cnn", "simple_fc"} <= set(group_options(CONF, "backbone"))


def test_sweeps_are_checked_value_by_value():
    assert "'resnet9'" in unknown_group_option(["-m", "backbone=simple_fc,resnet9"], CONF)
    assert unknown_group_option(["-m", "backbone=simple_fc,simple_cnn", "seed=1,2"], CONF) is None


def test_plain_keys_and_hydra_keys_pass():
    assert unknown_group_option(["hydra.run.dir=/tmp/x", "backbone.input_size=32", "trainer=gpu"], CONF) is None


def test_every_group_option_composes():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        for group in ["backbone", "freeze", "preprocessing", "augment", "optimizer", "scheduler", "trainer", "logger", "callbacks", "data"]:
            for option in group_options(CONF, group):
                cfg = compose("train", overrides=[f"{group}={option}"])
                assert "seed" in cfg
