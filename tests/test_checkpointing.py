"""last.ckpt is the latest epoch, and a link (one file) when the latest epoch is also the best."""
import os

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from covid_tl.models.saving import BestAndLastCheckpoint


class ScriptedLoss(pl.LightningModule):
    """Validation loss of epoch e is losses[e]: which epoch is best is known in advance."""

    def __init__(self, losses):
        super().__init__()
        self.losses = losses
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.losses[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path, losses, max_epochs, ckpt_path=None):
    callback = BestAndLastCheckpoint(dirpath=tmp_path, filename="epoch{epoch:03d}", auto_insert_metric_name=False,
                                     monitor="val/loss", mode="min", save_top_k=1, save_last="link")
    data = DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2)
    trainer = pl.Trainer(max_epochs=max_epochs, callbacks=[callback], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(ScriptedLoss(losses), data, data, ckpt_path=ckpt_path)
    return callback


def saved_epoch(path):
    return torch.load(path, weights_only=False)["epoch"]


def test_last_is_the_latest_epoch_when_it_is_not_the_best(tmp_path):
    callback = fit(tmp_path, [3.0, 1.0, 2.0, 4.0], max_epochs=4)
    assert sorted(os.listdir(tmp_path)) == ["epoch001.ckpt", "last.ckpt"]
    assert not (tmp_path / "last.ckpt").is_symlink()
    assert saved_epoch(tmp_path / "epoch001.ckpt") == 1 and saved_epoch(tmp_path / "last.ckpt") == 3
    assert callback.best_model_path == str(tmp_path / "epoch001.ckpt")


def test_one_file_when_the_latest_epoch_is_the_best(tmp_path):
    fit(tmp_path, [3.0, 2.0, 1.0], max_epochs=3)
    assert sorted(os.listdir(tmp_path)) == ["epoch002.ckpt", "last.ckpt"]
    assert os.readlink(tmp_path / "last.ckpt") == "epoch002.ckpt"
    assert saved_epoch(tmp_path / "last.ckpt") == 2


def test_resume_from_last_continues_and_keeps_last_current(tmp_path):
    losses = [3.0, 1.0, 2.0, 4.0, 5.0]
    fit(tmp_path, losses, max_epochs=3)
    assert saved_epoch(tmp_path / "last.ckpt") == 2
    callback = fit(tmp_path, losses, max_epochs=5, ckpt_path="last")
    assert saved_epoch(tmp_path / "last.ckpt") == 4 and not (tmp_path / "last.ckpt").is_symlink()
    assert callback.best_model_path == str(tmp_path / "epoch001.ckpt")
