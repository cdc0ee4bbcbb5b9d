"""P x K identity sampler for batch-hard triplet training, deterministic, DDP-sharded and resumable mid-epoch.

Semantics follow torchreid's ``RandomIdentitySampler`` (which SINet and COSAM use in the same form): every identity's
tracklets are shuffled and cut into groups of K (an identity with fewer than K tracklets is drawn K times with
replacement; a remainder smaller than K is dropped), then each batch takes one group from each of P distinct random
identities until fewer than P identities have groups left. Unlike the reference, all randomness comes from a generator
seeded with ``(seed, epoch)``, so every rank builds the same epoch plan and a resumed run continues it exactly.

Repeats: when an identity with fewer than K tracklets draws the same tracklet ``i`` again, the j-th repeat is yielded as
``i + j * len(data_source)``. :class:`~reidzoo.data.video_dataset.VideoClipDataset` reads such an index as tracklet
``i`` with an independent random clip, as the reference loaders (which re-sample every time an index is drawn) do;
without it the repeats would be identical clips, with a triplet positive distance of exactly zero.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
from torch.utils.data import Sampler

__all__ = ['RandomIdentitySampler']


def _pid_of(item: Any) -> int:
    if isinstance(item, (int, np.integer)):
        return int(item)
    return int(item[1])  # Tracklet(frames, pid, camid) or any (frames, pid, camid) tuple


def _occurrence(values: np.ndarray) -> np.ndarray:
    """For each entry, how many times its value occurred before it: [4, 2, 4, 4] -> [0, 0, 1, 2]."""
    return np.asarray([int((values[:i] == v).sum()) for i, v in enumerate(values)], dtype=np.int64)


class RandomIdentitySampler(Sampler[int]):
    """Yields dataset indices so that every consecutive ``batch_size`` of them is P identities x K tracklets.

    Indices ``>= len(data_source)`` are repeat draws of tracklet ``index % len(data_source)`` (see the module doc).

    Use it with ``DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True)``.

    Under DDP, all ranks build the same epoch plan of batches; rank ``r`` takes batches ``r, r + world_size, ...`` of
    the plan cut to a multiple of ``world_size``, so ranks get disjoint batches and the same number of them.

    Args:
        data_source: Tracklets (``(frames, pid, camid)``) or plain pids, one per dataset index.
        batch_size: P x K indices per batch.
        num_instances: K, tracklets per identity in a batch.
        seed: Base seed; epoch ``e`` is planned from ``(seed, e)``.
        rank: This process's rank.
        world_size: Number of processes.
    """

    def __init__(
            self,
            data_source: Sequence[Union[int, Any]],
            batch_size: int,
            num_instances: int,
            seed: int = 0,
            rank: int = 0,
            world_size: int = 1,
    ):
        if num_instances < 1 or batch_size < num_instances or batch_size % num_instances:
            raise ValueError(f'batch_size ({batch_size}) must be a positive multiple of num_instances '
                             f'({num_instances}).')
        if not 0 <= rank < world_size:
            raise ValueError(f'rank must be in [0, world_size={world_size}), got {rank}.')
        self.batch_size = int(batch_size)
        self.num_instances = int(num_instances)
        self.num_pids_per_batch = self.batch_size // self.num_instances
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        index_of_pid: dict[int, list[int]] = defaultdict(list)
        for index, item in enumerate(data_source):
            index_of_pid[_pid_of(item)].append(index)
        self.num_samples = len(data_source)
        self.pids = sorted(index_of_pid)  # sorted, not dict/set order, so the plan never depends on insertion order
        self.index_of_pid = {pid: np.asarray(index_of_pid[pid], dtype=np.int64) for pid in self.pids}
        if len(self.pids) < self.num_pids_per_batch:
            raise ValueError(f'A batch needs {self.num_pids_per_batch} identities (batch_size {batch_size} / '
                             f'num_instances {num_instances}) but the data has only {len(self.pids)}.')
        self.epoch = 0
        self.position = 0  # indices of this rank's epoch already consumed
        self._plan_cache: Optional[tuple[int, np.ndarray]] = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to plan; starts it from the beginning unless it is the epoch a state_dict resumes."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self.position = 0

    def _global_batches(self, epoch: int) -> np.ndarray:
        """The epoch's plan: ``(num_batches, batch_size)`` indices, identical on every rank."""
        rng = np.random.default_rng([self.seed, epoch])
        k, p = self.num_instances, self.num_pids_per_batch
        groups: dict[int, list[np.ndarray]] = {}
        for pid in self.pids:
            idxs = self.index_of_pid[pid]
            if len(idxs) < k:
                idxs = rng.choice(idxs, size=k, replace=True)
                idxs = idxs + self.num_samples * _occurrence(idxs)  # repeats get their own random clip
            else:
                idxs = rng.permutation(idxs)
            n_groups = len(idxs) // k
            groups[pid] = [idxs[g * k:(g + 1) * k] for g in range(n_groups)]
        available = [pid for pid in self.pids if groups[pid]]
        batches = []
        while len(available) >= p:
            chosen = rng.choice(len(available), size=p, replace=False)
            selected = [available[c] for c in chosen]
            batches.append(np.concatenate([groups[pid].pop(0) for pid in selected]))
            available = [pid for pid in available if groups[pid]]
        return np.stack(batches) if batches else np.zeros((0, self.batch_size), dtype=np.int64)

    def _rank_indices(self) -> np.ndarray:
        if self._plan_cache is None or self._plan_cache[0] != self.epoch:
            batches = self._global_batches(self.epoch)
            usable = len(batches) - len(batches) % self.world_size
            mine = batches[:usable][self.rank::self.world_size]
            self._plan_cache = (self.epoch, mine.reshape(-1))
        return self._plan_cache[1]

    def batches(self) -> np.ndarray:
        """This rank's whole epoch as ``(num_batches, batch_size)`` indices (ignores the resume position)."""
        return self._rank_indices().reshape(-1, self.batch_size)

    def __iter__(self) -> Iterator[int]:
        indices = self._rank_indices()
        start = self.position
        for i in range(start, len(indices)):
            self.position = i + 1
            yield int(indices[i])
        self.position = 0  # the epoch is done; the next iteration (normally after set_epoch) starts afresh

    def __len__(self) -> int:
        """Indices left in this epoch (the full epoch unless resuming), so ``len(DataLoader)`` is right too."""
        return len(self._rank_indices()) - self.position

    def state_dict(self, batches_consumed: Optional[int] = None) -> dict[str, int]:
        """Epoch and position to resume from.

        Args:
            batches_consumed: Batches of this epoch the training loop has actually used. Pass it when the
                DataLoader prefetches (workers run ahead of training, so the sampler's own count is too high);
                without it, the number of indices this sampler has yielded is saved.
        """
        position = self.position if batches_consumed is None else int(batches_consumed) * self.batch_size
        return {'epoch': self.epoch, 'position': position, 'seed': self.seed, 'world_size': self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: the next iteration continues epoch ``state['epoch']`` right after ``state['position']``."""
        if int(state.get('world_size', self.world_size)) != self.world_size or \
                int(state.get('seed', self.seed)) != self.seed:
            raise ValueError(f"Cannot resume a sampler saved with seed={state.get('seed')}, "
                             f"world_size={state.get('world_size')} as seed={self.seed}, world_size={self.world_size}: "
                             'the epoch plan would differ. Use the original seed and world size.')
        self.epoch = int(state['epoch'])
        self.position = int(state['position'])
