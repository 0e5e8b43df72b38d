"""The training loop behind :func:`finetuner.fit`: steps, evaluation, callbacks and checkpoints."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from finetuner.data.types import LabeledData, PairData, ScoredData, distinct
from finetuner.errors import FinetunerError, OptionError, TrainingError
from finetuner.models.embedding import EmbeddingModel
from finetuner.runtime import autocast, move, prepare, resolve_precision
from finetuner.training.augment import augmentations
from finetuner.training.batches import Batch, Collator, IndexDataset, make_sampler, sides_of
from finetuner.training.callbacks import Callback, TrainState
from finetuner.training.checkpoint import has_checkpoint, load_checkpoint, read_progress, save_checkpoint
from finetuner.training.distributed import DistributedContext
from finetuner.training.frozen_cache import FrozenCache
from finetuner.training.identity import check_same_run, run_identity
from finetuner.training.layer_decay import layer_scales
from finetuner.training.optim import build_optimizer, build_scheduler
from finetuner.training.options import FitOptions
from finetuner.training.wise_ft import interpolate, tower_weights

if TYPE_CHECKING:
    from finetuner.losses import Loss

logger = logging.getLogger("finetuner")
PROBE_SIZE = 4  # training items whose embeddings must stay finite for a checkpoint to be kept


class Trainer:
    """Trains ``model`` on ``train`` as ``opts`` say, evaluating on ``evaluation`` (or None) and checkpointing to ``out``."""

    def __init__(
        self,
        model: EmbeddingModel,
        train: Any,
        evaluation: Any,
        opts: FitOptions,
        callbacks: list[Callback],
        out: Path | None,
        dist: DistributedContext,
    ) -> None:
        from finetuner.evaluation.examples import select_examples
        from finetuner.losses import build_loss, default_loss

        self.model, self.train_data, self.eval_data, self.opts = model, train, evaluation, opts
        self.callbacks, self.out, self.dist = callbacks, out, dist
        self.began = False  # on_train_begin was sent: a failure from then on is sent to on_fit_end too
        self.device = dist.device
        self.dtype = resolve_precision(opts.precision, self.device)
        self.sides = sides_of(train, model)
        self.label_names = sorted(set(train.labels)) if isinstance(train, LabeledData) else None
        label_ids = [self.label_names.index(x) for x in train.labels] if self.label_names else None
        if opts.loss is None:
            self.loss_name = default_loss(train.kind, model.task, model)
        else:
            self.loss_name = opts.loss if isinstance(opts.loss, str) else type(opts.loss).__name__
        with _as_training_error(f"loss {self.loss_name!r}", "loss_options", opts.loss_options):
            self.loss = build_loss(
                opts.loss if opts.loss is not None else self.loss_name,
                kind=train.kind,
                task=model.task,
                embedding_size=model.output_dim,
                num_classes=len(self.label_names) if self.label_names else None,
                miner=opts.miner,
                **opts.loss_options,
            )
        if opts.matryoshka_dims is not None:
            self.loss = _matryoshka(self.loss, opts.matryoshka_dims, model.output_dim)
            self.loss_name = self.loss.name
        if isinstance(train, PairData) and train.negatives and not self.loss.takes_negatives:
            from finetuner.losses.base import negatives_refused

            raise OptionError(negatives_refused(self.loss_name))
        self.mini_batch_size = _mini_batch_size(opts.mini_batch_size, self.loss)  # GradCache when set
        if opts.gradient_checkpointing:
            self._gradient_checkpointing(True)
        if self.loss.uses_logit_bias and model.logit_bias is None:
            model.add_logit_bias()  # what SigLIPLoss learns is the model's: artifact and export keep it
        augmenting = augmentations(model, [side.modality for side in self.sides], opts.augment)
        scales = layer_scales(model, opts.layer_decay) if opts.layer_decay is not None else None
        prepare(model, self.device)
        self.loss.to(self.device)
        self.frozen = set(model.frozen_modalities())
        self.cached = bool(opts.cache_frozen) and all(side.modality in self.frozen for side in self.sides)
        if self.cached and augmenting:
            logger.info(
                "frozen-embedding cache off: augmentation changes the images every epoch (augment=False turns it back on)"
            )
            self.cached = False
        scores = train.scores if isinstance(train, ScoredData) else None
        groups = _query_groups(train, self.sides, self.loss)
        self.collator = Collator(
            model, self.sides, label_ids, scores, self.cached, augmenting, opts.seed, self.mini_batch_size, groups
        )
        self.sampler = make_sampler(
            train,
            self.sides,
            batch_size=opts.batch_size,
            samples_per_class=opts.samples_per_class,
            seed=opts.seed,
            rank=dist.rank,
            world_size=dist.world_size,
            repeat_queries=groups is not None,
        )
        self.steps_per_epoch = math.ceil(len(self.sampler) / opts.gradient_accumulation_steps)
        total = self.steps_per_epoch * opts.epochs
        trainable = [p for p in model.parameters() if p.requires_grad]
        with _as_training_error(f"optimizer {opts.optimizer!r}", "optimizer_options", opts.optimizer_options):
            self.optimizer = build_optimizer(
                opts.optimizer,
                trainable,
                learning_rate=opts.learning_rate,
                weight_decay=opts.weight_decay,
                lr_scales=scales,
                **_fused_by_default(opts.optimizer, opts.optimizer_options),
            )
        self.lr_scales = [group["lr_scale"] for group in self.optimizer.param_groups]
        self.scheduler = build_scheduler(
            opts.scheduler, self.optimizer, total_steps=total, warmup_steps=int(total * opts.warmup_ratio)
        )
        self.loss_optimizer = None
        if self.loss.needs_optimizer:
            lr = opts.loss_learning_rate or opts.learning_rate * self.loss.lr_multiplier
            self.loss_optimizer = build_optimizer(opts.optimizer, self.loss.parameters(), learning_rate=lr, weight_decay=0.0)
        # DDP averages the model's gradients; the temperature and bias join only when the loss uses them
        logits = {"logit_scale": self.loss.uses_logit_scale, "logit_bias": self.loss.uses_logit_bias}
        present = [name for name in logits if getattr(model, name) is not None]
        used = [name for name in present if train.kind == "pairs" and logits[name]]
        # GradCache backpropagates the loss outside DDP's forward: their gradients are averaged by hand
        self.by_hand = [getattr(model, name) for name in used] if self.mini_batch_size is not None else []
        self.embed_step = _EmbedStep(model)
        ignored = [f"model.{name}" for name in present if name not in used or self.by_hand]
        self.step_module = dist.wrap(self.embed_step, ignore=ignored)
        # what WiSE-FT interpolates with: taken once DDP made every rank's weights rank 0's, before a resume loads others
        self.start_weights = tower_weights(model) if opts.wise_ft is not None else None
        dist.broadcast_parameters(self.loss)  # the loss's own weights (ArcFace) start equal on every rank
        self.state = TrainState(total_steps=total, output_dir=out, model=model)
        self.batch_in_epoch = 0  # batches trained in the current epoch (a DataLoader's workers may have drawn more)
        self.before: dict[str, float] | None = None
        self.after: dict[str, float] = {}
        self.stopped_early: dict[str, Any] | None = None
        self.cache: FrozenCache | None = None
        # a few eval queries whose top results the report shows before and after training
        self.probe = select_examples(evaluation) if evaluation is not None and dist.is_main else None
        self.examples_before: list[Any] | None = None
        # what a checkpoint of this run is made with, and the step of the last one kept (weights and embeddings finite)
        self.identity = run_identity(model, self.loss_name, opts.loss_options, opts.miner, train) if out else None
        self.kept_step: int | None = None
        self.checked_step: int | None = None
        self.probe_batch = self.collator.collate(list(range(min(PROBE_SIZE, len(train))))) if dist.is_main else None

    # -- checkpoints ---------------------------------------------------------------------
    def _stateful(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "loss_optimizer": self.loss_optimizer,
            "loss": self.loss,
        }

    def resume(self) -> None:
        """Continue from the checkpoint in ``<out>/checkpoint``, when there is one."""
        checkpoint = self.out / "checkpoint" if self.out else None
        if not self.dist.broadcast_flag(checkpoint is not None and has_checkpoint(checkpoint)):  # rank 0 decides for all
            logger.info("resume: no checkpoint in %s, starting from the beginning", checkpoint)
            return
        if not has_checkpoint(checkpoint):
            raise TrainingError(
                f"rank {self.dist.rank} cannot read the checkpoint rank 0 found in {checkpoint}: with several machines, output_dir must be on a shared filesystem"
            )
        check_same_run(read_progress(checkpoint).get("made_with"), self.identity, checkpoint)  # before any weight is read
        progress = load_checkpoint(checkpoint, self.model, self._stateful())
        self.sampler.load_state_dict(progress["sampler"])  # refuses a checkpoint of other data or batch shape
        self.state.epoch, self.state.step, self.batch_in_epoch = progress["epoch"], progress["step"], self.sampler.position
        self.state.history, self.before = progress["history"], progress.get("before")
        self.examples_before = progress.get("examples_before")
        self.kept_step = self.checked_step = self.state.step
        self._apply_learning_rates()
        logger.info("resumed from %s at epoch %d, step %d", checkpoint, self.state.epoch + 1, self.state.step)

    def _apply_learning_rates(self) -> None:
        """This run's learning rates, where they differ from the checkpoint's (say, lowered after a non-finite loss)."""
        base = self.scheduler.base_lrs
        wanted = [self.opts.learning_rate * scale for scale in self.lr_scales]  # layer_decay's multipliers
        if base != wanted:
            logger.info(
                "resume: learning_rate %g replaces the checkpoint's %g", self.opts.learning_rate, base[0] / self.lr_scales[0]
            )
            factor = self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
            self.scheduler.base_lrs = wanted
            for group, lr, scale in zip(self.optimizer.param_groups, wanted, self.lr_scales, strict=True):
                group["initial_lr"], group["lr"], group["lr_scale"] = lr, lr * factor, scale
            self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        if self.loss_optimizer is not None:
            lr = self.opts.loss_learning_rate or self.opts.learning_rate * self.loss.lr_multiplier
            for group in self.loss_optimizer.param_groups:
                group["lr"] = lr

    def _checkpoint(self) -> None:
        """Save a checkpoint, unless the weights went bad: then stop, keeping the previous one."""
        if self.out is None:
            return
        self._check_weights()
        if self.dist.is_main:
            progress = {
                "epoch": self.state.epoch,
                "step": self.state.step,
                "sampler": {**self.sampler.state_dict(), "position": self.batch_in_epoch},
                "history": self.state.history,
                "before": self.before,
                "examples_before": self.examples_before,
                "made_with": self.identity,
            }
            save_checkpoint(self.out / "checkpoint", self.model, self._stateful(), progress, overwrite=self.opts.overwrite)
        self.kept_step = self.state.step

    def _kept(self) -> str:
        """Where this run's last good checkpoint is, as the end of a message."""
        if self.out is None:
            return "no checkpoint is written without output_dir"
        if self.kept_step is None:
            return "no checkpoint of this run was written yet"
        return f"the last good checkpoint (step {self.kept_step}) is in {self.out / 'checkpoint'}"

    def _check_weights(self) -> None:
        """Stop with a TrainingError when a weight is not finite or the probe items embed to non-finite values."""
        if self.checked_step == self.state.step:
            return
        problem = self.dist.broadcast(self._weight_problem() if self.dist.is_main else None)  # rank 0 decides for all
        if problem is not None:
            raise TrainingError(
                f"after step {self.state.step} {problem}; training stopped; {self._kept()}. "
                "Try a lower learning_rate (or max_grad_norm), then resume"
            )
        self.checked_step = self.state.step

    @torch.no_grad()
    def _weight_problem(self) -> str | None:
        """What is wrong with the weights (model and loss): a non-finite value, or non-finite embeddings; None if nothing."""
        modules = (("", self.model), ("loss", self.loss))
        parameters = [(name, t) for prefix, module in modules for name, t in module.named_parameters(prefix)]
        # buffers may hold -inf on purpose (attention masks): only NaN is wrong there
        buffers = [(name, t) for prefix, module in modules for name, t in module.named_buffers(prefix) if t.is_floating_point()]
        tensors = parameters + buffers
        checks = [torch.isfinite(t).all() for _, t in parameters] + [~torch.isnan(t).any() for _, t in buffers]
        finite = torch.stack(checks).cpu()  # one sync, not one per tensor
        if not finite.all():
            return f"weight {tensors[int((~finite).nonzero()[0])][0]} holds non-finite values"
        batch, modes = self.probe_batch, {m: m.training for m in self.model.modules()}
        inputs = (
            self.cache.rows(batch.indices, self.device)
            if self.cache is not None
            else [move(f, self.device) for f in batch.features]
        )
        self.model.eval()
        try:
            with autocast(self.device, self.dtype):
                embeddings = self.embed_step(list(zip(inputs, [side.modality for side in self.sides], strict=True)))
        finally:
            for module, training in modes.items():
                module.training = training
        unit = self.model.normalize  # normalised embeddings that overflowed come out as zeros
        if all(torch.isfinite(e).all() and (not unit or ((e.norm(dim=-1) - 1).abs() < 1e-2).all()) for e in embeddings):
            return None
        largest = max(t.abs().max().item() for _, t in tensors)
        wrong = "non-finite or zero vectors" if unit else "non-finite values"
        return f"the weights (largest magnitude {largest:.3g}) embed training items to {wrong}"

    def _notify(self, hook: str) -> None:
        """Callbacks run on rank 0 only (they log and save); its ``state.stop`` then holds on every rank."""
        if self.dist.is_main:
            for callback in self.callbacks:
                getattr(callback, hook)(self.state)
        self.state.stop = self.dist.broadcast_flag(self.state.stop)

    # -- the loop ----------------------------------------------------------------------
    def end(self, artifact_dir: Path | None) -> None:
        """The callbacks' ``on_fit_end``, once fit() wrote the artifact to ``artifact_dir`` (None: it wrote none)."""
        self.state.artifact_dir = artifact_dir
        self._notify("on_fit_end")

    def fail(self, error: BaseException) -> None:
        """The callbacks' ``on_fit_end`` with ``state.error`` set, when fit() fails after ``on_train_begin`` (so trackers
        close their runs as failed). No collective: the other ranks may be gone."""
        if not (self.began and self.dist.is_main):
            return
        self.state.error = error
        for callback in self.callbacks:
            try:
                callback.on_fit_end(self.state)
            except Exception:  # the error being raised is the one to see
                logger.exception("a callback's on_fit_end failed while fit() was failing")

    def train(self) -> None:
        """Run the remaining epochs, then the final evaluation (``self.after``) when there is eval data.

        Ctrl-C (KeyboardInterrupt) logs one line saying where the last checkpoint is and how to resume, then goes on up.
        """
        try:
            self._train()
        except KeyboardInterrupt:
            if self.dist.is_main:
                logger.warning("%s", self._interrupted())
            raise

    def _interrupted(self) -> str:
        where = f"interrupted at step {self.state.step} of {self.state.total_steps}"
        if self.out is None:
            return f"{where}; {self._kept()}"
        if self.kept_step is None:
            return f"{where}; {self._kept()} (one is written at each epoch's end and every checkpoint_every_steps steps)"
        return f"{where}; {self._kept()}: to continue, run again with resume=True (finetuner fit ... --resume)"

    def _train(self) -> None:
        from tqdm.auto import tqdm

        opts, state = self.opts, self.state
        self.began = True
        self._notify("on_train_begin")
        if self.cached and self.cache is None:
            directory = self.out / "cache" if opts.cache_frozen == "disk" and self.out is not None else None
            self.cache = FrozenCache.build(
                self.model,
                self.sides,
                self.dist,
                batch_size=max(opts.batch_size, 64),
                precision=opts.precision,
                directory=directory,
            )
        show = opts.verbose and self.dist.is_main
        epochs = tqdm(range(state.epoch, opts.epochs), desc="epochs", disable=not show, initial=state.epoch, total=opts.epochs)
        for epoch in epochs:
            state.epoch = epoch
            self.sampler.set_epoch(epoch)  # keeps a resumed epoch's position
            self.collator.epoch = epoch  # before the DataLoader copies the collator into its workers
            if self.batch_in_epoch < len(self.sampler):  # a checkpoint after an epoch's last step leaves none
                # A generator of its own: a DataLoader otherwise draws its worker seed from the global RNG,
                # so a run resumed mid-epoch would draw at a point the uninterrupted run did not.
                loader = torch.utils.data.DataLoader(
                    IndexDataset(len(self.train_data)),
                    batch_sampler=self.sampler,
                    collate_fn=self.collator,
                    num_workers=opts.num_workers,
                    generator=torch.Generator().manual_seed(opts.seed + epoch),
                )
                remaining = len(self.sampler) - self.batch_in_epoch
                self._train_epoch(tqdm(loader, desc=f"epoch {epoch + 1}", disable=not show, leave=False, total=remaining))
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
        if self.start_weights is not None:
            interpolate(self.model, self.start_weights, self.opts.wise_ft)
            logger.info(
                "WiSE-FT: the towers' weights are now %g x fine-tuned + %g x initial", self.opts.wise_ft, 1 - self.opts.wise_ft
            )
        self._check_weights()
        if opts.gradient_checkpointing:  # the model goes back to the user as it came
            self._gradient_checkpointing(False)
        if self.eval_data is not None:
            self.after = self._final_evaluation()
        self._notify("on_train_end")

    def _gradient_checkpointing(self, enabled: bool) -> None:
        """Turn gradient checkpointing of the trained (not frozen) towers on or off."""
        for modality in sorted(set(self.model.modalities) - set(self.model.frozen_modalities())):
            self.model.tower(modality).set_gradient_checkpointing(enabled)

    def _train_epoch(self, bar: Any) -> None:
        opts, state, model = self.opts, self.state, self.model
        model.train()
        for modality in self.frozen:  # frozen towers are feature extractors: no dropout, no BN updates
            model.tower(modality).eval()
        accumulated, started, examples = 0, time.perf_counter(), 0
        for batch in bar:
            steps = accumulated + 1 >= opts.gradient_accumulation_steps or self.batch_in_epoch + 1 >= len(self.sampler)
            with self.dist.no_sync(self.step_module, skip=not steps):  # DDP syncs gradients only before an optimizer step
                if batch.parts:  # GradCache: the towers run one mini-batch at a time
                    value = self.dist.mean(self._cached_step(batch, sync=steps))
                else:
                    with autocast(self.device, self.dtype):
                        embeddings = self._embed(batch)
                    loss = self._loss(embeddings, batch)
                    value = self.dist.mean(loss.detach())  # the global batch's loss, the same on every rank
                    (loss / opts.gradient_accumulation_steps).backward()
            # Checked after backward is queued, so a GPU never idles between forward and backward; a
            # non-finite loss still stops training before any weight changes.
            if not torch.isfinite(value):
                self.model.zero_grad(set_to_none=True)
                raise TrainingError(
                    f"the loss became {value.item()} at step {state.step + 1} (epoch {state.epoch + 1}); training stopped; {self._kept()}. "
                    "Try a lower learning_rate (or max_grad_norm), then resume"
                )
            accumulated += 1
            self.batch_in_epoch += 1
            examples += len(batch.indices)
            if not steps:
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

    def _embed(self, batch: Batch, module: torch.nn.Module | None = None) -> list[torch.Tensor]:
        modalities = [side.modality for side in self.sides]
        if self.cache is not None:
            inputs = self.cache.rows(batch.indices, self.device)
        else:
            inputs = [move(features, self.device) for features in batch.features]
        return (module or self.step_module)(list(zip(inputs, modalities, strict=True)))

    def _cached_step(self, batch: Batch, sync: bool) -> torch.Tensor:
        """GradCache over ``batch.parts``: only the last mini-batch's forward goes through DDP, and only when this step syncs."""
        from finetuner.losses.cached import cached_backward

        def embed(number: int, last: bool) -> list[torch.Tensor]:
            with autocast(self.device, self.dtype):
                return self._embed(batch.parts[number], self.step_module if last and sync else self.embed_step)

        return cached_backward(
            embed,
            len(batch.parts),
            lambda embeddings: self._loss(embeddings, batch),
            device=self.device,
            scale=1 / self.opts.gradient_accumulation_steps,
        )

    def _loss(self, embeddings: list[torch.Tensor], batch: Batch) -> torch.Tensor:
        kind = self.train_data.kind
        if kind == "labeled":
            return self.loss.compute(embeddings[0], labels=batch.labels.to(self.device))
        if kind == "scored":
            return self.loss.compute(embeddings[0], embeddings[1], scores=batch.scores.to(self.device))
        negatives = torch.stack(embeddings[2:], dim=1).flatten(0, 1) if len(embeddings) > 2 else None  # pair-major rows
        groups = batch.groups.to(self.device) if batch.groups is not None else None
        return self.loss.compute(
            embeddings[0],
            embeddings[1],
            logit_scale=self.model.logit_scale,
            logit_bias=self.model.logit_bias,
            negatives=negatives,
            groups=groups,
        )

    def _optimizer_step(self) -> None:
        if self.loss_optimizer is not None:
            self.dist.average_gradients(self.loss.parameters())  # DDP does not own the loss's weights
        if self.by_hand:
            self.dist.average_gradients(self.by_hand)
        if self.opts.max_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], self.opts.max_grad_norm)
        for optimizer in (self.optimizer, self.loss_optimizer):
            if optimizer is not None:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        from finetuner.evaluation import evaluate

        metrics = evaluate(
            self.model,
            self.eval_data,
            k=self.opts.eval_k,
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
        """The trained model's numbers, one more evaluation for callbacks; reused when this step was just evaluated (and WiSE-FT did not change the weights since)."""
        last = self.state.history[-1] if self.state.history else {}
        fresh = last.get("step") == self.state.step and any(k.startswith("eval/") for k in last) and self.start_weights is None
        if not fresh:
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
        self.state.metrics = self.evaluate()
        self.state.history.append(
            {"step": self.state.step, "epoch": self.state.epoch, **{f"eval/{k}": v for k, v in self.state.metrics.items()}}
        )
        self._notify("on_evaluate")


@contextlib.contextmanager
def _as_training_error(what: str, name: str, options: dict[str, Any]) -> Iterator[None]:
    """A TypeError, ValueError or RuntimeError building ``what`` with the user's ``options`` (option ``name``), as a TrainingError."""
    try:
        yield
    except FinetunerError:
        raise
    except (TypeError, ValueError, RuntimeError) as exc:
        given = f" with {name}={options}" if options else ""
        raise TrainingError(f"cannot build the {what}{given}: {exc}") from exc


def _matryoshka(loss: Loss, dims: tuple[int, ...], output_dim: int) -> Loss:
    """``loss`` inside a MatryoshkaLoss over ``dims`` (fit's matryoshka_dims=); refused around one already."""
    from finetuner.losses import MatryoshkaLoss

    if isinstance(loss, MatryoshkaLoss):
        raise OptionError("matryoshka_dims= wraps the loss in MatryoshkaLoss, and loss= is one already: give the dims once")
    return MatryoshkaLoss(loss, dims, output_dim=output_dim)


def _query_groups(train: Any, sides: list[Any], loss: Loss) -> list[int] | None:
    """For pairs whose queries repeat (several documents per query) and a loss that takes ``groups``: the
    number of each pair's query, so that its pairs can share a batch without being each other's negatives."""
    if not (isinstance(train, PairData) and loss.takes("groups")):
        return None
    _, numbers = distinct(sides[0].items)
    return numbers.tolist() if len(set(numbers.tolist())) < len(numbers) else None


def _mini_batch_size(option: int | None, loss: Loss) -> int | None:
    """GradCache's mini-batch size: the option, else a Cached* loss's own (inside wrappers such as MatryoshkaLoss)."""
    from finetuner.losses import Loss

    module: Any = loss
    while isinstance(module, Loss):
        module = module.module
    return option or getattr(module, "mini_batch_size", None)


def _fused_by_default(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Adam and AdamW take their fused kernel (CPU and CUDA; faster steps: bench/README.md) unless ``fused``/``foreach`` is given."""
    if name.lower() in ("adam", "adamw") and not {"fused", "foreach"} & set(options):
        return {**options, "fused": True}
    return dict(options)


class _EmbedStep(torch.nn.Module):
    """One forward over every side of a batch, so DistributedDataParallel sees a single call."""

    def __init__(self, model: EmbeddingModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, parts: list[tuple[dict[str, torch.Tensor] | torch.Tensor, str]]) -> list[torch.Tensor]:
        """Features go through tower and head; a tensor (cached frozen-tower output) through the head only."""
        return [self.model.head(x, modality) if isinstance(x, torch.Tensor) else self.model(x, modality) for x, modality in parts]
