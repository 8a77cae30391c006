"""Scripts of our own that exercise what Lightning's published examples exercise, on tiny settings:
a GAN (manual optimization, two optimizers, ``training_step(self, batch)``, toggle_optimizer), an
autoencoder (``predict`` and ``ckpt_path="best"``), and a small transformer language model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.callbacks import ModelCheckpoint
from fulmen.loggers import CSVLogger


def _trainer(tmp_path: Path, **kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "default_root_dir": str(tmp_path),
        "logger": CSVLogger(tmp_path),
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "log_every_n_steps": 1,
    }
    options.update(kwargs)
    return pl.Trainer(**options)


# ---------------------------------------------------------------- GAN


class Generator(nn.Module):
    def __init__(self, latent: int, features: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent, 16), nn.LeakyReLU(0.2), nn.Linear(16, features))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(z))


class Discriminator(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GAN(pl.LightningModule):
    def __init__(self, latent: int = 4, features: int = 8, lr: float = 2e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = Generator(latent, features)
        self.discriminator = Discriminator(features)
        self.example_input_array = torch.zeros(2, latent)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def training_step(self, batch: Any) -> None:  # no batch_idx, as Lightning's GAN example
        (real,) = batch
        opt_g, opt_d = self.optimizers()
        z = torch.randn(real.shape[0], self.hparams.latent)
        bce = nn.functional.binary_cross_entropy_with_logits
        ones, zeros = torch.ones(real.shape[0], 1), torch.zeros(real.shape[0], 1)

        self.toggle_optimizer(opt_g)
        g_loss = bce(self.discriminator(self(z)), ones)
        self.manual_backward(g_loss)
        # the generator step leaves no gradient on the discriminator: it was toggled off
        assert all(p.grad is None for p in self.discriminator.parameters())
        opt_g.step()
        opt_g.zero_grad()
        self.untoggle_optimizer(opt_g)

        self.toggle_optimizer(opt_d)
        fake = self(z).detach()
        d_loss = (bce(self.discriminator(real), ones) + bce(self.discriminator(fake), zeros)) / 2
        self.manual_backward(d_loss)
        opt_d.step()
        opt_d.zero_grad()
        self.untoggle_optimizer(opt_d)
        self.log_dict({"g_loss": g_loss, "d_loss": d_loss}, prog_bar=True)

    def configure_optimizers(self) -> Any:
        lr = self.hparams.lr
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
        return [opt_g, opt_d], []


def test_gan_with_manual_optimization_runs_to_completion(tmp_path: Path) -> None:
    pl.seed_everything(0)
    real = TensorDataset(torch.randn(64, 8) * 0.5 + 0.2)
    trainer = _trainer(tmp_path, max_epochs=2)
    model = GAN()
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model, DataLoader(real, batch_size=16, shuffle=True))
    assert trainer.state.finished
    assert trainer.global_step == 16
    assert {"g_loss", "d_loss"} <= set(trainer.logged_metrics)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.requires_grad for p in model.parameters())  # everything untoggled
    samples = model(torch.randn(5, 4))
    assert samples.shape == (5, 8)


# ---------------------------------------------------------------- autoencoder


class AutoEncoder(pl.LightningModule):
    def __init__(self, features: int = 8, hidden: int = 3, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, hidden))
        self.decoder = nn.Sequential(nn.Linear(hidden, 16), nn.ReLU(), nn.Linear(16, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def _loss(self, batch: Any) -> torch.Tensor:
        (x,) = batch
        return nn.functional.mse_loss(self.decoder(self.encoder(x)), x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch), prog_bar=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.log("test_loss", self._loss(batch))

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        (x,) = batch
        return self.decoder(self.encoder(x))

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def test_autoencoder_predicts_and_tests_with_the_best_checkpoint(tmp_path: Path) -> None:
    pl.seed_everything(1)
    basis = torch.randn(3, 8)
    data = TensorDataset(torch.randn(96, 3) @ basis)  # 8 features on a 3-dimensional subspace
    train, val = torch.utils.data.random_split(data, [64, 32])
    checkpoint = ModelCheckpoint(monitor="val_loss", mode="min", save_top_k=1)
    trainer = _trainer(tmp_path, max_epochs=4, callbacks=[checkpoint])
    model = AutoEncoder()
    trainer.fit(model, DataLoader(train, batch_size=16), DataLoader(val, batch_size=16))
    best = checkpoint.best_model_path
    assert best
    assert Path(best).is_file()
    tested = trainer.test(model, DataLoader(val, batch_size=16), ckpt_path="best", verbose=False)
    assert trainer.ckpt_path == best
    assert math.isclose(tested[0]["test_loss"], float(checkpoint.best_model_score), rel_tol=1e-5)
    predictions = trainer.predict(model, DataLoader(val, batch_size=16), ckpt_path="best")
    assert [p.shape for p in predictions] == [(16, 8), (16, 8)]
    restored = AutoEncoder.load_from_checkpoint(best)
    assert restored.hparams.hidden == 3
    codes = restored(torch.randn(4, 8))
    assert codes.shape == (4, 3)


# ---------------------------------------------------------------- transformer language model


class TinyLM(pl.LightningModule):
    def __init__(self, vocab: int = 12, width: int = 16, heads: int = 2, context: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.zeros(1, context, width))
        layer = nn.TransformerEncoderLayer(
            width, heads, dim_feedforward=32, dropout=0.0, batch_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(n)
        hidden = self.blocks(self.embed(tokens) + self.position[:, :n], mask=causal, is_causal=True)
        return self.head(hidden)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs, targets = batch
        logits = self(inputs)
        loss = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
        )
        self.log("train_loss", loss, prog_bar=True, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        inputs, targets = batch
        logits = self(inputs)
        loss = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
        )
        self.log("val_loss", loss)
        self.log("val_ppl", torch.exp(loss))

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=3e-3)
        steps = self.trainer.estimated_stepping_batches
        scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=int(steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _sequences(n: int, context: int, vocab: int) -> TensorDataset:
    # counting modulo vocab from a random start: a pattern a tiny model can learn
    starts = torch.randint(0, vocab, (n, 1))
    tokens = (starts + torch.arange(context + 1)) % vocab
    return TensorDataset(tokens[:, :-1], tokens[:, 1:])


def test_transformer_language_model_learns_to_count(tmp_path: Path) -> None:
    pl.seed_everything(2)
    train = DataLoader(_sequences(128, 8, 12), batch_size=16, shuffle=True)
    val = DataLoader(_sequences(32, 8, 12), batch_size=16)
    trainer = _trainer(tmp_path, max_epochs=6, gradient_clip_val=1.0)
    model = TinyLM()
    first = trainer.validate(model, val, verbose=False)[0]["val_loss"]
    trainer.fit(model, train, val)
    last = float(trainer.callback_metrics["val_loss"])
    assert trainer.state.finished
    assert trainer.global_step == 48
    assert last < first * 0.5  # it learned (untrained: about log(12) = 2.5)
    prompt = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        next_token = int(model(prompt)[0, -1].argmax())
    assert next_token == 6
