"""Checkpoints written during training: the best epoch, and last.ckpt always the latest epoch."""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class BestAndLastCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose `last.ckpt` holds the latest epoch, written once.

    With `save_last="link"`, Lightning 2.6 points last.ckpt at the most recent top-k file, which
    is the best epoch, not the latest, once validation stops improving (with `save_last=True` it
    copies that file instead): a resume would repeat epochs. Here an epoch that top-k saved is
    linked to (one file when best == last); any other epoch is written to last.ckpt itself.
    """

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> None:
        if self.save_last == "link" and self._last_global_step_saved != trainer.global_step:
            self._last_checkpoint_saved = ""  # this step's weights are in no file yet: write, not link
        super()._save_last_checkpoint(trainer, monitor_candidates)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """On resume, keep last.ckpt current from the first epoch on (Lightning only updates it
        after a file was saved in this process)."""
        super().load_state_dict(state_dict)
        self._last_checkpoint_saved = self.last_model_path
