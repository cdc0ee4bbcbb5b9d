"""The reidzoo trainer: one recipe in, a run directory out (checkpoints, ``log.jsonl``, ``metrics.json``).

>>> from reidzoo.train import train
>>> result = train('tp_synthvid', output_dir='runs/tp_synthvid')
>>> result.metrics['mAP']

What it does, in order: seed everything; build the dataset, the model (``reidzoo.create_model`` with the recipe's
arguments and, for a fresh run, timm's ImageNet backbone weights through timm's own Hub path, so ``HF_ENDPOINT`` and
the Hub cache apply), the P x K sampler (identities' batches sharded across DDP ranks), the clip dataset with the
model's preprocessing and the recipe's augmentation, the optimiser with per-group learning rates and the loss terms;
then train with AMP (fp16 + GradScaler on CUDA; bf16 autocast on CPU on request) and channels-last on GPU, evaluate
with the dataset's protocol every ``eval.every_epochs``, and write an atomic checkpoint every
``train.checkpoint_every`` steps and at every epoch end.

Exact resumption. A clip depends only on ``(seed, epoch, index)``, the sampler's epoch plan only on
``(seed, epoch)``, data-loader worker seeds only on ``(seed, epoch, rank)``, and every other random state (Python,
NumPy, torch, CUDA) is saved in the checkpoint; the learning rate is a pure function of the position (epoch and
batch within it). A run killed at any point and resumed from its last checkpoint therefore computes the same losses
and ends with the same weights as an uninterrupted run: bit-for-bit on CPU with the same number of intra-op
threads (they split float reductions) and the same kernels (torch, oneDNN and MKL pick them by CPU instruction set,
each with its own summation order), on GPU as far as cuDNN is deterministic (see ``train.deterministic``). Two fresh
runs on one machine are bit-identical under the same conditions; another thread count or CPU type trains a
(slightly) different model from the same seed (``docs/training.md`` has the measurements).

A non-finite loss term stops the run with :class:`NonFiniteLossError` naming the step and the term, before the
optimiser touches the weights and without writing a checkpoint, so the last good checkpoint stays as it was. The
message gives the command that continues from there with a lower learning rate: ``optim.lr`` and ``train.grad_clip``
(:data:`RECORDED_RESUME_KEYS`) may change on ``--resume``; the change applies from the checkpoint's step on, is
written to the run's ``recipe.yaml`` and recorded in ``log.jsonl`` (``{"type": "resume", "changed": ...}``).

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in DDP (nccl on CUDA, gloo on CPU). The
recipe's P x K is the *global* batch: each of N ranks draws batches of P/N identities x K from the shared epoch plan.
Only rank 0 writes checkpoints, logs and runs the evaluation.
"""
from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from ..data import build_dataset
from ..data.samplers import RandomIdentitySampler
from ..data.transforms import build_clip_transform
from ..data.video_dataset import VideoClipDataset
from ..eval import evaluate
from ..eval.distributed import init_distributed
from ..models import create_model
from ..spec.datasets import get_dataset_spec
from .checkpoint import CHECKPOINT_NAME, atomic_write, capture_rng_state, load_checkpoint, restore_rng_state, \
    save_checkpoint
from .losses import ReIDLoss
from .recipes import Recipe, RecipeError, default_data_root, load_recipe

__all__ = ['train', 'Trainer', 'RunResult', 'NonFiniteLossError', 'evaluate_model', 'build_optimizer',
           'lr_factor', 'seed_everything', 'RESUMABLE_KEYS', 'RECORDED_RESUME_KEYS']

_logger = logging.getLogger(__name__)

RECIPE_FILE = 'recipe.yaml'
LOG_FILE = 'log.jsonl'
METRICS_FILE = 'metrics.json'
# recipe keys a resumed run may change: they do not alter what is computed
RESUMABLE_KEYS = ('train.max_steps', 'train.progress', 'train.checkpoint_every', 'train.log_every', 'train.device',
                  'data.num_workers', 'data.root', 'eval.num_workers', 'eval.batch_size')
# recipe keys a resumed run may change although they alter what is computed from the checkpoint on (the remedies the
# non-finite-loss message advises): the change is written to the run's recipe.yaml and recorded in log.jsonl
RECORDED_RESUME_KEYS = ('optim.lr', 'train.grad_clip')


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or Inf; the run stopped before applying it."""


@dataclass
class RunResult:
    """What :func:`train` returns.

    Attributes:
        output_dir: the run directory.
        step: global optimisation steps done.
        epoch: completed epochs.
        metrics: the last evaluation (``mAP``, ``rank1``, ``rank5``, ``rank10``, ``rank20``, ``mINP``, ``protocol``),
            empty when the run did not evaluate.
        checkpoint: the last checkpoint written.
        model: the trained model (unwrapped from DDP), in eval mode.
        recipe: the resolved recipe.
    """
    output_dir: Path
    step: int
    epoch: int
    metrics: dict[str, Any]
    checkpoint: Optional[Path]
    model: Optional[nn.Module] = field(default=None, repr=False)
    recipe: Optional[Recipe] = field(default=None, repr=False)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def lr_factor(epoch: float, schedule: dict[str, Any]) -> float:
    """Learning-rate multiplier at a (fractional) epoch: warm-up, then multistep / step / cosine / constant.

    Decays happen at whole epochs as in the authors' ``scheduler.step()`` once per epoch; warm-up is linear within
    epochs.
    """
    whole = math.floor(epoch + 1e-9)
    name = schedule['name']
    if name == 'multistep':
        factor = schedule['gamma'] ** sum(whole >= m for m in schedule['milestones'])
    elif name == 'step':
        factor = schedule['gamma'] ** (whole // schedule['step_size']) if schedule['step_size'] else 1.0
    elif name == 'cosine':
        factor = 0.5 * (1 + math.cos(math.pi * min(epoch / schedule['epochs'], 1.0)))
    else:
        factor = 1.0
    warmup = schedule['warmup_epochs']
    if warmup and epoch < warmup:
        start = schedule['warmup_factor']
        factor *= start + (1 - start) * epoch / warmup
    return factor


def build_optimizer(model: nn.Module, optim: dict[str, Any]) -> torch.optim.Optimizer:
    """The recipe's optimiser; ``optim.param_groups`` scale the learning rate of parameters matched by name.

    Each parameter joins the first group whose glob (or list of globs) matches its name, e.g. STMP's 0.1x rate for
    the pretrained Inception weights: ``[{params: 'backbone.AuxLogits.*', lr_scale: 1.0},
    {params: 'backbone.*', lr_scale: 0.1}]``. Unmatched parameters use the base rate.
    """
    specs = optim['param_groups']
    buckets: list[list[nn.Parameter]] = [[] for _ in range(len(specs) + 1)]
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        for i, spec in enumerate(specs):
            patterns = [spec['params']] if isinstance(spec['params'], str) else spec['params']
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                buckets[i].append(param)
                break
        else:
            buckets[-1].append(param)
    scales = [float(s['lr_scale']) for s in specs] + [1.0]
    # lr_scale is kept in the group (and so in the checkpoint): a resume with another optim.lr rescales from it
    groups = [{'params': ps, 'lr': optim['lr'] * s, 'initial_lr': optim['lr'] * s, 'lr_scale': s}
              for ps, s in zip(buckets, scales) if ps]
    for spec, ps in zip(specs, buckets):
        if not ps:
            raise RecipeError(f'optim.param_groups entry {spec!r} matches no parameter of the model; '
                              f'parameter names look like {next(iter(dict(model.named_parameters())))!r}.')
    name = optim['name']
    if name == 'sgd':
        return torch.optim.SGD(groups, lr=optim['lr'], momentum=optim['momentum'], nesterov=optim['nesterov'],
                               weight_decay=optim['weight_decay'])
    cls = torch.optim.Adam if name == 'adam' else torch.optim.AdamW
    return cls(groups, lr=optim['lr'], betas=tuple(optim['betas']), weight_decay=optim['weight_decay'])


# --- evaluation -------------------------------------------------------------------------------------------------------
def evaluate_model(
        model: nn.Module,
        dataset: Any,
        protocol: Optional[str] = None,
        *,
        test_sampling: Optional[str] = None,
        seq_len: Optional[int] = None,
        distance: Optional[str] = None,
        batch_size: int = 32,
        num_workers: int = 0,
        device: Union[str, torch.device, None] = None,
        amp: bool = False,
        progress: bool = False,
) -> dict[str, Any]:
    """Score ``model`` on ``dataset`` with a named protocol, through the one pipeline :func:`reidzoo.eval.evaluate`.

    Tracklet embeddings are the mean of the embeddings of the tracklet's test clips (the model's own test sampling
    unless overridden); the distance is the model's (``pretrained_cfg['distance']``) unless overridden; the protocol
    defaults to the dataset's own (:func:`reidzoo.spec.datasets.default_protocol`).

    Returns:
        ``{'protocol', 'mAP', 'mINP', 'rank1', 'rank5', 'rank10', 'rank20', 'num_valid_queries'}`` (fractions).
    """
    result = evaluate(model, dataset, protocol, distance=distance, test_sampling=test_sampling, seq_len=seq_len,
                      batch_size=batch_size, num_workers=num_workers, device=device, amp=amp, progress=progress)
    metrics = result.as_dict()
    del metrics['num_queries'], metrics['ap']
    return metrics


# --- distributed ------------------------------------------------------------------------------------------------------
def _init_distributed(device: torch.device) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment: the one helper the leaderboard uses too (it
    initialises the process group once, with a timeout long enough for rank 0 to evaluate a large test set)."""
    return tuple(init_distributed(device))


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if channels_last:  # clips are 5-D; frames become NHWC images inside the model's flatten(0, 1)
        b, t = x.shape[:2]
        x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (b, t))
    return x


class Trainer:
    """Runs one recipe in one output directory; :func:`train` is the one-call wrapper.

    Args:
        recipe: a loaded :class:`~reidzoo.train.recipes.Recipe`.
        output_dir: the run directory (created).
        resume: continue from ``output_dir/checkpoint.pt``.
        resume_changes: recipe keys this resumed run changes (:data:`RECORDED_RESUME_KEYS`), ``{key: (old, new)}``;
            recorded in ``log.jsonl`` and written to the run's ``recipe.yaml``.
        trust_pickle: unpickle the checkpoint without restrictions (only for format-1 checkpoints your own runs
            wrote; see :func:`~reidzoo.train.checkpoint.load_checkpoint`).
        callbacks: called as ``callback(trainer, record)`` after every optimisation step (after any checkpoint of
            that step is written); ``record`` holds ``step``, ``epoch`` and the loss terms. Raising stops the run.
    """

    def __init__(self, recipe: Recipe, output_dir: Union[str, Path], resume: bool = False,
                 callbacks: Sequence[Callable[['Trainer', dict[str, Any]], None]] = (), *,
                 resume_changes: Optional[dict[str, tuple[Any, Any]]] = None, trust_pickle: bool = False):
        self.recipe = recipe
        self.output_dir = Path(output_dir)
        self.resume = resume
        self.resume_changes = dict(resume_changes or {})
        self.trust_pickle = trust_pickle
        self.callbacks = list(callbacks)
        t = recipe['train']
        want = t['device']
        if want == 'auto':
            want = 'cuda' if torch.cuda.is_available() else 'cpu'
        self.rank, self.world_size, self.local_rank = _init_distributed(torch.device(want))
        if torch.device(want).type == 'cuda' and torch.device(want).index is None:
            want = f'cuda:{self.local_rank}'
        self.device = torch.device(want)
        self.is_main = self.rank == 0
        amp = t['amp']
        if amp in ('auto', True):
            amp = 'fp16' if self.device.type == 'cuda' else 'none'
        self.amp_dtype = {'fp16': torch.float16, 'bf16': torch.bfloat16}.get(amp or 'none')
        cl = t['channels_last']
        self.channels_last = self.device.type == 'cuda' if cl == 'auto' else bool(cl)
        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.epoch_length = 1
        self.metrics: dict[str, Any] = {}
        self.checkpoint_path = self.output_dir / CHECKPOINT_NAME
        self.last_checkpoint: Optional[Path] = None
        self.last_checkpoint_step: Optional[int] = None
        self._ready = False

    # --- setup ---------------------------------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if self.is_main:
            with open(self.output_dir / LOG_FILE, 'a') as f:
                f.write(json.dumps(record) + '\n')

    def setup(self) -> None:
        """Build data, model, optimiser and loss (and restore the checkpoint when resuming); :meth:`fit` calls it."""
        r = self.recipe
        data, t = r['data'], r['train']
        if t['deterministic']:
            torch.use_deterministic_algorithms(True, warn_only=True)
            os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        if self.device.type == 'cuda':
            torch.backends.cudnn.benchmark = not t['deterministic']
        seed = int(t['seed'])
        seed_everything(seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)

        root = data['root'] or default_data_root(data['dataset'])
        if root is None and not get_dataset_spec(data['dataset']).synthetic:  # a synthetic dataset is generated
            raise RecipeError(f'No data root for {data["dataset"]}: pass --set data.root=/path/to/{data["dataset"]} '
                              f'or set REIDZOO_DATA to the folder holding it.')
        if not self.is_main:
            self._barrier()  # rank 0 parses (or, for SynthVID, generates) the data first
        self.dataset = build_dataset(data['dataset'], root, **data['dataset_kwargs'])
        if self.is_main:
            self._barrier()
        train_set = [tr for tr in self.dataset.train if len(tr.frames) >= data['min_frames']]
        if not train_set:
            raise RecipeError(f'No training tracklet has at least data.min_frames={data["min_frames"]} frames.')

        kwargs = dict(r['model_kwargs'])
        kwargs.setdefault('num_classes', self.dataset.num_train_pids)
        if data['input_size']:  # deprecated second statement of the frame size (older recipes)
            if 'img_size' in kwargs and list(kwargs['img_size']) != list(data['input_size']):
                raise RecipeError(f'The recipe states the frame size twice and differently: model_kwargs.img_size='
                                  f'{list(kwargs["img_size"])}, data.input_size={list(data["input_size"])}. Keep only '
                                  f'model_kwargs.img_size.')
            kwargs.setdefault('img_size', list(data['input_size']))
        # the model's cfg (its transforms, `reidzoo info`, the exported config) describes the size it was built for
        overlay = {'input_size': (3, *kwargs['img_size'])} if 'img_size' in kwargs else {}
        self.model = create_model(r['model'], pretrained_backbone=bool(r['pretrained_backbone']) and not self.resume,
                                  pretrained_cfg_overlay=overlay or None, **kwargs)
        # what `reidzoo export` needs to rebuild this exact model without the dataset
        self.model_config = {'architecture': r['model'], 'num_classes': int(self.model.num_classes),
                             'model_args': dict(self.model.pretrained_cfg.get('model_args', {})),
                             'cfg_overlay': overlay}
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.world_size > 1 and t['sync_bn']:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.train_model: nn.Module = self.model
        if self.world_size > 1:
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == 'cuda' else None,
                find_unused_parameters=bool(t.get('find_unused_parameters', False)))

        p, k = data['num_ids'], data['num_instances']
        if p % self.world_size:
            raise RecipeError(f'data.num_ids={p} identities per global batch cannot be split over {self.world_size} '
                              f'processes; choose a multiple of the world size.')
        self.batch_size = (p // self.world_size) * k
        self.sampler = RandomIdentitySampler(train_set, self.batch_size, k, seed=seed, rank=self.rank,
                                             world_size=self.world_size)
        transform = build_clip_transform(self.model.pretrained_cfg, train=True, **data['augment'])
        self.train_data = VideoClipDataset(train_set, data['seq_len'], data['sampling'], transform, seed=seed)
        # the P x K plan of an epoch varies in length with the random grouping (each epoch runs its own plan, capped
        # by schedule.iters_per_epoch): the run's length is the sum over epochs, so the progress bar ends at its total
        lengths = [self._epoch_length(e) for e in range(r['schedule']['epochs'])]
        self.iters_per_epoch = lengths[0]
        if min(lengths) < 1:
            raise RecipeError(f'The training set gives no full batch of {p} identities x {k} clips.')
        self.total_steps = sum(lengths)
        if t['max_steps']:
            self.total_steps = min(self.total_steps, int(t['max_steps']))

        self.optimizer = build_optimizer(self.model, r['optim'])
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.criterion = ReIDLoss(r['loss'])

        self.output_dir.mkdir(parents=True, exist_ok=True)
        if self.resume:
            self._restore()
        else:
            if self.checkpoint_path.exists():
                raise FileExistsError(f'{self.output_dir} already holds a run ({CHECKPOINT_NAME}); pass --resume to '
                                      f'continue it or choose a new --output directory.')
            if self.is_main:
                atomic_write(self.output_dir / RECIPE_FILE, lambda f: f.write(self.recipe.dump()), mode='w')
                log = self.output_dir / LOG_FILE
                if log.exists():
                    log.unlink()
            seed_everything(seed + 1000003 * self.rank)  # ranks draw different dropout / STA frame choices
        self._ready = True
        self._barrier()

    def _barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    # --- checkpoints ---------------------------------------------------------------------------------------------
    def _gather(self, obj: Any) -> list[Any]:
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def save(self) -> None:
        """Write the checkpoint (rank 0; every rank's RNG state is gathered into it)."""
        rng = self._gather(capture_rng_state())
        if not self.is_main:
            return
        state = {
            'step': self.step, 'epoch': self.epoch, 'step_in_epoch': self.step_in_epoch,
            'model': self.model.state_dict(),
            'model_config': self.model_config,
            'optimizer': self.optimizer.state_dict(),
            'scheduler': {'name': self.recipe['schedule']['name'], 'epoch_length': self.epoch_length},
            'scaler': self.scaler.state_dict(),
            'sampler': self.sampler.state_dict(batches_consumed=self.step_in_epoch),
            'rng': rng,
            'world_size': self.world_size,
            'metrics': self.metrics,
            'recipe': self.recipe.to_dict(),
        }
        self.last_checkpoint = save_checkpoint(self.checkpoint_path, state)
        self.last_checkpoint_step = self.step

    def _restore(self) -> None:
        state = load_checkpoint(self.checkpoint_path, map_location='cpu', trust_pickle=self.trust_pickle)
        if state['world_size'] != self.world_size:
            raise RuntimeError(f'{self.checkpoint_path} was written by {state["world_size"]} processes; resume it with '
                               f'the same number (torchrun --nproc_per_node {state["world_size"]}) to continue '
                               f'the same run.')
        self.model.load_state_dict(state['model'])
        self.optimizer.load_state_dict(state['optimizer'])
        if 'optim.lr' in self.resume_changes:  # the checkpoint's groups carry the old base rate
            old_lr, new_lr = self.resume_changes['optim.lr']
            for group in self.optimizer.param_groups:
                scale = group.get('lr_scale', group['initial_lr'] / float(old_lr))
                group['initial_lr'] = float(new_lr) * scale
        self.scaler.load_state_dict(state['scaler'])
        self.step, self.epoch, self.step_in_epoch = state['step'], state['epoch'], state['step_in_epoch']
        self.metrics = state.get('metrics', {})
        self.last_checkpoint, self.last_checkpoint_step = self.checkpoint_path, self.step
        restore_rng_state(state['rng'][self.rank])
        if self.is_main:
            changed = ''.join(f', {k} {old} -> {new}' for k, (old, new) in self.resume_changes.items())
            print(f'resuming {self.output_dir} from step {self.step} (epoch {self.epoch}, batch '
                  f'{self.step_in_epoch} of {self._epoch_length(self.epoch)}){changed}', file=sys.stderr)
            if self.resume_changes:  # a later resume without --set must keep the changed values
                atomic_write(self.output_dir / RECIPE_FILE, lambda f: f.write(self.recipe.dump()), mode='w')
            for stale in self.output_dir.glob(f'.{CHECKPOINT_NAME}.*.tmp'):  # a writer killed mid-write
                stale.unlink(missing_ok=True)
            # drop log lines written after the checkpoint: they will be computed again
            log = self.output_dir / LOG_FILE
            if log.exists():
                kept = [line for line in log.read_text().splitlines() if _log_step(line) <= self.step]
                atomic_write(log, lambda f: f.write(''.join(x + '\n' for x in kept)), mode='w')

    # --- training ------------------------------------------------------------------------------------------------
    def _loader(self, epoch: int) -> torch.utils.data.DataLoader:
        self.train_data.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        if self.step_in_epoch:  # resuming inside this epoch
            self.sampler.load_state_dict(
                {'epoch': epoch, 'position': self.step_in_epoch * self.batch_size, 'seed': self.sampler.seed,
                 'world_size': self.world_size})
        workers = int(self.recipe['data']['num_workers'])
        # worker seeds from (seed, epoch, rank): drawing them from the global generator would shift the RNG stream
        generator = torch.Generator().manual_seed(
            int(np.random.default_rng([int(self.recipe['train']['seed']), epoch, self.rank]).integers(2 ** 62)))
        return torch.utils.data.DataLoader(
            self.train_data, batch_size=self.batch_size, sampler=self.sampler, drop_last=True, num_workers=workers,
            pin_memory=self.device.type == 'cuda', generator=generator, worker_init_fn=_seed_worker,
            persistent_workers=False)

    def _check_finite(self, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        names = list(losses)
        values = torch.stack([losses[n].detach().float() for n in names])
        if self.world_size > 1:
            values = values.to(self.device)
            dist.all_reduce(values)
            values = values / self.world_size
        values = values.cpu().tolist()
        record = dict(zip(names, values))
        bad = [n for n, v in record.items() if not math.isfinite(v)]
        if bad:
            lower = f'{float(self.recipe["optim"]["lr"]) / 10:g}'
            fresh = (f'reidzoo train --recipe {self.output_dir / RECIPE_FILE} --output {{}} --set optim.lr={lower}')
            if self.last_checkpoint and self.last_checkpoint_step < self.step:
                # the weights of the failed step came from updates after the checkpoint: a lower rate changes them
                where = (f'the last good checkpoint {self.last_checkpoint} (step {self.last_checkpoint_step}) is '
                         f'intact. Continue from it with a lower learning rate: reidzoo train --resume --output '
                         f'{self.output_dir} --set optim.lr={lower}')
            elif self.last_checkpoint:
                # this forward ran on the checkpoint's own weights: resuming (at any rate) would compute it again
                where = (f'the checkpoint {self.last_checkpoint} (step {self.last_checkpoint_step}) is intact, but '
                         f'its weights give this loss, so resuming from it cannot help. Start a new run with a lower '
                         f'learning rate: ' + fresh.format(f'{self.output_dir}-lr{lower}'))
            else:  # nothing to resume from: start again (the run directory holds no checkpoint, so it may be reused)
                where = ('no checkpoint had been written yet. Start again with a lower learning rate: '
                         + fresh.format(self.output_dir))
            raise NonFiniteLossError(
                f'Non-finite loss at step {self.step + 1} (epoch {self.epoch}, batch {self.step_in_epoch}): '
                + ', '.join(f'loss term {n!r} = {record[n]}' for n in bad)
                + f'. The run stopped before the update; {where} (add train.grad_clip=5 to clip gradients), or '
                  f'check the data.')
        return record

    def _epoch_length(self, epoch: int) -> int:
        """Optimisation steps of ``epoch``: its P x K plan, capped by ``schedule.iters_per_epoch``."""
        saved = (self.sampler.epoch, self.sampler.position)
        self.sampler.epoch = epoch
        full = len(self.sampler.batches())
        self.sampler.epoch, self.sampler.position = saved
        cap = self.recipe['schedule']['iters_per_epoch']
        return min(cap, full) if cap else full

    def _set_lr(self) -> float:
        factor = lr_factor(self.epoch + self.step_in_epoch / self.epoch_length, self.recipe['schedule'])
        for group in self.optimizer.param_groups:
            group['lr'] = group['initial_lr'] * factor
        return self.optimizer.param_groups[-1]['lr']

    def train_step(self, clips: torch.Tensor, pids: torch.Tensor) -> dict[str, float]:
        lr = self._set_lr()
        clips = _to_device(clips, self.device, self.channels_last)
        pids = pids.to(self.device, non_blocking=True)
        self.train_model.train()
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            output = self.train_model(clips)
        losses = self.criterion(output, pids)
        record = self._check_finite(losses)
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.recipe['train']['grad_clip']:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), float(self.recipe['train']['grad_clip']))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        record['loss'] = sum(record.values())
        record['lr'] = lr
        return record

    def evaluate(self) -> dict[str, Any]:
        """Evaluate on rank 0 with the recipe's protocol; other ranks wait."""
        metrics: dict[str, Any] = {}
        if self.is_main:
            e = self.recipe['eval']
            metrics = evaluate_model(
                self.model, self.dataset, e['protocol'], test_sampling=e['test_sampling'], seq_len=e['seq_len'],
                distance=e['distance'], batch_size=e['batch_size'], num_workers=e['num_workers'], device=self.device,
                amp=self.amp_dtype is not None, progress=bool(self.recipe['train']['progress']))
            metrics.update(step=self.step, epoch=self.epoch)
            self._log({'type': 'eval', **metrics})
        self._barrier()
        return metrics

    def _check_replicas(self) -> None:
        """DDP keeps replicas identical; verify it (cheaply) at every epoch end and log the result."""
        if self.world_size == 1:
            return
        sums = torch.stack([p.detach().double().sum() for p in self.model.parameters()]).cpu()
        gathered = self._gather(sums)
        diff = max(float((g - gathered[0]).abs().max()) for g in gathered)
        self._log({'type': 'replicas', 'step': self.step, 'epoch': self.epoch, 'max_abs_diff': diff,
                   'fingerprints': [float(g.sum()) for g in gathered]})
        if diff != 0.0:
            raise RuntimeError(f'DDP replicas disagree after step {self.step} (max parameter-sum difference {diff}).')

    def fit(self) -> RunResult:
        from tqdm.auto import tqdm
        if not self._ready:
            self.setup()
        t = self.recipe['train']
        epochs = self.recipe['schedule']['epochs']
        every = int(t['checkpoint_every'] or 0)
        eval_every = int(self.recipe['eval']['every_epochs'] or 0)
        max_steps = t['max_steps']
        log_every = max(1, int(t['log_every']))
        if self.resume:
            self._log({'type': 'resume', 'step': self.step, 'epoch': self.epoch, 'world_size': self.world_size,
                       **({'changed': {k: list(v) for k, v in self.resume_changes.items()}}
                          if self.resume_changes else {})})
        else:
            self._log({'type': 'start', 'step': 0, 'recipe': self.recipe['name'], 'world_size': self.world_size,
                       'iters_per_epoch': self.iters_per_epoch, 'epochs': epochs, 'device': str(self.device)})
        bar = tqdm(total=self.total_steps, initial=self.step, desc=self.recipe['name'] or 'train', unit='step',
                   disable=not (self.is_main and t['progress']))
        stopped_early = False
        try:
            while self.epoch < epochs and not stopped_early:
                start = time.time()
                self.epoch_length = self._epoch_length(self.epoch)
                record: dict[str, Any] = {}
                if self.step_in_epoch < self.epoch_length:
                    for clips, pids, _ in self._loader(self.epoch):
                        record = self.train_step(clips, pids)
                        self.step += 1
                        self.step_in_epoch += 1
                        bar.update(1)
                        bar.set_postfix(loss=f'{record["loss"]:.3f}', epoch=self.epoch)
                        epoch_done = self.step_in_epoch >= self.epoch_length
                        if self.step % log_every == 0 or epoch_done:
                            self._log({'type': 'train', 'step': self.step, 'epoch': self.epoch, **record})
                        if max_steps and self.step >= max_steps:
                            stopped_early = True
                        if not epoch_done and (stopped_early or (every and self.step % every == 0)):
                            self.save()
                        if not epoch_done:
                            self._callbacks({'step': self.step, 'epoch': self.epoch, **record})
                        if stopped_early or epoch_done:
                            break
                if self.step_in_epoch >= self.epoch_length:
                    self.epoch += 1
                    self.step_in_epoch = 0
                    self._check_replicas()
                    if eval_every and self.epoch % eval_every == 0 and self.epoch < epochs:
                        self.metrics = self.evaluate()
                    self._log({'type': 'epoch', 'step': self.step, 'epoch': self.epoch,
                               'seconds': round(time.time() - start, 3)})
                    self.save()
                    self._callbacks({'step': self.step, 'epoch': self.epoch, **record})
            if not stopped_early and self.epoch >= epochs:
                if self.recipe['eval']['at_end'] and self.metrics.get('step') != self.step:
                    self.metrics = self.evaluate()
                    self.save()
                if self.is_main:
                    atomic_write(self.output_dir / METRICS_FILE,
                                 lambda f: f.write(json.dumps(self.metrics, indent=2) + '\n'), mode='w')
        finally:
            bar.close()
        self.model.eval()
        return RunResult(self.output_dir, self.step, self.epoch, self.metrics, self.last_checkpoint, self.model,
                         self.recipe)

    def _callbacks(self, record: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback(self, record)


def _log_step(line: str) -> float:
    """The step of a log line; ``inf`` (dropped on resume) for a blank line or one torn by a kill mid-write."""
    try:
        return float(json.loads(line).get('step', 0))
    except (ValueError, AttributeError):
        return float('inf')


def _seed_worker(worker_id: int) -> None:
    """Seed a data-loader worker's Python and NumPy generators from its torch seed (set by the loader's generator)."""
    seed = torch.initial_seed() % 2 ** 32
    random.seed(seed)
    np.random.seed(seed)


def _resolve(recipe: Union[str, Path, dict, Recipe, None], overrides: Union[Iterable[str], dict[str, Any], None],
             output_dir: Path, resume: bool) -> tuple[Recipe, dict[str, tuple[Any, Any]]]:
    """The recipe of a run and, when resuming, the :data:`RECORDED_RESUME_KEYS` it changes (``{key: (old, new)}``).

    A resumed run uses the recipe stored in its directory, with ``overrides`` (or the ``recipe`` given) applied; only
    :data:`RESUMABLE_KEYS` and :data:`RECORDED_RESUME_KEYS` may differ from the stored one.
    """
    stored = output_dir / RECIPE_FILE
    if not resume:
        if recipe is None:
            raise RecipeError('No recipe given: pass --recipe NAME_OR_PATH (see `reidzoo train --list`).')
        return (recipe if isinstance(recipe, Recipe) and not overrides else load_recipe(recipe, overrides)), {}
    if not stored.is_file():
        raise FileNotFoundError(f'Cannot resume: {stored} does not exist (is {output_dir} a reidzoo run directory?).')
    saved = load_recipe(stored)
    if recipe is not None:
        given = recipe if isinstance(recipe, Recipe) and not overrides else load_recipe(recipe, overrides)
    else:
        given = load_recipe(stored, overrides)
    changed = _diff(saved.to_dict(), given.to_dict())
    bad = [k for k in changed if k not in RESUMABLE_KEYS + RECORDED_RESUME_KEYS]
    if bad:
        raise RecipeError(
            f'Cannot resume {output_dir} with {", ".join(bad)} changed from {stored}: a resumed run continues the same '
            f'computation. Only {", ".join(RESUMABLE_KEYS)} (they change nothing computed) and '
            f'{", ".join(RECORDED_RESUME_KEYS)} (recorded in the run log) may change; start a new run (another '
            f'--output) to change the others.')
    return given, {k: (_get(saved, k), _get(given, k)) for k in changed if k in RECORDED_RESUME_KEYS}


def _get(recipe: dict[str, Any], dotted: str) -> Any:
    value: Any = recipe
    for key in dotted.split('.'):
        value = value[key]
    return value


def _diff(a: Any, b: Any, prefix: str = '') -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k), b.get(k), f'{prefix}{k}.')
        return out
    return [] if a == b else [prefix.rstrip('.')]


def train(
        recipe: Union[str, Path, dict, Recipe, None],
        overrides: Union[Iterable[str], dict[str, Any], None] = None,
        output_dir: Union[str, Path] = 'runs/reidzoo',
        resume: bool = False,
        callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
        trust_pickle: bool = False,
) -> RunResult:
    """Train a model from a recipe.

    Args:
        recipe: shipped recipe name, YAML path, dict or :class:`Recipe`. With ``resume=True`` it may be ``None``
            (the run directory's ``recipe.yaml`` is used).
        overrides: ``['optim.lr=1e-4', ...]`` or ``{'optim.lr': 1e-4}``.
        output_dir: run directory for ``recipe.yaml``, ``checkpoint.pt``, ``log.jsonl`` and ``metrics.json``.
        resume: continue the run in ``output_dir`` from its last checkpoint. ``overrides`` may then change only
            :data:`RESUMABLE_KEYS` and :data:`RECORDED_RESUME_KEYS` (e.g. a lower ``optim.lr`` after a non-finite
            loss; recorded in ``log.jsonl``).
        callbacks: ``callback(trainer, record)`` after every step (see :class:`Trainer`).
        trust_pickle: unpickle the checkpoint without restrictions (format-1 checkpoints of your own runs only).

    Returns:
        A :class:`RunResult` with the final metrics and the trained model.
    """
    output_dir = Path(output_dir)
    resolved, changes = _resolve(recipe, overrides, output_dir, resume)
    return Trainer(resolved, output_dir, resume=resume, callbacks=callbacks, resume_changes=changes,
                   trust_pickle=trust_pickle).fit()
