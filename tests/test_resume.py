"""Adopting another run's checkpoint reads only that run's checkpoint folder and writes only ours."""
import hashlib

import torch

from covid_tl.models.resume import adopt_checkpoint

STATE_KEY = "BestAndLastCheckpoint{'monitor': 'val/loss', 'mode': 'min'}"


def lightning_like(folder, name, best, others=(), last=None):
    """A checkpoint shaped like Lightning's: weights, and the ModelCheckpoint state naming files."""
    state = {"dirpath": str(folder), "best_model_path": str(best), "kth_best_model_path": str(best),
             "last_model_path": str(last or folder / "last.ckpt"), "best_model_score": torch.tensor(0.1),
             "best_k_models": {str(best): torch.tensor(0.1), **{str(o): torch.tensor(0.5) for o in others}}}
    checkpoint = {"state_dict": {"w": torch.ones(2)}, "epoch": 3, "callbacks": {STATE_KEY: state}}
    torch.save(checkpoint, folder / name)
    return folder / name


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_best_file_comes_along_and_every_path_points_into_the_new_folder(tmp_path):
    old, new = tmp_path / "a" / "checkpoints", tmp_path / "b" / "checkpoints"
    old.mkdir(parents=True)
    new.mkdir(parents=True)
    best = lightning_like(old, "epoch001.ckpt", old / "epoch001.ckpt")
    last = lightning_like(old, "last.ckpt", best)
    before = digest(old)
    adopted = adopt_checkpoint(last, new, weights_only=True)
    assert adopted == new / "last.ckpt" and sorted(p.name for p in new.iterdir()) == ["epoch001.ckpt", "last.ckpt"]
    state = torch.load(adopted, weights_only=True)["callbacks"][STATE_KEY]
    assert state["dirpath"] == str(new) and state["best_model_path"] == str(new / "epoch001.ckpt")
    assert list(state["best_k_models"]) == [str(new / "epoch001.ckpt")]
    assert digest(old) == before


def test_a_path_outside_the_other_runs_folder_is_neither_read_nor_kept(tmp_path):
    old, new, elsewhere = (tmp_path / d for d in ("a", "b", "secret"))
    for folder in (old, new, elsewhere):
        folder.mkdir()
    outside = lightning_like(elsewhere, "keys.ckpt", elsewhere / "keys.ckpt")
    last = lightning_like(old, "last.ckpt", outside, others=[old / "gone.ckpt"])
    adopted = adopt_checkpoint(last, new, weights_only=True)
    assert sorted(p.name for p in new.iterdir()) == ["last.ckpt"]
    state = torch.load(adopted, weights_only=True)["callbacks"][STATE_KEY]
    assert state["best_model_path"] == "" and state["best_k_models"] == {}
