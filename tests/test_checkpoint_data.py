"""A checkpoint is data: its run config names only covid-tl's own code, decides no place to
write, and the file is bounded before torch reads it (issue #18)."""
import collections
import copy
import io
import pathlib
import pickle
import subprocess
import sys
import zipfile

import cv2
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from conftest import PEAK_RSS, ROOT, TINY, composed, run_script
from covid_tl.runtime.config_check import group_options
from covid_tl.data.synthetic.source import SyntheticSource
from covid_tl.core.errors import ConfigError
from covid_tl.models.checkpoint import CACHE_DIR, CheckpointError, load_run
from covid_tl.runtime.run_checks import check_train_config
from covid_tl.tasks.predict import predict
from covid_tl.runtime.torch_files import (MAX_RECORD_BYTES, OWN_CODE, RUN_TARGETS, TRAINING_CODE, check_checkpoint_file,
                                  check_run_config, is_own_code)

CONF = ROOT / "conf"
BOMB_BYTES = 2 << 30  # what the zip bomb inflates to


class TouchOnLoad:
    """Unpickling this creates `path`: what a crafted file could do instead (run any code)."""

    def __init__(self, path):
        self.path = pathlib.Path(path)

    def __reduce__(self):
        return pathlib.Path.touch, (self.path,)


@pytest.fixture
def legit(untrained_checkpoint):
    """A covid-tl checkpoint as training saves it (conftest's, untrained: nothing here needs a
    good model): the resolved run config, an Adam state."""
    return untrained_checkpoint


def edited(source, target, edit):
    """A copy of the checkpoint `source` at `target` with `edit(config)` applied to its run config."""
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    config = copy.deepcopy(checkpoint["hyper_parameters"]["config"])
    edit(config)
    checkpoint["hyper_parameters"]["config"] = config
    torch.save(checkpoint, target)
    return target


def torch_load_payload(marker):
    """The optimizer block of the issue: torch.load on pickle bytes whose loading touches `marker`."""
    return {"_target_": "torch.load", "f": {"_target_": "io.BytesIO", "initial_bytes": pickle.dumps(TouchOnLoad(marker))},
            "weights_only": False}


def one_line(error):
    message = str(error.value)
    assert "\n" not in message, message
    return message


# --- the run config: covid-tl's own code only --------------------------------------------------


def test_a_crafted_optimizer_is_refused_and_never_built_even_when_trusted(legit, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = edited(legit, tmp_path / "crafted.ckpt", lambda c: c.update(optimizer=torch_load_payload(marker)))
    with pytest.raises(CheckpointError) as excinfo:
        load_run(ckpt)
    assert one_line(excinfo).startswith(f"{ckpt} config key optimizer._target_ names torch.load, which is not one of "
                                        "covid-tl's own classes or functions")
    assert str(excinfo.value).endswith("load it with trust_checkpoint=true") and not marker.exists()
    run_cfg, model = load_run(ckpt, trust=True)  # trusted: loads, and still builds no optimizer
    assert not marker.exists()
    assert not {"optimizer", "scheduler", "trainer", "callbacks", "logger"} & set(run_cfg)
    with pytest.raises(CheckpointError, match="is for inference: it has no optimizer"):
        model.configure_optimizers()


def test_a_crafted_open_truncates_nothing(legit, tmp_path):
    victim = tmp_path / "notes.txt"
    victim.write_text("keep me")
    opener = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    for block in ("optimizer", "data"):
        ckpt = edited(legit, tmp_path / f"{block}.ckpt", lambda c: c.update({block: opener}))
        with pytest.raises(CheckpointError, match=f"config key {block}._target_ names builtins.open"):
            load_run(ckpt)
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize("target", [
    "covid_tl.engine.build.instantiate",             # Hydra's, imported by covid_tl.engine.build
    "covid_tl.tasks.train.torch.load",        # a module attribute leading out of covid_tl
    "covid_tl.models.checkpoint.torch.load",
    "covid_tl.runtime.torch_files.importlib.import_module",
    "covid_tl.models.module.CovidClassifier.load_from_checkpoint",  # inherited from Lightning
    "covid_tl.models.module.CovidClassifier.__class__",
    "covid_tl.core.errors.ConfigError.__subclasses__",
    "covid_tl.models.module.torch",           # a module is not a class or function
    "covid_tl", "covid_tl.nothing_here.Thing", "covid_tl..build", "builtins.eval", "os.system", "torch.load",
    "torch.optim.adamw.torch.load",
])
def test_only_covid_tls_own_classes_and_functions_pass(target):
    assert not is_own_code(target, OWN_CODE)


@pytest.mark.parametrize("target", ["torch.optim.adamw.torch.load", "torch.optim.lr_scheduler.warnings.warn",
                                    "pytorch_lightning.loggers.tensorboard.os.system", "torch.load", "torch.optimizer.X"])
def test_a_training_only_block_reaches_no_further_than_torch_optim_and_lightning(target):
    assert not is_own_code(target, TRAINING_CODE)


def test_run_targets_are_what_the_shipped_configs_build_and_training_blocks_reach_libraries():
    """RUN_TARGETS is exactly what conf/ names outside the training-only groups (and outside the
    scripts' own keys: hydra callbacks); those groups' library targets pass only there."""
    training = {"optimizer", "scheduler", "trainer", "callbacks", "logger", "cam", "shortcuts", "hparams_search", "debug",
                "hydra"}

    def targets(paths):
        return {line.split("_target_:")[1].split("#")[0].strip() for path in paths
                for line in path.read_text().splitlines() if "_target_:" in line and "{" not in line}

    groups = [p for p in CONF.glob("*/**/*.yaml") if p.relative_to(CONF).parts[0] not in training]
    assert targets(groups) == RUN_TARGETS
    assert all(is_own_code(t) for t in RUN_TARGETS)
    libraries = {t for t in targets(CONF.rglob("*.yaml")) if t.startswith(("torch.optim", "pytorch_lightning"))}
    assert len(libraries) >= 8 and all(is_own_code(t, TRAINING_CODE) and not is_own_code(t) for t in libraries)


@pytest.mark.parametrize("target", ["covid_tl.tasks.train.train", "covid_tl.reporting.plots.roc_curves",
                                    "covid_tl.models.checkpoint.store_operating_point",
                                    "covid_tl.core.files.write_atomically"])
def test_covid_tls_own_writers_are_no_run_target(legit, target):
    """Own code, but a task or a writer puts files where its arguments say: refused in a run block."""
    config = torch.load(legit, map_location="cpu", weights_only=True)["hyper_parameters"]["config"]
    config["preprocessing"] = {"_target_": target, "run_dir": "/tmp/elsewhere"}
    assert is_own_code(target)
    with pytest.raises(ConfigError, match=f"preprocessing._target_ names {target}, which is not one of the covid-tl"):
        check_run_config(config, "model.ckpt")


@pytest.mark.parametrize("group", ["optimizer", "scheduler", "logger", "callbacks", "augment", "preprocessing", "data"])
def test_the_run_config_of_every_shipped_option_passes(group):
    for option in group_options(CONF, group):
        overrides = {"manifest": ["data.path=/x/manifest.csv"], "folders": ["data.root=/x"]}.get(option, [])
        if option in ("nih14", "lung_masks", "cohen_v7labs_lungs"):
            continue  # pretraining and segmenter data: no classifier checkpoint carries them
        config = OmegaConf.to_container(composed("train", f"{group}={option}", *overrides), resolve=True)
        check_run_config(config, "ckpt")


@pytest.mark.parametrize("key, entry", [
    ("data.sources.synthetic.shortcut", {"_target_": "subprocess.run", "args": ["true"]}),
    ("augment", {"_target_": "covid_tl.preprocess.augment.build_augmentation",
                 "_args_": [{"_target_": "functools.partial", "_args_": ["os.system"]}]}),
    ("preprocessing", {"_target_": "os.system", "_partial_": True}),
])
def test_a_nested_or_partial_target_is_found_and_named(legit, key, entry):
    config = torch.load(legit, map_location="cpu", weights_only=True)["hyper_parameters"]["config"]
    node = config
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = entry
    with pytest.raises(ConfigError) as excinfo:
        check_run_config(config, "model.ckpt")
    named = {"data.sources.synthetic.shortcut": "data.sources.synthetic.shortcut._target_ names subprocess.run",
             "augment": "augment._args_.0._target_ names functools.partial",
             "preprocessing": "preprocessing._target_ names os.system"}[key]
    assert f"model.ckpt config key {named}," in one_line(excinfo)


def test_an_interpolation_that_would_build_a_target_after_the_check_is_refused(legit, tmp_path):
    victim = tmp_path / "notes.txt"
    decoded = "${oc.decode:'{_target_: builtins.open, file: " + str(victim) + ", mode: w}'}"
    ckpt = edited(legit, tmp_path / "decode.ckpt", lambda c: c["data"]["sources"].update(extra=decoded))
    with pytest.raises(CheckpointError) as excinfo:
        load_run(ckpt)
    assert "config key data.sources.extra holds an interpolation" in one_line(excinfo) and not victim.exists()


def test_trust_checkpoint_loads_a_legit_but_unusual_config(legit, tmp_path):
    ckpt = edited(legit, tmp_path / "unusual.ckpt", lambda c: c["freeze"].update(_target_="mylab.freeze.custom"))
    with pytest.raises(CheckpointError, match="config key freeze._target_ names mylab.freeze.custom"):
        load_run(ckpt)
    run_cfg, model = load_run(ckpt, trust=True)
    _, reference = load_run(legit)
    assert run_cfg.freeze._target_ == "mylab.freeze.custom" and model.threshold == reference.threshold == 0.4
    inputs = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(model.net(inputs), reference.net(inputs))


@pytest.mark.parametrize("task", ["evaluate", "explain", "export"])
def test_inference_tasks_refuse_a_crafted_optimizer(legit, tmp_path, task):
    """In the process (the scripts are a line around these): refused, nothing built or written."""
    import importlib

    marker = tmp_path / "pwned"
    ckpt = edited(legit, tmp_path / "crafted.ckpt", lambda c: c.update(optimizer=torch_load_payload(marker)))
    run = getattr(importlib.import_module(f"covid_tl.tasks.{task}"), task)
    with pytest.raises(CheckpointError) as excinfo:
        run(composed(task, f"ckpt_path={ckpt}"), tmp_path / "out")
    assert one_line(excinfo).startswith(f"{ckpt} config key optimizer._target_ names torch.load")
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_predict_py_refuses_a_crafted_optimizer_in_one_line(legit, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = edited(legit, tmp_path / "crafted.ckpt", lambda c: c.update(optimizer=torch_load_payload(marker)))
    proc = run_script("predict.py", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'out'}",
                      f"images={tmp_path / 'scan.png'}")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"error: {ckpt} config key optimizer._target_ names torch.load") and not marker.exists()


# --- paths in a checkpoint decide no place to write ------------------------------------------


def test_every_preprocessing_config_caches_where_checkpoints_are_sent():
    cache_dirs = {yaml.safe_load(p.read_text()).get("cache_dir") for p in (CONF / "preprocessing").glob("*.yaml")}
    assert cache_dirs - {None} == {CACHE_DIR}


@pytest.mark.parametrize("stored", ["elsewhere", "/proc/x/cache"])
def test_predict_caches_in_this_runs_cache_not_the_checkpoints(legit, tmp_path, monkeypatch, stored):
    elsewhere = tmp_path / stored if stored == "elsewhere" else pathlib.Path(stored)
    crop = OmegaConf.to_container(composed("train", "preprocessing=crop").preprocessing, resolve=True)
    ckpt = edited(legit, tmp_path / "stored.ckpt", lambda c: c.update(preprocessing={**crop, "cache_dir": str(elsewhere)}))
    monkeypatch.setenv("COVID_TL_CACHE", str(tmp_path / "cache"))
    run_cfg, _ = load_run(ckpt)
    assert run_cfg.preprocessing.cache_dir == str(tmp_path / "cache")
    source = SyntheticSource(n_patients=2, image_size=48, seed=1)
    for i, row in enumerate(source.frame().head(3).to_dict("records")):
        assert cv2.imwrite(str(tmp_path / f"film{i}.png"), source.load_image(row))
    cfg = composed("predict", f"ckpt_path={ckpt}", f"images={tmp_path / 'film*.png'}", "num_workers=0")
    table = predict(cfg, tmp_path / "out")
    assert len(table) == 3 and not elsewhere.exists()
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 3  # one entry per film, in COVID_TL_CACHE


# --- bounded loading -----------------------------------------------------------------------------


def rewritten(source, target, record_bytes=None, compress=None):
    """A copy of the torch.save zip `source` with some records replaced or compressed."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            name = info.filename.split("/", 1)[1]
            data = (record_bytes or {}).get(name, old.read(info))
            new.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED if name in (compress or ()) else None)
    return target


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A 2 MB checkpoint whose one tensor record inflates to 2 GiB (torch.load would allocate it all)."""
    folder = tmp_path_factory.mktemp("bomb")
    numel = BOMB_BYTES // 4
    torch.save({"w": torch.ones(3)}, folder / "small.pt")

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel) if obj == "STORAGE" else None

    class Big:
        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, ("STORAGE", 0, (numel,), (1,), False, collections.OrderedDict())

    data = io.BytesIO()
    Pickler(data, protocol=2).dump({"state_dict": {"w": Big()}, "hyper_parameters": {"config": {}}})
    chunk = bytes(64 << 20)
    path = folder / "bomb.ckpt"
    with zipfile.ZipFile(folder / "small.pt") as old, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            if info.filename.endswith("/data/0"):
                record = zipfile.ZipInfo(info.filename)
                record.compress_type = zipfile.ZIP_DEFLATED
                with new.open(record, "w", force_zip64=True) as stream:
                    for _ in range(BOMB_BYTES // len(chunk)):
                        stream.write(chunk)
            else:
                new.writestr(info.filename, data.getvalue() if info.filename.endswith("data.pkl") else old.read(info))
    assert path.stat().st_size < 8 << 20
    return path


@pytest.mark.slow
def test_a_zip_bomb_is_refused_in_one_line_with_little_memory(bomb, tmp_path):
    """In a fresh process: its peak memory grows by well under the 2 GiB the record inflates to."""
    code = PEAK_RSS + (
        "import sys, pathlib\n"
        "from covid_tl.models.checkpoint import load_run, CheckpointError\n"
        "before = peak_bytes()\n"
        "try:\n    load_run(pathlib.Path(sys.argv[1]))\nexcept CheckpointError as error:\n    print(error)\n"
        "print(peak_bytes() - before)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(bomb)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    message, grown = proc.stdout.strip().splitlines()
    assert message == (f"{bomb} holds a compressed record (small/data/0), which torch.save never writes (a zip bomb "
                       "inflates a small file to gigabytes); re-save it with torch.save")
    assert int(grown) < 1.5e9 and int(grown) < BOMB_BYTES / 4


def broken_files(legit, folder):
    """name -> (file, what its one line says)."""
    data = legit.read_bytes()
    (folder / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    checkpoint = torch.load(legit, map_location="cpu", weights_only=True)
    torch.save(checkpoint, folder / "legacy.ckpt", _use_new_zipfile_serialization=False)
    (folder / "pickle.ckpt").write_bytes(pickle.dumps(checkpoint["hyper_parameters"]))
    rewritten(legit, folder / "deflated.ckpt", compress={"data.pkl"})
    first = next(n for n in zipfile.ZipFile(legit).namelist() if "/data/" in n).split("/", 1)[1]
    rewritten(legit, folder / "short.ckpt", record_bytes={first: b"\0" * 4})  # a record smaller than its tensor
    outside = "a pickle outside torch's zip format"
    return {
        "truncated": (folder / "truncated.ckpt", "neither the zip archive nor the pickle that torch.save writes"),
        "legacy": (folder / "legacy.ckpt", outside),
        "pickle": (folder / "pickle.ckpt", outside),
        "deflated": (folder / "deflated.ckpt", "holds a compressed record (legit/data.pkl)"),
        "short": (folder / "short.ckpt", "does not match expected size"),
    }


def test_broken_files_are_one_line_each_for_inference_and_resume(legit, tmp_path):
    files = broken_files(legit, tmp_path)
    for name, (path, says) in files.items():
        with pytest.raises(CheckpointError) as excinfo:
            load_run(path)
        assert str(path) in one_line(excinfo) and says in str(excinfo.value), name
        if name != "short":  # a record's size is torch's to check, when it reads the tensor
            with pytest.raises(ConfigError) as excinfo:
                check_train_config(composed("train", f"ckpt_path={path}"))
            assert says in one_line(excinfo), name


def test_records_beyond_the_cap_or_the_file_are_refused(legit, tmp_path, monkeypatch):
    import covid_tl.runtime.torch_files as torch_files

    size = legit.stat().st_size
    monkeypatch.setattr(torch_files, "MAX_RECORD_BYTES", size // 2)
    with pytest.raises(CheckpointError) as excinfo:
        load_run(legit)
    assert one_line(excinfo).endswith("file (at most 0 GiB are loaded)") and MAX_RECORD_BYTES == 4 << 30


def test_records_declared_beyond_the_file_are_refused(legit, tmp_path):
    """The central directory says 1 GiB for a record the file cannot hold (both sizes, as if stored)."""
    data = bytearray(legit.read_bytes())
    entry = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 1)  # the second record's directory entry
    data[entry + 20: entry + 28] = (1 << 30).to_bytes(4, "little") * 2  # compressed and uncompressed size
    (tmp_path / "forged.ckpt").write_bytes(bytes(data))
    records = sum(i.file_size for i in zipfile.ZipFile(tmp_path / "forged.ckpt").infolist())
    with pytest.raises(CheckpointError) as excinfo:
        load_run(tmp_path / "forged.ckpt")
    assert records > 1 << 30
    assert one_line(excinfo) == f"{tmp_path / 'forged.ckpt'} declares {records:,} bytes of records in a {len(data):,}-byte file"


def test_a_resumed_checkpoint_passes_the_same_config_check(legit, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = edited(legit, tmp_path / "crafted.ckpt", lambda c: c.update(optimizer=torch_load_payload(marker)))
    check_checkpoint_file(legit)  # a covid-tl checkpoint passes
    with pytest.raises(ConfigError) as excinfo:
        check_train_config(composed("train", f"ckpt_path={ckpt}"))
    assert "config key optimizer._target_ names torch.load" in one_line(excinfo) and not marker.exists()
    check_train_config(composed("train", f"ckpt_path={ckpt}", "trust_checkpoint=true"))  # the user vouches


@pytest.mark.slow
def test_train_refuses_a_broken_resume_file_before_writing(legit, tmp_path):
    path, says = broken_files(legit, tmp_path)["truncated"]
    run_dir = tmp_path / "run"
    proc = run_script("train.py", f"ckpt_path={path}", *TINY, f"hydra.run.dir={run_dir}")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], proc.stderr
    assert not (run_dir / "splits.csv").exists() and not (run_dir / "checkpoints").exists()
