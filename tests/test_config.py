from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from covid_tl.runtime.config_check import command_line_error, group_options, unknown_group_option, unknown_key

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
        for group in ["backbone", "freeze", "preprocessing", "augment", "optimizer", "scheduler", "trainer", "logger",
                      "callbacks", "data", "debug", "hparams_search"]:
            for option in group_options(CONF, group):
                cfg = compose("train", overrides=[f"{group}={option}"])
                assert "seed" in cfg


def test_a_list_of_options_is_checked_option_by_option():
    assert unknown_group_option(["callbacks=[default,early_stopping,lr_monitor]"], CONF) is None
    assert "'early_stop'" in unknown_group_option(["callbacks=[default,early_stop]"], CONF)


def test_misspelled_key_names_the_closest_existing_one():
    assert unknown_key(["trainer.max_epoch=3"], CONF, "train") == (
        "error: unknown key 'trainer.max_epoch'; did you mean 'trainer.max_epochs'?")
    assert unknown_key(["data.sources.synthetic.n_patient=3"], CONF, "train").endswith(
        "did you mean 'data.sources.synthetic.n_patients'?")
    # A key of an option not chosen: which option brings it.
    assert unknown_key(["freeze.trainable=2"], CONF, "train") == "error: unknown key 'freeze.trainable'; it comes with freeze=last_n"
    assert unknown_key(["zzz=1"], CONF, "train").startswith("error: unknown key 'zzz'; --cfg job lists the keys")



def test_a_moved_key_names_where_it_went():
    """The watermark block left augment for a group of its own (issue #20)."""
    assert command_line_error(["augment=acquisition", "augment.watermark.p=0.5"], CONF, "train") == (
        "error: unknown key 'augment.watermark.p'; did you mean 'watermark.p=0.5'? (renamed)")


def test_keys_of_chosen_options_sweeps_and_additions_pass():
    assert unknown_key(["freeze=last_n", "freeze.trainable=2", "-m", "seed=1,2", "+note=x"], CONF, "train") is None
    assert unknown_key(["callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=5"], CONF, "train") is None
    assert unknown_key(["-m", "backbone=vgg16,simple_cnn", "backbone.keep_fc=1", "hydra.run.dir=/tmp/x"], CONF, "train") is None


def test_early_stopping_and_lr_monitor_are_off_by_default_and_added_by_list():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        default = compose("train")
        added = compose("train", overrides=["callbacks=[default,early_stopping,lr_monitor]", "callbacks.early_stopping.patience=5"])
        minimal = compose("train", overrides=["callbacks=minimal"])
    assert set(default.callbacks) == {"model_checkpoint", "rich_progress_bar", "grad_cam"}
    assert set(added.callbacks) == {"model_checkpoint", "rich_progress_bar", "grad_cam", "early_stopping", "lr_monitor"}
    assert added.callbacks.early_stopping.patience == 5 and added.callbacks.early_stopping.monitor == "val/loss"
    assert set(minimal.callbacks) == {"model_checkpoint", "rich_progress_bar"}


def test_loggers_default_to_csv_and_tensorboard_and_many_holds_all_four():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        assert set(compose("train").logger) == {"csv", "tensorboard"}
        assert set(compose("train", overrides=["logger=many"]).logger) == {"csv", "tensorboard", "mlflow", "wandb"}
        assert set(compose("train", overrides=["logger=[csv,mlflow]"]).logger) == {"csv", "mlflow"}


def test_debug_options_override_the_trainer_last():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        fdr = compose("train", overrides=["debug=fdr", "trainer=gpu"])
        limit = compose("train", overrides=["debug=limit", "experiment=paper/fig3"])
    assert fdr.trainer.fast_dev_run is True and fdr.trainer.accelerator == "cpu"
    assert (limit.trainer.max_epochs, limit.trainer.limit_train_batches) == (3, 5)


@pytest.mark.parametrize("args", [["-sc", "install=bash"], ["--shell-completion", "query=bash"], ["--info", "zzz=1"],
                                  ["--info=config", "backbone=nope"], ["--help", "zzz=1"], ["--hydra-help"],
                                  ["--cfg", "job", "trainer.max_epoch=3"], ["--cfg", "job", "--resolve", "-p", "trainer", "zzz=1"]])
def test_hydra_own_flags_pass_untouched(args):
    assert command_line_error(args, CONF, "train") is None


def test_the_command_line_check_finds_what_its_parts_find():
    assert command_line_error(["backbone=nope"], CONF, "train").startswith("error: unknown backbone 'nope'")
    assert command_line_error(["ckpt_pth=x"], CONF, "evaluate") == "error: unknown key 'ckpt_pth'; did you mean 'ckpt_path'?"
    assert command_line_error(["-m", "seed=1,2"], CONF, "train") is None


def test_a_value_a_structured_config_refuses_is_one_line():
    """preprocessing.lungs.margin is a float field of LungParams: Hydra refuses 'abc' while it
    composes, with a screen of text; the command line check says it in one line."""
    import covid_tl.preprocess.schema  # noqa: F401  (registered as train.py registers it)

    assert command_line_error(["preprocessing=lungs", "preprocessing.lungs.margin=abc"], CONF, "train") == (
        "error: preprocessing.lungs.margin: Value 'abc' of type 'str' could not be converted to Float (a field of LungParams)")
    assert command_line_error(["preprocessing=lungs", "preprocessing.lungs.margin=0.1"], CONF, "train") is None
