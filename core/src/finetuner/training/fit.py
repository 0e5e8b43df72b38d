"""fit(): fine-tune any registered backbone (by name) or built EmbeddingModel on your data."""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetuner.errors import TrainingError
from finetuner.models.embedding import EmbeddingModel
from finetuner.runtime import autocast, compiled, move, prepare, resolve_precision
from finetuner.training.batches import Batch, Collator, IndexDataset, item_key, sides_of
from finetuner.training.callbacks import Callback, TrainState
from finetuner.training.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from finetuner.training.optim import build_optimizer, build_scheduler

logger = logging.getLogger("finetuner")


@dataclass
class FitOptions:
    """Every option of :func:`fit`, validated before any training starts."""

    loss: Any = None
    loss_options: dict[str, Any] = field(default_factory=dict)
    miner: str | None = None
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 2e-5
    loss_learning_rate: float | None = None
    optimizer: str = "AdamW"
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    scheduler: str = "linear"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0
    gradient_accumulation_steps: int = 1
    samples_per_class: int = 4
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    num_workers: int = 0
    cache_frozen: str | bool = "memory"
    eval_every_steps: int | None = None
    eval_every_epochs: int | None = None
    eval_k: Sequence[int] = (1, 5, 10, 20)
    checkpoint_every_steps: int | None = None
    verbose: bool = True

    def validate(self, train_size: int) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise TrainingError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise TrainingError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise TrainingError(f"batch_size must be an integer of at least 2, got {self.batch_size!r}")
        if self.batch_size > train_size:
            raise TrainingError(
                f"batch_size {self.batch_size} is larger than the training data ({train_size} examples); lower batch_size"
            )
        if self.gradient_accumulation_steps < 1:
            raise TrainingError(f"gradient_accumulation_steps must be at least 1, got {self.gradient_accumulation_steps}")
        if not isinstance(self.compile, bool):
            raise TrainingError(f"compile must be True or False, got {self.compile!r}")
        if self.cache_frozen not in ("memory", "disk", False):
            raise TrainingError(f"cache_frozen must be 'memory', 'disk' or False, got {self.cache_frozen!r}")


def fit(
    model: str | EmbeddingModel,
    train_data: Any,
    eval_data: Any = None,
    *,
    output_dir: str | Path | None = "finetuner-run",
    kind: str | None = None,
    eval_kind: str | None = None,
    columns: dict[str, str] | None = None,
    freeze: bool | str | Sequence[str] = False,
    output_dim: int | None = None,
    pretrained: bool = True,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    **options: Any,
) -> EmbeddingModel:
    """Fine-tune ``model`` on ``train_data`` and return it, with before/after metrics on ``eval_data``.

    ``model`` is a backbone name (see ``finetuner models``; ``"TEXT+IMAGE"`` joins two
    backbones) or an :class:`EmbeddingModel`. ``train_data`` and ``eval_data`` are anything
    :func:`finetuner.data.load_data` reads: CSV files, image folders, lists, DataFrames;
    ``kind``/``columns`` force how they are read (``eval_kind`` for eval_data, default ``kind``).
    The artifact goes to ``<output_dir>/model``; checkpoints to ``<output_dir>/checkpoint``.
    Options are the fields of :class:`FitOptions` (epochs, batch_size, learning_rate, loss,
    miner, optimizer, scheduler, precision, compile, ...). ``precision="auto"`` trains under bf16
    autocast where the hardware runs it fast; weights, optimizer state and losses stay fp32.
    ``compile=True`` runs the towers through :func:`torch.compile`; the saved model is unaffected.

    Launched by ``torchrun`` it trains with DistributedDataParallel: ``batch_size`` is per
    process (the global batch is ``batch_size * WORLD_SIZE``), in-batch negatives span the
    global batch, every rank evaluates, and rank 0 alone logs, runs callbacks and writes the
    artifact and checkpoints (``output_dir`` on a shared disk for several machines).
    """
    from finetuner.data import load_data
    from finetuner.training.distributed import DistributedContext

    unknown = set(options) - set(FitOptions.__dataclass_fields__)
    if unknown:
        from finetuner.errors import UnknownNameError

        raise UnknownNameError(
            "fit() option",
            sorted(unknown)[0],
            [
                *FitOptions.__dataclass_fields__,
                "output_dir",
                "kind",
                "eval_kind",
                "columns",
                "freeze",
                "output_dim",
                "pretrained",
                "callbacks",
                "resume",
            ],
        )
    opts = FitOptions(**options)
    dist = DistributedContext.setup(opts.device)  # first, so ranks other than 0 log nothing from here on
    train = load_data(train_data, kind=kind, columns=columns)
    opts.validate(len(train))
    evaluation = load_data(eval_data, kind=eval_kind or kind, columns=columns) if eval_data is not None else None
    _seed_everything(opts.seed)
    if isinstance(model, str):
        from finetuner.models.build import build_model

        model = build_model(model, output_dim=output_dim, freeze=freeze, pretrained=pretrained)
    elif output_dim is not None or freeze:
        raise TrainingError(
            "output_dim= and freeze= apply when fit() builds the model by name; on a built model use EmbeddingModel(..., output_dim=) and model.freeze()"
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainingError("every parameter is frozen, so there is nothing to train: pass output_dim= to add a projection head")
    out = Path(output_dir) if output_dir is not None else None
    trainer = Trainer(model, train, evaluation, opts, list(callbacks), out, dist)
    if resume:
        trainer.resume()
    if evaluation is not None and trainer.state.step == 0:
        trainer.evaluate_before()
    before = trainer.before
    with compiled(model, opts.compile):
        trainer.train()  # ends with the final evaluation (trainer.after) when there is eval_data
    after = trainer.after
    metrics = {"before": before or {}, "after": after}
    if evaluation is not None and dist.is_main and opts.verbose:
        from finetuner.reporting import comparison

        print(comparison(before or {}, after))
    model.metrics = metrics
    model.history = trainer.state.history
    model.examples = trainer.example_records()
    if out is not None and dist.is_main:
        from finetuner.artifacts import save
        from finetuner.reporting import write_report

        save(
            model,
            out / "model",
            metrics=metrics,
            extra={"training": _training_record(opts, train, trainer), "examples": model.examples},
        )
        logger.info("artifact written to %s", out / "model")
        report = write_report(out / "model")
        if opts.verbose:
            print(f"\n{report.text}\nreport: {report.png or '(no PNG without matplotlib)'}, {report.html}")
    dist.barrier()
    return model


def _training_record(opts: FitOptions, train: Any, trainer: Trainer) -> dict[str, Any]:
    record = {k: v for k, v in asdict(opts).items() if k not in ("loss",)}
    record.update(
        loss=trainer.loss_name,
        data_kind=train.kind,
        data_source=train.source,
        examples=len(train),
        steps=trainer.state.step,
        history=trainer.state.history,
    )
    record["stopped_early"] = trainer.stopped_early
    return record


def _fused_by_default(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Adam and AdamW take their fused kernel (CPU and CUDA; ~8x faster steps on CPU) unless ``fused``/``foreach`` is given."""
    if name.lower() in ("adam", "adamw") and not {"fused", "foreach"} & set(options):
        return {**options, "fused": True}
    return dict(options)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """The training loop behind :func:`fit`."""

    def __init__(
        self,
        model: EmbeddingModel,
        train: Any,
        evaluation: Any,
        opts: FitOptions,
        callbacks: list[Callback],
        out: Path | None,
        dist: Any,
    ) -> None:
        from finetuner.evaluation.examples import select_examples
        from finetuner.losses import build_loss, default_loss

        self.model, self.train_data, self.eval_data, self.opts, self.callbacks, self.out, self.dist = (
            model,
            train,
            evaluation,
            opts,
            callbacks,
            out,
            dist,
        )
        self.device = dist.device
        self.dtype = resolve_precision(opts.precision, self.device)
        self.sides = sides_of(train, model)
        self.label_names = sorted(set(train.labels)) if train.kind == "labeled" else None
        label_ids = [self.label_names.index(x) for x in train.labels] if self.label_names else None
        self.loss_name = (
            opts.loss
            if isinstance(opts.loss, str)
            else (type(opts.loss).__name__ if opts.loss is not None else default_loss(train.kind, model.task))
        )
        self.loss = build_loss(
            opts.loss if opts.loss is not None else self.loss_name,
            kind=train.kind,
            task=model.task,
            embedding_size=model.output_dim,
            num_classes=len(self.label_names) if self.label_names else None,
            miner=opts.miner,
            **opts.loss_options,
        )
        prepare(model, self.device)
        self.loss.to(self.device)
        self.frozen = set(model.frozen_modalities())
        self.cached = bool(opts.cache_frozen) and all(side.modality in self.frozen for side in self.sides)
        self.collator = Collator(model, self.sides, label_ids, getattr(train, "scores", None), self.cached)
        self.sampler = self._sampler(label_ids)
        self.steps_per_epoch = math.ceil(len(self.sampler) / opts.gradient_accumulation_steps)
        total = self.steps_per_epoch * opts.epochs
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(
            opts.optimizer,
            trainable,
            learning_rate=opts.learning_rate,
            weight_decay=opts.weight_decay,
            **_fused_by_default(opts.optimizer, opts.optimizer_options),
        )
        self.scheduler = build_scheduler(
            opts.scheduler, self.optimizer, total_steps=total, warmup_steps=int(total * opts.warmup_ratio)
        )
        self.loss_optimizer = None
        if self.loss.needs_optimizer:
            lr = opts.loss_learning_rate or opts.learning_rate * self.loss.lr_multiplier
            self.loss_optimizer = build_optimizer(opts.optimizer, self.loss.parameters(), learning_rate=lr, weight_decay=0.0)
        # DDP averages the model's gradients; the temperature joins only when the loss uses it
        scale_unused = model.logit_scale is not None and not (train.kind == "pairs" and self.loss.uses_logit_scale)
        self.step_module = dist.wrap(_EmbedStep(model), ignore=["model.logit_scale"] if scale_unused else ())
        dist.broadcast_parameters(self.loss)  # the loss's own weights (ArcFace) start equal on every rank
        self.state = TrainState(total_steps=total, output_dir=out, model=model)
        self.batch_in_epoch = 0
        self.before: dict[str, float] | None = None
        self.after: dict[str, float] = {}
        self.stopped_early: dict[str, Any] | None = None
        self.cache: list[np.ndarray] | None = None
        # a few eval queries whose top results the report shows before and after training
        self.probe = select_examples(evaluation) if evaluation is not None and dist.is_main else None
        self.examples_before: list[Any] | None = None

    # -- setup -------------------------------------------------------------------------
    def _sampler(self, label_ids: list[int] | None) -> Any:
        from finetuner.data.samplers import ClassBalancedBatchSampler, NoDuplicatesBatchSampler, ShuffledBatchSampler

        opts, rank, world = self.opts, self.dist.rank, self.dist.world_size
        if self.train_data.kind == "labeled":
            return ClassBalancedBatchSampler(
                self.train_data.labels, opts.batch_size, m=opts.samples_per_class, seed=opts.seed, rank=rank, world_size=world
            )
        if self.train_data.kind == "pairs":
            keys = [(item_key(q), item_key(d)) for q, d in zip(self.sides[0].items, self.sides[1].items)]
            return NoDuplicatesBatchSampler(keys, opts.batch_size, seed=opts.seed, rank=rank, world_size=world)
        return ShuffledBatchSampler(len(self.train_data), opts.batch_size, seed=opts.seed, rank=rank, world_size=world)

    def _stateful(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "loss_optimizer": self.loss_optimizer,
            "loss": self.loss,
        }

    def resume(self) -> None:
        checkpoint = self.out / "checkpoint" if self.out else None
        if not self.dist.broadcast_flag(checkpoint is not None and has_checkpoint(checkpoint)):  # rank 0 decides for all
            logger.info("resume: no checkpoint in %s, starting from the beginning", checkpoint)
            return
        if not has_checkpoint(checkpoint):
            raise TrainingError(
                f"rank {self.dist.rank} cannot read the checkpoint rank 0 found in {checkpoint}: with several machines, output_dir must be on a shared filesystem"
            )
        progress = load_checkpoint(checkpoint, self.model, self._stateful())
        self.state.epoch, self.state.step, self.batch_in_epoch = progress["epoch"], progress["step"], progress["batch_in_epoch"]
        self.state.history, self.before = progress["history"], progress.get("before")
        self.examples_before = progress.get("examples_before")
        logger.info("resumed from %s at epoch %d, step %d", checkpoint, self.state.epoch + 1, self.state.step)

    def _checkpoint(self) -> None:
        if self.out is None or not self.dist.is_main:
            return
        progress = {
            "epoch": self.state.epoch,
            "step": self.state.step,
            "batch_in_epoch": self.batch_in_epoch,
            "history": self.state.history,
            "before": self.before,
            "examples_before": self.examples_before,
        }
        save_checkpoint(self.out / "checkpoint", self.model, self._stateful(), progress)

    def _notify(self, hook: str) -> None:
        """Callbacks run on rank 0 only (they log and save); its ``state.stop`` then holds on every rank."""
        if self.dist.is_main:
            for callback in self.callbacks:
                getattr(callback, hook)(self.state)
        self.state.stop = self.dist.broadcast_flag(self.state.stop)

    # -- the loop ----------------------------------------------------------------------
    def train(self) -> None:
        from tqdm.auto import tqdm

        opts, state = self.opts, self.state
        self._notify("on_train_begin")
        if self.cached and self.cache is None:
            self.cache = self._embed_frozen()
        show = opts.verbose and self.dist.is_main
        epochs = tqdm(range(state.epoch, opts.epochs), desc="epochs", disable=not show, initial=state.epoch, total=opts.epochs)
        for epoch in epochs:
            state.epoch = epoch
            self.sampler.set_epoch(epoch)
            batches = list(self.sampler)[self.batch_in_epoch :]
            # A generator of its own: a DataLoader otherwise draws its worker seed from the global RNG,
            # so a run resumed mid-epoch would draw at a point the uninterrupted run did not.
            workers_seed = torch.Generator().manual_seed(opts.seed + epoch)
            loader = torch.utils.data.DataLoader(
                IndexDataset(len(self.train_data)),
                batch_sampler=batches,
                collate_fn=self.collator,
                num_workers=opts.num_workers,
                generator=workers_seed,
            )
            bar = tqdm(loader, desc=f"epoch {epoch + 1}", disable=not show, leave=False, total=len(batches))
            self._train_epoch(bar)
            if state.stop:
                break
            self.batch_in_epoch = 0
            state.epoch = epoch + 1
            self._notify("on_epoch_end")
            if opts.eval_every_epochs and (epoch + 1) % opts.eval_every_epochs == 0 and epoch + 1 < opts.epochs:
                self._periodic_evaluation()
            self._checkpoint()
            if state.stop:
                break
        if state.stop and state.step < state.total_steps:
            self.stopped_early = {
                "step": state.step,
                "epoch": state.epoch,
                "reason": state.stop_reason or "a callback set state.stop",
            }
            logger.info("training stopped at step %d of %d: %s", state.step, state.total_steps, self.stopped_early["reason"])
        if self.eval_data is not None:
            self.after = self._final_evaluation()
        self._notify("on_train_end")

    def _train_epoch(self, bar: Any) -> None:
        opts, state, model = self.opts, self.state, self.model
        model.train()
        for modality in self.frozen:  # frozen towers are feature extractors: no dropout, no BN updates
            model.tower(modality).eval()
        accumulated, started, examples = 0, time.perf_counter(), 0
        for batch in bar:
            steps = accumulated + 1 >= opts.gradient_accumulation_steps or self.batch_in_epoch + 1 >= len(self.sampler)
            with self.dist.no_sync(self.step_module, skip=not steps):  # DDP syncs gradients only before an optimizer step
                with autocast(self.device, self.dtype):
                    embeddings = self._embed(batch)
                loss = self._loss(embeddings, batch)
                value = self.dist.mean(loss.detach())  # the global batch's loss, the same on every rank
                (loss / opts.gradient_accumulation_steps).backward()
            # Checked after backward is queued, so a GPU never idles between forward and backward; a
            # non-finite loss still stops training before any weight changes.
            if not torch.isfinite(value):
                self.model.zero_grad(set_to_none=True)
                kept = (
                    f"; the last good checkpoint is in {self.out / 'checkpoint'}"
                    if self.out and has_checkpoint(self.out / "checkpoint")
                    else ""
                )
                raise TrainingError(
                    f"the loss became {value.item()} at step {state.step + 1} (epoch {state.epoch + 1}); training stopped{kept}. Try a lower learning_rate."
                )
            accumulated += 1
            self.batch_in_epoch += 1
            examples += len(batch.indices)
            if accumulated < opts.gradient_accumulation_steps and self.batch_in_epoch < len(self.sampler):
                continue
            accumulated = 0
            state.learning_rate = self.scheduler.get_last_lr()[0]  # the rate this step uses, before the scheduler moves on
            self._optimizer_step()
            state.step += 1
            state.loss = value.item()
            state.history.append({"step": state.step, "epoch": state.epoch, "loss": state.loss})
            bar.set_postfix(loss=f"{state.loss:.4f}", ex_per_s=f"{examples / (time.perf_counter() - started):.1f}")
            self._notify("on_step_end")
            if (
                opts.eval_every_steps and state.step % opts.eval_every_steps == 0 and state.step < state.total_steps
            ):  # the last step gets the final evaluation
                self._periodic_evaluation()
            if opts.checkpoint_every_steps and state.step % opts.checkpoint_every_steps == 0:
                self._checkpoint()
            if state.stop:
                return

    def _embed(self, batch: Batch) -> list[torch.Tensor]:
        if self.cache is not None:
            rows = np.asarray(batch.indices)
            parts = [
                (torch.from_numpy(cache[rows]).to(self.device), side.modality)
                for cache, side in zip(self.cache, self.sides, strict=True)
            ]
        else:
            parts = [(move(f, self.device), side.modality) for f, side in zip(batch.features, self.sides, strict=True)]
        return self.step_module(parts)

    def _loss(self, embeddings: list[torch.Tensor], batch: Batch) -> torch.Tensor:
        kind = self.train_data.kind
        if kind == "labeled":
            return self.loss.compute(embeddings[0], labels=batch.labels.to(self.device))
        logit_scale = self.model.logit_scale
        if kind == "scored":
            return self.loss.compute(embeddings[0], embeddings[1], scores=batch.scores.to(self.device))
        return self.loss.compute(embeddings[0], embeddings[1], logit_scale=logit_scale)

    def _optimizer_step(self) -> None:
        if self.loss_optimizer is not None:
            self.dist.average_gradients(self.loss.parameters())  # DDP does not own the loss's weights
        if self.opts.max_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], self.opts.max_grad_norm)
        for optimizer in (self.optimizer, self.loss_optimizer):
            if optimizer is not None:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    def _embed_frozen(self) -> list[np.ndarray]:
        """Frozen towers give fixed outputs: embed every training item once, reuse it every epoch."""
        from finetuner.encoding import embed_backbone
        from finetuner.training.distributed import shard

        logger.info("backbone frozen: caching its embeddings of the training data (%s)", self.opts.cache_frozen)
        caches = []
        for number, side in enumerate(self.sides):
            part = shard(len(side.items), self.dist.rank, self.dist.world_size)  # each rank embeds a shard, then all share
            local = embed_backbone(
                self.model,
                side.items[part.start : part.stop],
                modality=side.modality,
                batch_size=max(self.opts.batch_size, 64),
                precision=self.opts.precision,
                device=self.device,
            )
            cached = self.dist.gather_rows(local, to_all=True)
            if self.opts.cache_frozen == "disk" and self.out is not None:
                path = self.out / "cache" / f"side-{number}.npy"
                if self.dist.local_rank == 0:  # one writer per machine; the rename keeps readers of a shared disk safe
                    path.parent.mkdir(parents=True, exist_ok=True)
                    partial = path.with_name(f"{path.stem}.rank{self.dist.rank}.tmp.npy")
                    np.save(partial, cached)
                    os.replace(partial, path)
                self.dist.barrier()
                cached = np.load(path, mmap_mode="r")
            caches.append(cached)
        return caches

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        from finetuner.evaluation import evaluate

        metrics = evaluate(
            self.model,
            self.eval_data,
            k=tuple(self.opts.eval_k),
            precision=self.opts.precision,
            device=self.device,
            compile=self.opts.compile,
        )
        return self.dist.broadcast(metrics)  # every rank evaluates the whole set; rank 0's numbers count everywhere

    def evaluate_before(self) -> None:
        """The untrained model's numbers (the history's step 0) and its results for the example queries."""
        self.before = self.evaluate()
        self.state.history.append({"step": 0, "epoch": 0, **{f"eval/{k}": v for k, v in self.before.items()}})
        if self.probe is not None:
            self.examples_before = self._example_results()

    def _final_evaluation(self) -> dict[str, float]:
        """The trained model's numbers, one more evaluation for callbacks; reused when this step was just evaluated."""
        last = self.state.history[-1] if self.state.history else {}
        if last.get("step") != self.state.step or not any(k.startswith("eval/") for k in last):
            self._periodic_evaluation()
            last = self.state.history[-1]
        return {k.removeprefix("eval/"): v for k, v in last.items() if k.startswith("eval/")}

    def _example_results(self) -> list[Any]:
        return self.probe.top(self.model, precision=self.opts.precision, device=self.device)

    def example_records(self) -> list[dict[str, Any]]:
        """The example queries with their top results before and after training; empty without eval data (or on rank > 0)."""
        if self.probe is None:
            return []
        return self.probe.records(self.model, self.examples_before, self._example_results())

    def _periodic_evaluation(self) -> None:
        if self.eval_data is None:
            raise TrainingError("eval_every_steps/eval_every_epochs need eval_data")
        self.state.metrics = self.evaluate()
        self.state.history.append(
            {"step": self.state.step, "epoch": self.state.epoch, **{f"eval/{k}": v for k, v in self.state.metrics.items()}}
        )
        self._notify("on_evaluate")


class _EmbedStep(torch.nn.Module):
    """One forward over every side of a batch, so DistributedDataParallel sees a single call."""

    def __init__(self, model: EmbeddingModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, parts: list[tuple[dict[str, torch.Tensor] | torch.Tensor, str]]) -> list[torch.Tensor]:
        """Features go through tower and head; a tensor (cached frozen-tower output) through the head only."""
        return [self.model.head(x, modality) if isinstance(x, torch.Tensor) else self.model(x, modality) for x, modality in parts]
