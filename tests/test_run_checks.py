"""Checks of the composed config that train.py runs before a task writes anything."""
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from conftest import composed
from covid_tl.runtime.config_check import group_options
from covid_tl.core.errors import ConfigError
from covid_tl.runtime.config_check import missing_keys
from covid_tl.runtime.run_checks import check_script_config, check_train_config, resume_files

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.mark.parametrize("group", ["trainer", "logger", "callbacks", "experiment", "data", "optimizer", "scheduler",
                                   "backbone", "model", "freeze", "preprocessing", "augment", "cam"])
def test_every_shipped_option_passes(group):
    needs = {"manifest": ["data.path=x.csv"], "folders": ["data.root=x"]}
    for option in group_options(CONF, group):
        if group == "data" and option in ("nih14", "lung_masks", "cohen_v7labs_lungs"):
            continue  # data of the other tasks (pretrain, segment), checked with their configs
        check_train_config(composed("train", f"{group}={option}", *needs.get(option, []) * (group == "data")))


def test_the_other_tasks_configs_pass():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        segment = compose("segment", overrides=["hydra.run.dir=/tmp/covid-tl-run"])
        pretrain = compose("train", overrides=["hydra.run.dir=/tmp/covid-tl-run", "task=pretrain", "data=nih14"])
    for cfg in (segment, pretrain):
        with open_dict(cfg):
            cfg.pop("hydra", None)
        check_train_config(cfg)


@pytest.mark.parametrize("config_name, overrides, callbacks", [
    ("train", [], {"model_checkpoint", "rich_progress_bar", "grad_cam"}),
    ("train", ["callbacks=minimal"], {"model_checkpoint", "rich_progress_bar"}),
    ("train", ["callbacks=[default,early_stopping]"], {"model_checkpoint", "rich_progress_bar", "grad_cam", "early_stopping"}),
    ("train", ["task=pretrain", "data=nih14"], {"model_checkpoint", "rich_progress_bar"}),
    ("train", ["task=pretrain", "data=nih14", "callbacks=[minimal,early_stopping]"],
     {"model_checkpoint", "rich_progress_bar", "early_stopping"}),
    ("segment", [], {"model_checkpoint", "rich_progress_bar"}),
    ("segment", ["callbacks=[minimal,lr_monitor]"], {"model_checkpoint", "rich_progress_bar", "lr_monitor"})])
def test_grad_cam_comes_with_the_classifier_task_only(config_name, overrides, callbacks):
    """The config composes the callbacks each task runs (nothing is skipped by name in code):
    the classifier's default has the Grad-CAM grid, pretraining's and the segmenter's do not."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides)
        assert set(cfg.callbacks) == callbacks
        assert compose(config_name, overrides=[*overrides, "callbacks=none"]).callbacks is None


@pytest.mark.parametrize("config_name, overrides", [("train", ["task=pretrain", "data=nih14", "callbacks=default"]),
                                                    ("segment", ["callbacks=[minimal,grad_cam]"])])
def test_grad_cam_added_to_another_task_is_one_line(config_name, overrides):
    cfg = composed(config_name, *overrides)
    with pytest.raises(ConfigError, match=f"callbacks.grad_cam explains a COVID-19 classifier's call, which task={cfg.task} "
                                          "does not make: leave it out"):
        check_train_config(cfg)


@pytest.mark.parametrize("override, says", [
    ("trainer.max_epochs=abc", "trainer.max_epochs='abc' does not fit Trainer's max_epochs (Optional[int])"),
    ("trainer.max_epochs=2.5", "trainer.max_epochs=2.5 does not fit"),
    ("trainer.precision=31", "trainer.precision=31 does not fit"),
    ("+trainer.max_epoch=3", "trainer.max_epoch is not an argument of Trainer; valid: accelerator,"),
    ("callbacks.model_checkpoint.save_top_k=one", "callbacks.model_checkpoint.save_top_k='one' does not fit"),
    ("cam.lungs.mode=mask", "cam.lungs.mode='mask' does not fit CamLungs's mode"),
    ("cam.tile=abc", "cam.tile='abc' does not fit CamOptions's tile (int: input should be a valid integer)"),
    ("cam.tile=8", "cam.tile=8 does not fit CamOptions's tile (int: input should be greater than or equal to 16)"),
    ("cam.method=saliency", "cam.method='saliency' does not fit CamOptions's method (Literal['gradcam', 'gradcam++',"),
    ("threshold=2", "threshold must be a probability in [0, 1]"),
    ("threshold=true", "threshold must be a probability in [0, 1]"),
    ("threshold=foo", "threshold must be a probability in [0, 1], youden, sens@X or spec@X"),
    ("threshold=sens@1.5", "threshold=sens@1.5: the sensitivity after sens@ must be a number in (0, 1]"),
    ("threshold=spec@1.5", "threshold=spec@1.5: the specificity after spec@ must be a number in (0, 1]"),
    ("calibrate=maybe", "calibrate='maybe' does not fit RunOptions's calibrate (bool)"),
    ("seed=abc", "seed='abc' does not fit RunOptions's seed (int)"),  # not data.split_seed, which copies it
    ("seed=1.5", "seed=1.5 does not fit RunOptions's seed (int)"),
    ("trainer.max_epochs=0", "trainer.max_epochs must be a whole number >= 1, got 0"),
    ("trainer.max_epochs=-1", "trainer.max_epochs=-1 trains until killed"),
    ("data.batch_size=abc", "data.batch_size='abc' does not fit XrayDataModule's batch_size (int)"),
    ("data.batch_size=0", "data.batch_size must be a whole number >= 1, got 0"),
    ("data.num_workers=-1", "data.num_workers must be a whole number >= 0 or auto, got -1"),
    ("data.val_fraction=abc", "data.val_fraction='abc' does not fit XrayDataModule's val_fraction"),
    ("optimizer.lr=abc", "optimizer.lr='abc' does not fit Adam's lr"),
    ("optimizer.lr=-1", "optimizer (torch.optim.Adam): Invalid learning rate: -1"),
    ("optimizer=sgd optimizer.momentum=-0.5", "optimizer (torch.optim.SGD): Invalid momentum value: -0.5"),
    ("data=manifest", "missing required value: add data.path=... to the command line"),
])
def test_mistakes_are_one_line_that_names_the_key(override, says):
    with pytest.raises(ConfigError) as excinfo:
        check_train_config(composed("train", *override.split()))
    assert says in str(excinfo.value) and "\n" not in str(excinfo.value)


# One mechanism for every group: each key is typed by the signature of the code that takes it
# (its `_target_`, or run_checks.TYPED_BY's entry for a node without one).
@pytest.mark.parametrize("override, says", [
    ("data.sources.synthetic.n_patients=abc",
     "data.sources.synthetic.n_patients='abc' does not fit SyntheticSource's n_patients (int: input should be a valid integer)"),
    ("data.sources.synthetic.n_patients=1",
     "data.sources.synthetic.n_patients=1 does not fit SyntheticSource's n_patients (int: input should be greater than or equal to 2)"),
    ("data.sources.synthetic.shortcut.p_covid=abc", "data.sources.synthetic.shortcut.p_covid='abc' does not fit ShortcutSpec's p_covid"),
    ("optimizer.weight_decay=abc", "optimizer.weight_decay='abc' does not fit Adam's weight_decay (float)"),
    ("scheduler=cosine scheduler.T_max=abc", "scheduler.T_max='abc' does not fit CosineAnnealingLR's T_max (int)"),
    ("model.backbone_lr_scale=abc", "model.backbone_lr_scale='abc' does not fit CovidClassifier's backbone_lr_scale (float)"),
    ("model.compile=maybe", "model.compile='maybe' does not fit CovidClassifier's compile (bool)"),
    ("freeze=last_n freeze.trainable=abc", "freeze.trainable='abc' does not fit apply_freeze's trainable (int | None)"),
    ("preprocessing=crop preprocessing.crop.fraction=abc", "preprocessing.crop.fraction='abc' does not fit crop_borders's fraction"),
    ("preprocessing.cache=maybe", "preprocessing.cache='maybe' does not fit CacheOptions's cache (bool)"),
    ("augment=study augment.rotate.p=abc", "augment.rotate.p='abc' does not fit StepSetting's p (float)"),
    ("augment=acquisition augment.gamma.p=abc", "augment.gamma.p='abc' does not fit StepSetting's p (float)"),
    ("watermark.p=abc", "watermark.p='abc' does not fit WatermarkTransplant's p (float)"),
    ("augment=imaging_chain augment.scale.range=abc", "augment.scale.range='abc' does not fit StepSetting's range"),
    ("trainer.devices=[a]", "trainer.devices=['a'] does not fit Trainer's devices"),
    ("backbone=vgg16 backbone.input_size=abc", "backbone.input_size='abc' does not fit vgg16's input_size (int)"),
    ("backbone.head.dropout=abc", "backbone.head.dropout='abc' does not fit Head's dropout (float)"),
    ("bootstrap=-1", "bootstrap=-1 does not fit RunOptions's bootstrap (int: input should be greater than or equal to 0)"),
    ("fast_frozen=maybe", "fast_frozen='maybe' does not fit RunOptions's fast_frozen (bool)"),
])
def test_a_wrong_type_in_any_group_is_one_line_naming_key_and_type(override, says):
    with pytest.raises(ConfigError) as excinfo:
        check_train_config(composed("train", *override.split()))
    assert str(excinfo.value).startswith(says) and "\n" not in str(excinfo.value)


def test_yaml_lists_fit_tuple_arguments():
    """images_per_patient: [1, 3] is a tuple[int, int] argument: lists are not refused as tuples."""
    check_train_config(composed("train", "data.sources.synthetic.images_per_patient=[1,3]", "augment=imaging_chain"))


def test_no_epoch_limit_is_allowed_with_early_stopping():
    check_train_config(composed("train", "trainer.max_epochs=-1", "callbacks=[default,early_stopping]"))


def test_resume_needs_an_existing_file_and_last_may_find_none(tmp_path):
    with pytest.raises(ConfigError, match="ckpt_path=.*missing.ckpt: no such checkpoint file"):
        check_train_config(composed("train", f"ckpt_path={tmp_path / 'missing.ckpt'}"))
    check_train_config(composed("train", "ckpt_path=last", run_dir=str(tmp_path)))  # no last.ckpt yet: a fresh start


def test_last_is_looked_for_where_the_default_checkpoint_callback_writes(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert resume_files(composed("train", "ckpt_path=last", run_dir=str(tmp_path))) == [tmp_path / "checkpoints" / "last.ckpt"]


def test_missing_keys_reads_the_unresolved_config():
    cfg = OmegaConf.create({"a": "???", "b": {"c": "${a}", "d": ["x", "???"]}, "e": 1})
    assert missing_keys(OmegaConf.to_container(cfg, resolve=False)) == ["a", "b.d.1"]


@pytest.mark.parametrize("script, override, says", [
    ("predict", "num_workers=-1", "num_workers must be a whole number >= 0, got -1"),
    ("predict", "batch_size=abc", "batch_size must be a whole number >= 1, got 'abc'"),
    ("explain", "n=0", "n must be a whole number >= 1, got 0"),
    ("evaluate", "bootstrap=true", "bootstrap=True does not fit RunOptions's bootstrap (int: input should be a valid integer)"),
    ("evaluate", "trust_checkpoint=maybe", "trust_checkpoint='maybe' does not fit RunOptions's trust_checkpoint (bool)"),
    ("explain", "cam.lungs.mode=3", "cam.lungs.mode=3 does not fit CamLungs's mode"),
    ("predict", "cam.tile=abc", "cam.tile='abc' does not fit CamOptions's tile"),
    ("evaluate", "cam.overlay=glow", "cam.overlay='glow' does not fit CamOptions's overlay"),
])
def test_inference_scripts_refuse_bad_counts_in_one_line(script, override, says):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(script, overrides=["ckpt_path=x.ckpt", *["images=x"] * (script == "predict"), override])
    with pytest.raises(ConfigError, match=re.escape(says)):
        check_script_config(cfg)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        check_script_config(compose(script, overrides=["ckpt_path=x.ckpt"] + ["images=x"] * (script == "predict")))
