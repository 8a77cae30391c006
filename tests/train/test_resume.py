"""4 epochs straight end with the same weights as 2 epochs, a checkpoint, a NEW process, 2 more."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

import fulmen as pl
from tests.train.helpers import Regressor, assert_same_weights, loader, quiet_trainer, weights

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    import fulmen as pl
    from tests.train.helpers import Regressor, loader, quiet_trainer

    out, epochs, ckpt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    pl.seed_everything(7)
    model = Regressor(dropout=0.2, optimizer="adam", scheduler=True, lr=0.01)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=out, save_last=True)
    trainer = quiet_trainer(
        max_epochs=epochs, enable_checkpointing=True, callbacks=[checkpoint], num_sanity_val_steps=2
    )
    trainer.fit(model, loader(shuffle=True), loader(n=16), ckpt_path=None if ckpt == "-" else ckpt)
    torch.save(model.state_dict(), out + f"/weights-{epochs}.pt")
    print(trainer.global_step, trainer.current_epoch)
    """
)


def run(tmp_path: Path, epochs: int, ckpt: str) -> str:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(epochs), ckpt],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_resume_in_a_new_process_equals_training_straight(tmp_path: Path) -> None:
    pl.seed_everything(7)
    straight = Regressor(dropout=0.2, optimizer="adam", scheduler=True, lr=0.01)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "straight")
    trainer = quiet_trainer(
        max_epochs=4, enable_checkpointing=True, callbacks=[checkpoint], num_sanity_val_steps=2
    )
    trainer.fit(straight, loader(shuffle=True), loader(n=16))

    assert run(tmp_path, 2, "-") == "16 2"
    assert (tmp_path / "last.ckpt").is_file()
    assert run(tmp_path, 4, str(tmp_path / "last.ckpt")) == "32 4"

    resumed = torch.load(tmp_path / "weights-4.pt")
    assert_same_weights(weights(straight), resumed)


def test_mid_epoch_checkpoint_resumes_at_the_next_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Regressor()
    every3 = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_top_k=-1)
    trainer = quiet_trainer(max_epochs=1, enable_checkpointing=True, callbacks=[every3])
    trainer.fit(model, loader())
    ckpt = torch.load(tmp_path / "epoch=0-step=3.ckpt", weights_only=False)
    assert ckpt["loops"]["fit_loop"]["batch_in_epoch"] == 3
    assert ckpt["loops"]["fit_loop"]["epoch_done"] is False

    seen: list[int] = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # type: ignore[no-untyped-def]
            seen.append(batch_idx)

    again = quiet_trainer(max_epochs=1, callbacks=[Record()])
    again.fit(Regressor(), loader(), ckpt_path=tmp_path / "epoch=0-step=3.ckpt")
    assert seen == [3, 4, 5, 6, 7]
    assert again.global_step == 8
    # with a sequential loader, the resumed run ends where the straight run did
    assert_same_weights(weights(model), weights(again.lightning_module))
