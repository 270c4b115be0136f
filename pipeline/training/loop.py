"""`panst3r-splat train-model`: train our own PanSt3R on synthetic scenes, resumably.

Files next to `--out` (e.g. `model.safetensors`):
- `model.safetensors`: the model (fp16 weights + architecture + class set as metadata), rewritten at every checkpoint;
- `model.resume.pt`: weights, optimiser state, step and RNG states, loadable with `torch.load(weights_only=True)`;
  `--resume` continues from it with the same data order (sample index = step * batch);
- `model.log.csv`: one row per `log_every` steps (losses, learning rate, seconds); `model.eval.csv`: held-out
  metrics every `eval_every` steps.
Both checkpoint files are written to a temporary name and renamed, so an interruption never leaves a broken file.
Ctrl-C and SIGTERM (`kill PID`) both end the run with a checkpoint of the last finished step.
"""

from __future__ import annotations

import csv
import logging
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from panst3r_splat.configs.model_presets import MODEL_PRESETS
from panst3r_splat.configs.training import TrainPreset
from panst3r_splat.core.atomic_io import atomic_output
from panst3r_splat.core.checkpoint import load_own_checkpoint, save_checkpoint
from panst3r_splat.core.class_sets import builtin_class_set
from panst3r_splat.core.class_table import CLASSES
from panst3r_splat.core.model.panst3r import PanSt3R
from panst3r_splat.core.training.losses import MaskOutputs, PanopticCriterion, ScenePrediction
from panst3r_splat.pipeline.devices import pin_threads
from panst3r_splat.pipeline.training.data import ContinuingSampler, SyntheticScenes, collate
from panst3r_splat.pipeline.training.evaluate import evaluate_held_out
from panst3r_splat.pipeline.training.targets import targets_to

log = logging.getLogger(__name__)


def learning_rate(step: int, preset: TrainPreset) -> float:
    """Linear warm-up, then half-cosine to `min_lr` at `preset.steps` (PanSt3R's schedule, per step)."""
    if step < preset.warmup_steps:
        return preset.lr * (step + 1) / preset.warmup_steps
    progress = min(1.0, (step - preset.warmup_steps) / max(1, preset.steps - preset.warmup_steps))
    return preset.min_lr + (preset.lr - preset.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(("token", "embed", "_embed.weight", "biases")) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def scene_predictions(output, batch_size: int, *, with_tokens: bool = False) -> list[ScenePrediction]:
    """Split a batched `TrainingOutput` into the per-scene inputs of the criterion (``with_tokens``: the encoder
    and decoder patch tokens too, for the correspondence loss)."""
    pan = output.panoptic
    preds = []
    for b in range(batch_size):
        masks = None if pan is None else MaskOutputs(pan.class_logits[b], pan.mask_logits[b])
        aux = () if pan is None else tuple(MaskOutputs(a.class_logits[b], a.mask_logits[b]) for a in pan.aux)
        memory = None if output.pointmaps_memory_raw is None else output.pointmaps_memory_raw[b]
        tokens = (output.encoder_tokens[b], output.decoder_tokens[b]) if with_tokens else ()
        desc = None if output.descriptors_raw is None else output.descriptors_raw[b]
        preds.append(ScenePrediction(masks, aux, output.pointmaps_raw[b], memory, tokens, desc))
    return preds


def _worker_init(_: int) -> None:
    """One thread per data worker (torch and BLAS): the workers render scenes in parallel, and the default of one
    thread per core in every worker oversubscribes the CPU many times over. Workers ignore SIGTERM (a `kill` of the
    whole process group): the main process then writes its checkpoint and stops them; torch's watchdog ends them if
    the main process dies."""
    pin_threads(1)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextmanager
def _termination_requests():
    """While active, SIGTERM (`kill PID`, a scheduler ending the job) only sets the returned flag, so the loop can
    finish its step, write a checkpoint and stop cleanly. Ctrl-C keeps raising KeyboardInterrupt (checkpointed too).
    Off the main thread signal handlers cannot be set, and the flag simply never rises."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: requested.set())
    try:
        yield requested
    finally:
        signal.signal(signal.SIGTERM, previous)


def _resume_path(out: Path) -> Path:
    return out.with_suffix(".resume.pt")


def _append_csv(path: Path, row: dict) -> None:
    """Append a row (in the file's column order, blank where the row lacks a column); only when the row brings new
    columns (a run resumed with another recipe) is the file rewritten with the union of the columns, earlier rows
    left blank in the new ones."""
    header: list[str] = []
    if path.exists():
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
    if set(row) <= set(header) or not header:
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header or list(row))
            if not header:
                writer.writeheader()
            writer.writerow(row)
        return
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    _rewrite_csv(path, header + [k for k in row if k not in header], rows + [row])


def _rewrite_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Replace a log with these rows (atomically: a run stopped mid-write keeps the old file)."""
    with atomic_output(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _resume_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                  generator: torch.Generator, *, compact: bool) -> dict:
    """What `--resume` needs: weights, optimiser moments (not when compact), step and RNG states."""
    state = {"step": step, "generator": generator.get_state(), "torch_rng": torch.get_rng_state()}
    if compact:
        state["model"] = {k: v.detach().to(torch.float16) if v.is_floating_point() else v
                          for k, v in model.state_dict().items()}
    else:
        state["model"] = model.state_dict()
        state["optimizer"] = optimizer.state_dict()
    return state


def _checkpoint_metadata(preset: TrainPreset, step: int) -> dict[str, str]:
    meta = {"train_step": str(step), "train_model": preset.model}
    if preset.camera_source is not None:
        meta["camera_source"] = preset.camera_source
    if preset.criterion.pts_global_weight == 0.0 and preset.criterion.memory_pass_weight == 0.0:
        meta["global_head_trained"] = "false"
    return meta


class _WindowStats:
    """Running means of extra per-step figures over one log window (each figure over the steps that had it)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        out = {k: self.sums[k] / self.counts[k] for k in sorted(self.sums)}
        self.sums, self.counts = {}, {}
        return out


def class_pixel_shares(batch) -> dict[str, float]:
    """Share of the batch's labelled pixels per class (``px/<name>``), to check that every class is seen."""
    counts = torch.zeros(len(CLASSES), dtype=torch.float64)
    for sample in batch:
        masks, classes = sample.targets.gt_masks, sample.targets.gt_classes
        counts.index_add_(0, classes.cpu(), masks.flatten(1).sum(1).double().cpu())
    total = float(counts.sum()) or 1.0
    return {f"px/{c.name}": float(counts[i]) / total for i, c in enumerate(CLASSES)}


def gradient_shares(model: PanSt3R, criterion: PanopticCriterion, terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """Gradient norm of each weighted loss term (auxiliary layers pooled into their base term) on the shared
    MUSt3R encoder and decoder (``gnorm/<term>``): which term drives the trunk."""
    trunk = [p for m in (model.must3r_encoder, model.must3r_decoder) for p in m.parameters() if p.requires_grad]
    pooled: dict[str, torch.Tensor] = {}
    for name, value in terms.items():
        if name == "loss_total" or not value.requires_grad:
            continue
        weight = criterion.term_weight(name)
        if weight == 0.0:
            continue
        base = name.split("/", 1)[-1]
        pooled[base] = pooled.get(base, 0.0) + weight * value
    out = {}
    for base, value in pooled.items():
        grads = torch.autograd.grad(value, trunk, retain_graph=True, allow_unused=True)
        out[f"gnorm/{base}"] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))
    return out


def _drop_rows_after(path: Path, step: int) -> None:
    """Remove the rows of steps after ``step`` (rows are numbered by steps done) from a training log."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = list(reader.fieldnames or []), list(reader)
    kept = [row for row in rows if int(row["step"]) <= step]
    if len(kept) < len(rows):
        _rewrite_csv(path, columns, kept)


def _initial_state(preset: TrainPreset, out: Path, resume: bool, init_from: Path | None,
                   device: torch.device) -> tuple[PanSt3R, torch.optim.Optimizer, int, torch.Generator]:
    """Model, optimiser, step and data generator: fresh, from the resume file, or from a saved model."""
    model = PanSt3R(MODEL_PRESETS[preset.model]()).to(device)
    optimizer = torch.optim.AdamW(_param_groups(model, preset.weight_decay), lr=preset.lr, betas=preset.betas)
    step = 0
    generator = torch.Generator().manual_seed(preset.seed)
    if resume:
        state_path = _resume_path(out)
        if not state_path.exists():
            raise FileNotFoundError(f"no resume file {state_path}; start without --resume")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v.float() for k, v in state["model"].items()})
        if "optimizer" in state:
            optimizer.load_state_dict(state["optimizer"])
        else:
            log.info("compact resume file: fp16 weights, AdamW moments restart from zero")
        step = int(state["step"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed at step %d", step)
    elif init_from is not None:
        loaded = load_own_checkpoint(init_from)
        model.load_state_dict(loaded.model.state_dict())
        step = int(loaded.metadata.get("train_step", 0))
        generator.manual_seed(preset.seed + step)
        log.info("initialised from %s at step %d (fresh optimiser)", init_from, step)
    return model, optimizer, step, generator


def _loader(preset: TrainPreset, step: int, stop: int) -> DataLoader:
    """The samples of steps ``[step, stop)``, in the order a run from step 0 would see them."""
    dataset = SyntheticScenes(preset.data, batch_size=preset.batch_size)
    return DataLoader(dataset, batch_size=preset.batch_size, sampler=ContinuingSampler(step * preset.batch_size,
                      stop * preset.batch_size), num_workers=preset.num_workers, collate_fn=collate,
                      worker_init_fn=_worker_init,
                      persistent_workers=False, prefetch_factor=4 if preset.num_workers else None)


def _train_step(model: PanSt3R, optimizer: torch.optim.Optimizer, batch: list, class_emb: Tensor,
                preset: TrainPreset, step: int, generator: torch.Generator, stats: _WindowStats,
                device: torch.device) -> float:
    """One optimisation step on ``batch`` at ``step``; the window statistics get its losses. Returns the lr."""
    lr = learning_rate(step, preset)
    for group in optimizer.param_groups:
        group["lr"] = lr
    images = torch.stack([s.images for s in batch]).to(device, non_blocking=True)
    targets = [targets_to(s.targets, device) for s in batch]
    output = model(images, class_emb, memory_pass_pointmaps=preset.criterion.memory_pass_weight != 0.0,
                   panoptic=preset.panoptic)
    predictions = scene_predictions(output, len(batch), with_tokens=preset.criterion.correspondence_weight != 0.0)
    result = preset.criterion(predictions, targets, generator=generator)
    optimizer.zero_grad(set_to_none=True)
    if preset.grad_share_every and step % preset.grad_share_every == 0:
        stats.add(gradient_shares(model, preset.criterion, result.terms))
    result.total.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), preset.grad_clip)
    optimizer.step()
    stats.add({**{name: float(value.detach()) for name, value in result.terms.items() if "aux" not in name},
               "grad_norm": float(grad_norm), "clipped": float(grad_norm > preset.grad_clip),
               **class_pixel_shares(batch)})
    return lr


@dataclass
class _Run:
    """What a training call carries from step to step: the model and its bookkeeping."""

    preset: TrainPreset
    out: Path
    model: PanSt3R
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    class_names: tuple[str, ...]
    class_emb: Tensor
    step: int
    started: float = field(default_factory=time.time)
    saved_step: int = -1
    last_checkpoint: float = field(default_factory=time.time)

    def checkpoint(self) -> None:
        """The resume file and the model file, both replaced atomically."""
        self.saved_step, self.last_checkpoint = self.step, time.time()
        with atomic_output(_resume_path(self.out)) as tmp:
            torch.save(_resume_state(self.model, self.optimizer, self.step, self.generator,
                                     compact=self.preset.compact_resume), tmp)
        with atomic_output(self.out) as tmp:
            save_checkpoint(tmp, self.model, class_names=self.class_names, class_embeddings=self.class_emb,
                            dtype=torch.float16, metadata=_checkpoint_metadata(self.preset, self.step))

    def log_and_evaluate(self, stats: _WindowStats, lr: float, stop: int, progress: tqdm) -> None:
        """The log row every ``log_every`` steps (window means), held-out metrics every ``eval_every``."""
        preset, step = self.preset, self.step
        if step % preset.log_every == 0:
            row = {"step": step, "lr": lr, "minutes": (time.time() - self.started) / 60}
            row.update(stats.means())  # fewer than log_every steps in the first window after a resume
            _append_csv(self.out.with_suffix(".log.csv"), row)
            progress.set_postfix(loss=f"{row['loss_total']:.3f}")
        if step % preset.eval_every == 0 or step == stop:
            self.model.eval()
            metrics = evaluate_held_out(self.model, preset.data, self.class_emb, preset.eval_scenes)
            self.model.train()
            _append_csv(self.out.with_suffix(".eval.csv"), {"step": step, **metrics})
            log.info("step %d held-out: %s", step, ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))

    def checkpoint_due(self, stop: int, stopping: bool) -> bool:
        on_timer = (self.preset.checkpoint_minutes is not None
                    and (time.time() - self.last_checkpoint) / 60 >= self.preset.checkpoint_minutes)
        return self.step % self.preset.checkpoint_every == 0 or self.step == stop or stopping or on_timer


def train_model(preset: TrainPreset, out: Path, *, resume: bool, device: torch.device, max_steps: int | None = None,
                max_minutes: float | None = None, init_from: Path | None = None) -> Path:
    """Train (or continue training) and return the model checkpoint path.

    Args:
        preset: the recipe.
        out: model checkpoint path (`.safetensors`); the resume file and logs sit next to it.
        resume: continue from `out.resume.pt` (error if it does not exist).
        device: where to train.
        max_steps: stop after this many steps of this call (default: until `preset.steps`).
        max_minutes: stop (with a checkpoint) after this much wall time.
        init_from: start from the weights and step of a saved model (`.safetensors`) with a fresh optimiser, when
            only the model file of an earlier run is at hand (not bit-for-bit; `resume` is).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    if preset.threads is not None:
        torch.set_num_threads(preset.threads)
    torch.manual_seed(preset.seed)
    torch.backends.cuda.matmul.allow_tf32 = True  # no effect on CPU; small accuracy cost, large speed gain on GPUs
    torch.backends.cudnn.allow_tf32 = True
    model, optimizer, step, generator = _initial_state(preset, out, resume, init_from, device)
    if resume:  # a run that stopped without a checkpoint logged steps it will now take again
        for suffix in (".log.csv", ".eval.csv"):
            _drop_rows_after(out.with_suffix(suffix), step)
    class_set = builtin_class_set(model.config.mask_transformer.lang_dim)
    run = _Run(preset=preset, out=out, model=model, optimizer=optimizer, generator=generator,
               class_names=class_set.class_names,
               class_emb=torch.from_numpy(class_set.class_embeddings).to(device), step=step)
    stop = preset.steps if max_steps is None else min(preset.steps, step + max_steps)
    _run_steps(run, _loader(preset, step, stop), stop, max_minutes, device)
    if run.saved_step != run.step:
        run.checkpoint()
    return out


def _run_steps(run: _Run, loader: DataLoader, stop: int, max_minutes: float | None, device: torch.device) -> None:
    """Step through ``loader``, logging, evaluating and checkpointing; stops on time, SIGTERM or Ctrl-C."""
    stats = _WindowStats()
    run.model.train()
    progress = tqdm(total=stop - run.step, desc="train-model", unit="step", dynamic_ncols=True)
    with _termination_requests() as terminate:
        try:
            for batch in loader:
                lr = _train_step(run.model, run.optimizer, batch, run.class_emb, run.preset, run.step, run.generator,
                                 stats, device)
                run.step += 1
                progress.update(1)
                run.log_and_evaluate(stats, lr, stop, progress)
                timed_out = max_minutes is not None and (time.time() - run.started) / 60 > max_minutes
                if run.checkpoint_due(stop, timed_out or terminate.is_set()):
                    run.checkpoint()
                if timed_out:
                    log.info("stopping after %.1f minutes at step %d (resume with --resume)", max_minutes, run.step)
                    break
                if terminate.is_set():
                    log.info("terminated at step %d; checkpoint written (resume with --resume)", run.step)
                    break
        except KeyboardInterrupt:
            # Ctrl-C: keep what was trained (resume with --resume), then stop as asked.
            progress.close()
            run.checkpoint()
            log.info("interrupted at step %d; checkpoint written (resume with --resume)", run.step)
            raise
    progress.close()
