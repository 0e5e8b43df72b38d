"""fit(): fine-tune any registered backbone (by name) or built EmbeddingModel on your data."""

from __future__ import annotations

import inspect
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetuner.errors import TrainingError
from finetuner.models.embedding import EmbeddingModel
from finetuner.runtime import compiled
from finetuner.training.callbacks import Callback
from finetuner.training.checkpoint import check_output_dir
from finetuner.training.options import FitOptions
from finetuner.training.trackers import make_trackers
from finetuner.training.trainer import Trainer

logger = logging.getLogger("finetuner")


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
    model_options: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    **options: Any,
) -> EmbeddingModel:
    """Fine-tune ``model`` on ``train_data`` and return it, with before/after metrics on ``eval_data``.

    ``model`` is a backbone name (see ``finetuner models``; ``"TEXT+IMAGE"`` joins two
    backbones) or an :class:`EmbeddingModel`; ``model_options`` go to :func:`finetuner.build_model`
    when it is a name (``{"max_length": 128}``; for ``"TEXT+IMAGE"`` each goes to the tower that
    takes it, or name the tower: ``{"image_options": {"image_size": 64}}``). ``train_data`` and ``eval_data`` are anything
    :func:`finetuner.data.load_data` reads: CSV files, image folders, lists, DataFrames;
    ``kind``/``columns`` force how they are read (``eval_kind`` for eval_data, default ``kind``).
    The artifact goes to ``<output_dir>/model``; checkpoints to ``<output_dir>/checkpoint``.
    Options are the fields of :class:`FitOptions` (epochs, batch_size, learning_rate, loss,
    miner, optimizer, scheduler, precision, compile, ...). ``precision="auto"`` trains under bf16
    autocast where the hardware runs it fast; weights, optimizer state and losses stay fp32.
    ``compile=True`` runs the towers through :func:`torch.compile`; the saved model is unaffected.
    ``matryoshka_dims=(384, 256, 128, 64)`` trains the embeddings' first 256, 128 and 64
    dimensions to work alone too (:class:`finetuner.losses.MatryoshkaLoss` around the loss);
    the model keeps them (``model.matryoshka_dims``) for ``encode(truncate_dim=)``.
    ``lora=True`` trains LoRA adapters on the towers that are not frozen (at ``learning_rate``
    1e-3 unless given), and the artifact holds only those (and the head): see :mod:`finetuner.lora`.

    Launched by ``torchrun`` it trains with DistributedDataParallel: ``batch_size`` is per
    process (the global batch is ``batch_size * WORLD_SIZE``), in-batch negatives span the
    global batch, every rank evaluates, and rank 0 alone logs, runs callbacks and writes the
    artifact and checkpoints (``output_dir`` on a shared disk for several machines).
    """
    from finetuner.data import load_data
    from finetuner.training.distributed import DistributedContext

    arguments = [p.name for p in inspect.signature(fit).parameters.values() if p.kind is p.KEYWORD_ONLY]
    opts = FitOptions.from_kwargs(options, arguments)
    _check_arguments(model, output_dir, callbacks)
    trackers = make_trackers(opts, output_dir)  # report_to: known names, packages installed
    if opts.lora is not None:
        from finetuner.lora import LEARNING_RATE, require_peft

        require_peft("lora=")
        if not pretrained:
            raise TrainingError("lora= adapts pretrained weights, and pretrained=False starts from random ones: drop one of them")
        if "learning_rate" not in options:  # adapters start at zero: full fine-tuning's rate barely moves them
            opts.learning_rate = LEARNING_RATE
    if (opts.eval_every_steps or opts.eval_every_epochs) and eval_data is None:
        raise TrainingError("eval_every_steps and eval_every_epochs need eval_data")
    dist = DistributedContext.setup(opts.device)  # first, so ranks other than 0 log nothing from here on
    if output_dir is not None:  # before any work: nothing of the user's is replaced
        check_output_dir(Path(output_dir), overwrite=opts.overwrite)
    if opts.push_to_hub:  # before any work too: an upload that cannot start fails now
        from finetuner.hub import check_hub_access

        if output_dir is None:
            raise TrainingError("push_to_hub= uploads the artifact, so it needs an output_dir")
        check_hub_access()
    train = load_data(train_data, kind=kind, columns=columns)
    opts.check_data(train)
    evaluation = load_data(eval_data, kind=eval_kind or kind, columns=columns) if eval_data is not None else None
    _seed_everything(opts.seed)
    if isinstance(model, str):
        from finetuner.models.build import build_model

        model = build_model(model, output_dim=output_dim, freeze=freeze, pretrained=pretrained, **(model_options or {}))
    elif output_dim is not None or freeze or model_options:
        raise TrainingError(
            "output_dim=, freeze= and model_options= apply when fit() builds the model by name; on a built model use EmbeddingModel(..., output_dim=) and model.freeze()"
        )
    if opts.prompts is not None:
        from finetuner.prompts import set_prompts

        set_prompts(model, opts.prompts)
    if opts.lora is not None:
        from finetuner.lora import add_adapters

        add_adapters(model, opts.lora)
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainingError("every parameter is frozen, so there is nothing to train: pass output_dim= to add a projection head")
    out = Path(output_dir) if output_dir is not None else None
    trainer = Trainer(model, train, evaluation, opts, [*callbacks, *trackers], out, dist)
    model.matryoshka_dims = _matryoshka_dims(trainer.loss)
    try:
        if resume:
            trainer.resume()
        if evaluation is not None and trainer.state.step == 0:
            trainer.evaluate_before()
        before = trainer.before
        with compiled(model, opts.compile):
            trainer.train()  # ends with the final evaluation (trainer.after) when there is eval_data
        after = trainer.after
        if evaluation is not None and dist.is_main and opts.verbose:
            from finetuner.report.metrics import comparison

            print(comparison(before or {}, after))
        model.metrics = {"before": before or {}, "after": after}
        model.history = trainer.state.history
        model.examples = trainer.example_records()
        if out is not None and dist.is_main:
            _write_artifact(model, out / "model", opts, train, trainer)
    except BaseException as error:  # Ctrl-C included: trackers close their runs as failed
        trainer.fail(error)
        raise
    trainer.end(out / "model" if out is not None else None)
    dist.barrier()
    return model


def _write_artifact(model: EmbeddingModel, directory: Path, opts: FitOptions, train: Any, trainer: Trainer) -> None:
    """Save the trained model with its training record, write its report, and push it when asked."""
    from finetuner.artifacts import save
    from finetuner.report.training import write_report

    extra = {"training": _training_record(opts, train, trainer), "examples": model.examples}
    save(model, directory, metrics=model.metrics, extra=extra, overwrite=opts.overwrite)
    logger.info("artifact written to %s", directory)
    report = write_report(directory)
    if opts.verbose:
        print(f"\n{report.text}\nreport: {report.png or '(no PNG without matplotlib)'}, {report.html}")
    if opts.push_to_hub:
        from finetuner.hub import push_to_hub

        logger.info("pushed to %s", push_to_hub(directory, opts.push_to_hub))


def _check_arguments(model: Any, output_dir: Any, callbacks: Any) -> None:
    """Refuse, before any work, arguments of the wrong type (each would fail later with an AttributeError or TypeError)."""
    if not isinstance(model, (str, EmbeddingModel)):
        raise TrainingError(f"model must be a backbone name or an EmbeddingModel, got {type(model).__name__}")
    if output_dir is not None and not isinstance(output_dir, (str, os.PathLike)):
        raise TrainingError(f"output_dir must be a path or None, got {type(output_dir).__name__}")
    if not isinstance(callbacks, Sequence) or not all(isinstance(c, Callback) for c in callbacks):
        raise TrainingError(f"callbacks must be a list of Callback objects (finetuner.training.callbacks), got {callbacks!r}")


def _matryoshka_dims(loss: Any) -> tuple[int, ...] | None:
    """The truncations a MatryoshkaLoss trains (kept with the model and its artifact); None for any other loss."""
    from finetuner.losses import MatryoshkaLoss

    return loss.dims if isinstance(loss, MatryoshkaLoss) else None


def _training_record(opts: FitOptions, train: Any, trainer: Trainer) -> dict[str, Any]:
    record = {k: v for k, v in asdict(opts).items() if k not in ("loss",)}
    record.update(
        loss=trainer.loss_name,
        data_kind=train.kind,
        data_source=train.source,
        eval_data_source=trainer.eval_data.source if trainer.eval_data is not None else None,
        examples=len(train),
        steps=trainer.state.step,
        history=trainer.state.history,
        stopped_early=trainer.stopped_early,
    )
    return record


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
