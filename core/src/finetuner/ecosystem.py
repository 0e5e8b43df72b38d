"""Export to other libraries: folders that sentence-transformers, transformers or timm load with no finetuner import.

``finetuner export --sentence-transformers ARTIFACT`` (or ``--transformers``, ``--timm``) and
:func:`export_sentence_transformers`, :func:`export_transformers`, :func:`export_timm` write:

- ``sentence-transformers`` (one text tower): ``modules.json``; the transformer module at the
  folder root (``config.json``, tokenizer files, ``sentence_bert_config.json``,
  ``model.safetensors``); ``1_Pooling`` with the tower's pooling; the Dense and Normalize modules
  the tower read from a sentence-transformers folder; a ``Dense`` for a projection head
  (``output_dim=``: ``linear.weight``/``linear.bias``, identity activation); ``Normalize`` when
  the model normalises; ``config_sentence_transformers.json`` with the model's prompts.
  ``SentenceTransformer(folder)`` gives the model's embeddings.
- ``transformers``: a folder ``from_pretrained`` loads. A CLIP or SigLIP model's two towers make
  one ``CLIPModel`` or ``SiglipModel`` (with the learned ``logit_scale``, and SigLIP's learned
  ``logit_bias``); its text and image features, L2-normalised
  when the model normalises, are the model's embeddings. A projection head has no place there.
- ``timm`` (one image tower): the backbone's weights and a timm ``config.json`` (``architecture``,
  ``num_classes`` 0, ``pretrained_cfg`` with the preprocessing); ``timm.create_model(
  "local-dir:FOLDER", pretrained=True)`` gives the features, L2-normalised as above.

Each tower writes its own part through :meth:`finetuner.models.Tower.export_files` (the formats
it supports are its ``export_formats``); finetuner writes the head, ``modules.json``, the weights
file and a ``README.md`` model card. A folder is written atomically and replaces only an earlier
export or an empty folder unless ``overwrite=True``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from finetuner._atomic import check_target, write_folder
from finetuner.errors import ExportError, OptionError, UnknownNameError
from finetuner.lora import merged
from finetuner.model_card import is_finetuner_card, model_config, write_model_card
from finetuner.models.embedding import EmbeddingModel

FORMATS = ("sentence-transformers", "transformers", "timm")
WEIGHTS_FILE = "model.safetensors"
ST_MODULES = "sentence_transformers.models"  # the classic module paths, which every sentence-transformers version loads
IDENTITY = "torch.nn.modules.linear.Identity"


def export_sentence_transformers(
    model: EmbeddingModel | str | Path,
    output: str | Path | None = None,
    *,
    overwrite: bool = False,
    truncate_dim: int | None = None,
) -> Path:
    """Write a text model as a sentence-transformers folder (default ``ARTIFACT/sentence-transformers``); returns it.

    ``truncate_dim`` is recorded in ``config_sentence_transformers.json``, so
    ``SentenceTransformer(folder)`` gives embeddings cut to it (a model trained with ``matryoshka_dims``).
    """
    return export_to(model, "sentence-transformers", output, overwrite=overwrite, truncate_dim=truncate_dim)


def export_transformers(model: EmbeddingModel | str | Path, output: str | Path | None = None, *, overwrite: bool = False) -> Path:
    """Write a model as a transformers folder (CLIP or SigLIP: one ``CLIPModel`` or ``SiglipModel``; default ``ARTIFACT/transformers``)."""
    return export_to(model, "transformers", output, overwrite=overwrite)


def export_timm(model: EmbeddingModel | str | Path, output: str | Path | None = None, *, overwrite: bool = False) -> Path:
    """Write an image model built on timm as a timm folder (default ``ARTIFACT/timm``); returns it."""
    return export_to(model, "timm", output, overwrite=overwrite)


def export_to(
    model: EmbeddingModel | str | Path,
    fmt: str,
    output: str | Path | None = None,
    *,
    overwrite: bool = False,
    truncate_dim: int | None = None,
) -> Path:
    """Write ``model`` (an artifact directory or an EmbeddingModel) in the format ``fmt`` (one of :data:`FORMATS`).

    The folder goes to ``output`` (default ``ARTIFACT/<fmt>``; required for a model in memory).
    ``truncate_dim`` (sentence-transformers only) is recorded for the library to cut the embeddings.
    Raises :class:`ExportError` when the model's towers or head cannot be written in ``fmt``;
    nothing is written then.
    """
    if fmt not in FORMATS:
        raise UnknownNameError("export format", fmt, FORMATS)
    if isinstance(model, (str, Path)):
        from finetuner.artifacts import load, read_config

        target = Path(output) if output is not None else Path(model) / fmt
        config, model = read_config(model), load(model)
    elif output is None:
        raise ValueError(f"exporting a model in memory to {fmt} needs output= (a folder)")
    else:
        target, config = Path(output), model_config(model)
    model = merged(model)  # LoRA adapters folded into the weights (a copy: the caller's model keeps them)
    options = _truncation(model, fmt, truncate_dim)
    _check(model, fmt)
    check_target(target, ours=is_export, what=f"a {fmt} export", overwrite=overwrite)
    with torch.no_grad(), write_folder(target) as staging:
        save_weights(WRITERS[fmt](model, staging, **options), staging / WEIGHTS_FILE)
        write_model_card(staging, config, location=target, fmt=fmt)
    return target


def is_export(directory: Path) -> bool:
    """Whether ``directory`` is an export finetuner wrote (what a new export may replace): a card of ours, no artifact."""
    from finetuner.artifacts import is_artifact

    return is_finetuner_card(directory) and not is_artifact(directory)


def save_weights(weights: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``weights`` as safetensors with the ``format: pt`` metadata transformers asks for.

    Tensors that share memory (tied weights) are written as copies, which every loader accepts.
    """
    from safetensors.torch import save_file

    seen: set[int] = set()
    tensors = {}
    for name, tensor in weights.items():
        tensor = tensor.detach().cpu()
        storage = tensor.untyped_storage().data_ptr()
        tensors[name] = tensor.clone().contiguous() if storage in seen else tensor.contiguous()
        seen.add(storage)
    save_file(tensors, str(path), metadata={"format": "pt"})


def _check(model: EmbeddingModel, fmt: str) -> None:
    """Refuse, before anything is written, a model ``fmt`` cannot hold; the message names what can be done."""
    needs = {"sentence-transformers": ["text"], "timm": ["image"]}.get(fmt)
    if needs is not None and model.modalities != needs:
        other = {"text-to-image": "transformers (CLIP models)", "text-to-text": "sentence-transformers", "image-to-image": "timm"}
        raise ExportError(
            f"the {fmt} format holds one {needs[0]} tower; this {model.task} model has towers {', '.join(model.modalities)}. "
            f"Export it to {other[model.task]} or to ONNX (finetuner export --onnx)"
        )
    if fmt in ("transformers", "timm") and model.projections is not None:
        raise ExportError(
            f"this model has a projection head (output_dim={model.projection_dim}), which the {fmt} format has no place for; "
            "export it to ONNX (finetuner export --onnx), or fine-tune without output_dim="
        )
    for modality, tower in model.towers.items():
        if fmt not in tower.export_formats:
            works = ", ".join(tower.export_formats) or "no other library's format"
            raise ExportError(
                f"the {modality} tower ({type(tower).__name__}) cannot be exported to {fmt}: it exports to {works}. "
                "Every model exports to ONNX (finetuner export --onnx)"
            )


def _truncation(model: EmbeddingModel, fmt: str, truncate_dim: int | None) -> dict[str, int]:
    """The writer's ``truncate_dim`` option, checked: sentence-transformers only, at most the output dimension."""
    if truncate_dim is None:
        return {}
    if fmt != "sentence-transformers":
        raise OptionError(f"truncate_dim applies to the sentence-transformers export only, not to {fmt}")
    from finetuner.truncation import check_dim

    return {"truncate_dim": check_dim(truncate_dim, model.output_dim)}


def _sentence_transformers(model: EmbeddingModel, folder: Path, truncate_dim: int | None = None) -> dict[str, torch.Tensor]:
    """The tower's modules (transformer, pooling and any it read from a folder), then Dense (projection head) and Normalize.

    ``config_sentence_transformers.json`` holds the model's prompts and ``truncate_dim`` if given.
    """
    from finetuner.prompts import default_prompt_name, prompts_of

    tower = model.tower("text")
    weights = tower.export_files(folder, "sentence-transformers")
    modules = _read_modules(folder)
    if model.projections is not None:
        modules.append((f"{len(modules)}_Dense", "Dense"))
        _write_dense(model.projections["text"], folder / modules[-1][0])
    if model.normalize and modules[-1][1] != "Normalize":
        modules.append((f"{len(modules)}_Normalize", "Normalize"))
        (folder / modules[-1][0]).mkdir()
        (folder / modules[-1][0] / "config.json").write_text("{}\n")
    _write_modules(folder, modules)
    similarity = "cosine" if model.normalize else getattr(tower, "similarity_fn_name", "cosine")
    config = {
        "model_type": "SentenceTransformer",
        "prompts": prompts_of(model),
        "default_prompt_name": default_prompt_name(model),
        "similarity_fn_name": similarity,
    }
    _write_json(folder / "config_sentence_transformers.json", config | ({"truncate_dim": truncate_dim} if truncate_dim else {}))
    return weights


def _read_modules(folder: Path) -> list[tuple[str, str]]:
    """The (path, class name) of each module a tower listed in ``folder/modules.json``; else its transformer and pooling."""
    path = folder / "modules.json"
    if not path.is_file():
        return [("", "Transformer"), ("1_Pooling", "Pooling")]
    return [(entry["path"], entry["type"].rsplit(".", 1)[-1]) for entry in json.loads(path.read_text())]


def _write_modules(folder: Path, modules: list[tuple[str, str]]) -> None:
    """sentence-transformers' ``modules.json`` for (path, class name) pairs, in order."""
    entries = [{"idx": i, "name": str(i), "path": path, "type": f"{ST_MODULES}.{kind}"} for i, (path, kind) in enumerate(modules)]
    _write_json(folder / "modules.json", entries)


def _write_dense(linear: torch.nn.Linear, folder: Path) -> None:
    """sentence-transformers' ``Dense`` module: its config and ``linear.*`` weights."""
    folder.mkdir()
    config = {
        "in_features": linear.in_features,
        "out_features": linear.out_features,
        "bias": linear.bias is not None,
        "activation_function": IDENTITY,
    }
    _write_json(folder / "config.json", config)
    save_weights({f"linear.{name}": value for name, value in linear.state_dict().items()}, folder / WEIGHTS_FILE)


def _transformers(model: EmbeddingModel, folder: Path) -> dict[str, torch.Tensor]:
    """Every tower's part of one transformers model, with the model's ``logit_scale`` and ``logit_bias`` where a part has them."""
    weights: dict[str, torch.Tensor] = {}
    for modality, tower in model.towers.items():
        part = tower.export_files(folder, "transformers")
        clash = sorted(set(part) & set(weights))
        if clash:
            raise ExportError(f"the {modality} tower writes weights another tower wrote too ({', '.join(clash[:3])})")
        weights.update(part)
    for name in ("logit_scale", "logit_bias"):
        value = getattr(model, name)
        if name in weights and value is not None:  # in the shape the part gives it (SigLIP's [1])
            weights[name] = value.detach().reshape(weights[name].shape)
    return weights


def _timm(model: EmbeddingModel, folder: Path) -> dict[str, torch.Tensor]:
    return model.tower("image").export_files(folder, "timm")


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


WRITERS: dict[str, Callable[..., dict[str, torch.Tensor]]] = {  # (model, folder, **options) -> weights
    "sentence-transformers": _sentence_transformers,
    "transformers": _transformers,
    "timm": _timm,
}
