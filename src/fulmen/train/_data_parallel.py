"""Dataloaders under DDP: each rank reads its own share of the dataset.

``with_distributed_sampler`` rebuilds a ``torch.utils.data.DataLoader`` with a
``DistributedSampler`` (the Trainer calls ``set_epoch`` on it each epoch, so shuffling differs per
epoch and agrees across ranks). The user's ``shuffle`` choice is kept: a ``RandomSampler`` becomes a
shuffling sampler, anything else an ordered one. For fit/validate/test the sampler pads the last
round with repeated samples so that every rank runs the same number of batches (a rank that ran
fewer would wait forever in a collective); for predict, ``UnrepeatedDistributedSampler`` gives each
sample to exactly one rank, so gathered predictions hold each sample once.

Left as they are: iterable datasets, loaders with a custom ``batch_sampler``, and loaders that
already use a ``DistributedSampler`` (or any loader when ``use_distributed_sampler=False``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    Sampler,
)


class UnrepeatedDistributedSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: each sample on one rank (lengths may differ by one)."""

    def __init__(self, length: int, num_replicas: int, rank: int) -> None:
        self.length, self.num_replicas, self.rank = length, num_replicas, rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))

    def set_epoch(self, epoch: int) -> None:
        return None


def with_distributed_sampler(dataloader: Any, stage: str, world_size: int, rank: int) -> Any:
    """``dataloader`` rebuilt to read this rank's share (see the module docstring)."""
    if not isinstance(dataloader, DataLoader) or world_size <= 1:
        return dataloader
    if isinstance(dataloader.dataset, IterableDataset):
        return dataloader
    if isinstance(dataloader.sampler, DistributedSampler | UnrepeatedDistributedSampler):
        return dataloader
    custom_batches = not isinstance(dataloader.batch_sampler, BatchSampler) or (
        type(dataloader.batch_sampler) is not BatchSampler
    )
    if dataloader.batch_size is None or custom_batches:
        warnings.warn(
            "DDP: a DataLoader with a custom batch_sampler is used as it is, so every rank reads "
            "the whole dataset; shard it yourself and pass Trainer(use_distributed_sampler=False)",
            UserWarning,
            stacklevel=4,
        )
        return dataloader
    sampler: Sampler[int]
    if stage == "predict":
        sampler = UnrepeatedDistributedSampler(len(dataloader.dataset), world_size, rank)  # type: ignore[arg-type]
    else:
        shuffle = isinstance(dataloader.sampler, RandomSampler)
        seed = int(os.environ.get("PL_GLOBAL_SEED", "0"))
        sampler = DistributedSampler(
            dataloader.dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed
        )
    options: dict[str, Any] = {
        "batch_size": dataloader.batch_size,
        "sampler": sampler,
        "num_workers": dataloader.num_workers,
        "collate_fn": dataloader.collate_fn,
        "pin_memory": dataloader.pin_memory,
        "drop_last": dataloader.drop_last,
        "timeout": dataloader.timeout,
        "worker_init_fn": dataloader.worker_init_fn,
        "multiprocessing_context": dataloader.multiprocessing_context,
        "generator": dataloader.generator,
        "persistent_workers": dataloader.persistent_workers,
        "pin_memory_device": dataloader.pin_memory_device,
    }
    if dataloader.num_workers > 0:
        options["prefetch_factor"] = dataloader.prefetch_factor
    if type(dataloader) is not DataLoader:
        warnings.warn(
            f"DDP: the {type(dataloader).__name__} is rebuilt as a plain DataLoader with a "
            "DistributedSampler; pass Trainer(use_distributed_sampler=False) to keep it",
            UserWarning,
            stacklevel=4,
        )
    return DataLoader(dataloader.dataset, **options)


def gather_predictions(strategy: Any, predictions: list[Any]) -> list[Any]:
    """Every rank's predictions in dataset order (each batch's outputs, batch by batch).

    With ``UnrepeatedDistributedSampler`` rank r holds samples r, r + world, ...; batch i of every
    rank is interleaved, rank by rank, which is the dataset order when the batches are single
    samples and the order of the ranks' batches otherwise (documented in docs/distributed.md).
    """
    gathered: list[list[Any]] = strategy.all_gather_object([_to_cpu(p) for p in predictions])
    out: list[Any] = []
    for i in range(max(len(g) for g in gathered)):
        for rank_predictions in gathered:
            if i < len(rank_predictions):
                out.append(rank_predictions[i])
    return out


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value
