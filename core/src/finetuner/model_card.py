"""Model cards: the ``README.md`` in the Hugging Face Hub's format that every artifact and export carries.

The YAML front matter holds what the Hub reads: ``library_name``, ``base_model`` (the Hub ids
the towers started from, where known), ``pipeline_tag``, ``tags``, ``datasets`` (where the
training data came from the Hub) and a ``model-index`` with the metrics after and before
fine-tuning (``<metric>_before``). The body describes the model, the before/after table, the
recipe (the data named by its source: a Hub id or a name as given, a local file by its file name)
and how to use the folder. Cards are built from an artifact's config (``finetuner.json``),
or for a model in memory from :func:`model_config`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from finetuner.report.metrics import change_rows, headline

CARD_FILE = "README.md"
TAG = "finetuner"
DATA_SUFFIXES = {".csv", ".tsv", ".txt", ".json", ".jsonl", ".parquet"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PIPELINE_TAGS = {
    "text-to-text": "sentence-similarity",
    "image-to-image": "image-feature-extraction",
    "text-to-image": "zero-shot-image-classification",
}
FORMAT_TAGS = {
    "sentence-transformers": ["sentence-transformers", "feature-extraction"],
    "transformers": ["transformers"],
    "timm": ["timm"],
}
EXPORTS = {"text-to-text": "sentence-transformers", "text-to-image": "transformers", "image-to-image": "timm"}
WHAT = {"text-to-text": "texts", "image-to-image": "images", "text-to-image": "texts and images"}
# What the usage examples of the library formats import (they L2-normalise with F and open an image).
TORCH_IMPORTS = "import torch\nimport torch.nn.functional as F\nfrom PIL import Image"
# The options of the recipe table, in order, with their labels; the rest are in finetuner.json.
RECIPE = (
    ("loss", "loss"),
    ("miner", "miner"),
    ("epochs", "epochs"),
    ("batch_size", "batch size"),
    ("learning_rate", "learning rate"),
    ("optimizer", "optimizer"),
    ("scheduler", "schedule"),
    ("warmup_ratio", "warmup"),
    ("weight_decay", "weight decay"),
    ("precision", "precision"),
    ("seed", "seed"),
    ("steps", "optimizer steps"),
)


def model_config(model: Any) -> dict[str, Any]:
    """What a card reads of an artifact's config, for a model in memory (``model.metrics`` when fit set it)."""
    return {
        "task": model.task,
        "output_dim": model.output_dim,
        "projection_dim": model.projection_dim,
        "normalize": model.normalize,
        "sources": model.sources,
        "frozen": model.frozen_modalities(),
        "metrics": getattr(model, "metrics", None) or {},
    }


def write_model_card(directory: Path, config: Mapping[str, Any], *, location: str | Path, fmt: str | None = None) -> Path:
    """Write ``README.md`` into ``directory`` for a folder that will live at ``location`` (shown in the examples).

    ``fmt`` is the export format of the folder (``"sentence-transformers"``, ``"transformers"``,
    ``"timm"``), None for a finetuner artifact.
    """
    path = Path(directory) / CARD_FILE
    path.write_text(render(config, location=str(location), fmt=fmt), encoding="utf-8")
    return path


def is_finetuner_card(directory: Path) -> bool:
    """Whether ``directory`` holds a model card finetuner wrote (its front matter carries the ``finetuner`` tag)."""
    try:
        text = (Path(directory) / CARD_FILE).read_text(encoding="utf-8")
        front = yaml.safe_load(text.split("---", 2)[1]) if text.startswith("---") else None
    except (OSError, UnicodeDecodeError, IndexError, yaml.YAMLError):
        return False
    return isinstance(front, dict) and TAG in (front.get("tags") or [])


def render(config: Mapping[str, Any], *, location: str, fmt: str | None = None) -> str:
    """The card: YAML front matter (:func:`metadata`), then the description, results, recipe and usage."""
    front = yaml.safe_dump(metadata(config, fmt), sort_keys=False, allow_unicode=True, width=1000)
    sections = [f"# {title(config)}", _description(config, fmt), _results(config), _recipe(config), _usage(config, location, fmt)]
    return f"---\n{front}---\n\n" + "\n\n".join(s for s in sections if s) + "\n"


def metadata(config: Mapping[str, Any], fmt: str | None = None) -> dict[str, Any]:
    """The front matter: the keys of ``huggingface_hub.ModelCardData``, None-valued ones left out."""
    task = config["task"]
    bases = base_models(config)
    training = config.get("training") or {}
    datasets = [s for s in (training.get("data_source"), training.get("eval_data_source")) if _hub_id(s)]
    data = {
        "library_name": fmt or TAG,  # an export's library is its format
        "base_model": bases[0] if len(bases) == 1 else bases or None,
        "pipeline_tag": PIPELINE_TAGS[task],
        "tags": list(dict.fromkeys([TAG, "embeddings", task, PIPELINE_TAGS[task], *FORMAT_TAGS.get(fmt, [])])),
        "datasets": list(dict.fromkeys(datasets)) or None,
        "model-index": _model_index(config),
    }
    return {key: value for key, value in data.items() if value is not None}


def title(config: Mapping[str, Any]) -> str:
    """``<backbone> fine-tuned with finetuner`` (the backbones joined with ``+``)."""
    return f"{' + '.join(_short(s['name']) for s in config['sources']) or 'Embedding model'} fine-tuned with finetuner"


def base_models(config: Mapping[str, Any]) -> list[str]:
    """The Hub ids the towers started from, where their plugins named one."""
    return list(dict.fromkeys(s["base_model"] for s in config["sources"] if s.get("base_model")))


def _model_index(config: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """One result (task, eval data) with the headline metrics after fine-tuning, then those before (``_before``)."""
    metrics = config.get("metrics") or {}
    after, before = headline(metrics.get("after") or {}), headline(metrics.get("before") or {})
    if not after:
        return None
    source = _eval_name(config)
    rows = [{"type": name, "value": round(float(value), 4), "name": f"{name} (fine-tuned)"} for name, value in after.items()]
    rows += [
        {"type": f"{name}_before", "value": round(float(value), 4), "name": f"{name} (before fine-tuning)"}
        for name, value in before.items()
    ]
    dataset = {"name": source or "evaluation data", "type": source if _hub_id(source) else "custom"}
    result = {"task": {"type": PIPELINE_TAGS[config["task"]]}, "dataset": dataset, "metrics": rows}
    return [{"name": title(config), "results": [result]}]


def _description(config: Mapping[str, Any], fmt: str | None) -> str:
    backbones = " from " + ", ".join(f"`{s['name']}`" for s in config["sources"]) if config["sources"] else ""
    bases = base_models(config)
    base = f" (Hugging Face: {', '.join(f'[{b}](https://huggingface.co/{b})' for b in bases)})" if bases else ""
    head = f", through a projection head to {config['projection_dim']} dimensions" if config.get("projection_dim") else ""
    normal = "L2-normalised " if config.get("normalize") else ""
    text = (
        f"{'An' if config['task'].startswith('i') else 'A'} {config['task']} embedding model fine-tuned with finetuner{backbones}{base}{head}. "
        f"It maps {WHAT[config['task']]} to {config['output_dim']}-dimensional {normal}vectors for search and similarity."
    )
    if fmt in ("transformers", "timm") and config.get("normalize"):
        text += " The library's features are the embeddings before normalisation: L2-normalise them, as below."
    if fmt is None and config.get("lora"):
        text += (
            " This folder holds LoRA adapters, not the backbone's weights: `finetuner.load` rebuilds the base model by name,"
            " so its pretrained weights must be available there; `finetuner export` merges the adapters into them."
        )
    return text


def _results(config: Mapping[str, Any]) -> str:
    metrics = config.get("metrics") or {}
    before, after = headline(metrics.get("before") or {}), headline(metrics.get("after") or {})
    if not after:
        return ""
    source = _eval_name(config)
    where = f" on `{source}`" if source else ""
    rows = "\n".join(f"| {' | '.join(row)} |" for row in change_rows(before, after))
    return (
        f"## Results\n\nEvaluated{where} before and after fine-tuning (the headline metrics; "
        f"`finetuner.json` of the artifact holds them all):\n\n"
        f"| metric | before | after | change |\n|---|---:|---:|---:|\n{rows}"
    )


def _recipe(config: Mapping[str, Any]) -> str:
    training = config.get("training") or {}
    if not training:
        return ""
    rows = [("backbone", " + ".join(f"`{s['name']}`" + _options(s) for s in config["sources"]))]
    if training.get("data_source"):
        source = _data_name(training["data_source"]) or training["data_source"]  # data in memory says what it is: <list>, ...
        kind = f", {training['data_kind']}" if training.get("data_kind") else ""
        rows.append(("training data", f"`{source}` ({training.get('examples', '?')} examples{kind})"))
    if config.get("projection_dim"):
        rows.append(("projection head", f"output_dim={config['projection_dim']}"))
    if config.get("frozen"):
        rows.append(("frozen towers", ", ".join(config["frozen"])))
    if config.get("lora"):
        lora = config["lora"]
        layers = "; ".join(f"{tower}: {', '.join(names)}" for tower, names in lora["target_modules"].items())
        rows.append(("LoRA adapters", f"r={lora['r']}, alpha={lora['alpha']}, dropout={lora['dropout']} on {layers}"))
    rows += [(label, f"`{training[key]}`") for key, label in RECIPE if training.get(key) not in (None, "", {})]
    table = "\n".join(f"| {label} | {value} |" for label, value in rows)
    return f"## Training recipe\n\n| option | value |\n|---|---|\n{table}\n\nEvery option is in `finetuner.json` (`training`)."


def _options(source: Mapping[str, Any]) -> str:
    options = source.get("options") or {}
    return f" ({', '.join(f'{k}={v!r}' for k, v in options.items())})" if options else ""


def _usage(config: Mapping[str, Any], location: str, fmt: str | None) -> str:
    task, normalize = config["task"], bool(config.get("normalize"))
    blocks = {
        None: _finetuner_usage,
        "sentence-transformers": _st_usage,
        "transformers": _transformers_usage,
        "timm": _timm_usage,
    }[fmt](location, task, normalize)
    hub = (
        "From the Hub, `huggingface_hub.snapshot_download(REPO_ID)` gives the folder."
        if fmt is None
        else "Pushed to the Hub (`finetuner push`), its repo id replaces the folder."
    )
    return f"## Usage\n\n{blocks}\n\n{hub}"


def _finetuner_usage(location: str, task: str, normalize: bool) -> str:
    if task == "text-to-image":
        calls = (
            'texts = finetuner.encode(model, ["a photo of a cat"], modality="text")\n'
            'images = finetuner.encode(model, ["cat.jpg"], modality="image")'
        )
    else:
        items = '["cat.jpg", "dog.jpg"]' if task == "image-to-image" else '["a query", "a document"]'
        calls = f"embeddings = finetuner.encode(model, {items})"
    text = _python("With finetuner", f'import finetuner\n\nmodel = finetuner.load("{location}")\n{calls}')
    export = EXPORTS[task]
    return (
        f"{text}\n\nWith {export} and no finetuner (where the backbone supports it), export it first; "
        f"the folder's README shows how to load it:\n\n```bash\nfinetuner export --{export} {location} -o {location}-{export}\n```"
    )


def _st_usage(location: str, task: str, normalize: bool) -> str:
    return _python(
        "With sentence-transformers",
        "from sentence_transformers import SentenceTransformer\n\n"
        f'model = SentenceTransformer("{location}")\nembeddings = model.encode(["a query", "a document"])',
    )


def _transformers_usage(location: str, task: str, normalize: bool) -> str:
    return _python(
        "With transformers (5; in 4.x the features are the outputs themselves, without `.pooler_output`)",
        f"{TORCH_IMPORTS}\nfrom transformers import AutoModel, AutoProcessor\n\n"
        f'model = AutoModel.from_pretrained("{location}").eval()\nprocessor = AutoProcessor.from_pretrained("{location}")\n'
        "# texts padded to the full length, as CLIP and SigLIP were trained; SigLIP's text tower saw no attention mask\n"
        'inputs = processor(text=["a photo of a cat"], images=[Image.open("cat.jpg").convert("RGB")], return_tensors="pt",\n'
        '                   padding="max_length", truncation=True)\n'
        'mask = None if model.config.model_type.startswith("siglip") else inputs.get("attention_mask")\n'
        "with torch.no_grad():\n"
        "    texts = model.get_text_features(input_ids=inputs.input_ids, attention_mask=mask).pooler_output\n"
        "    images = model.get_image_features(pixel_values=inputs.pixel_values).pooler_output",
        normalized=("texts", "images") if normalize else (),
    )


def _timm_usage(location: str, task: str, normalize: bool) -> str:
    return _python(
        "With timm",
        f'import timm\n{TORCH_IMPORTS}\n\nmodel = timm.create_model("local-dir:{location}", pretrained=True).eval()\n'
        "transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))\n"
        "with torch.no_grad():\n"
        '    embeddings = model(transform(Image.open("cat.jpg").convert("RGB")).unsqueeze(0))',
        normalized=("embeddings",) if normalize else (),
    )


def _python(intro: str, code: str, *, normalized: tuple[str, ...] = ()) -> str:
    """``intro``, then ``code`` as a Python block that ends by L2-normalising the variables named in ``normalized``."""
    if normalized:
        code += f"\n{', '.join(normalized)} = {', '.join(f'F.normalize({name}, dim=-1)' for name in normalized)}"
    return f"{intro}:\n\n```python\n{code}\n```"


def _eval_name(config: Mapping[str, Any]) -> str | None:
    """The evaluation data's name (see :func:`_data_name`)."""
    return _data_name((config.get("training") or {}).get("eval_data_source"))


def _data_name(source: Any) -> str | None:
    """How the card names training or evaluation data: a Hub id or a named source as is, a local file or folder by
    its name; None for data in memory (``<memory>``, ``<list>``) or none."""
    if not isinstance(source, str) or not source or source.startswith("<"):
        return None
    if _hub_id(source):
        return source
    path = Path(source)
    return path.name or source if path.suffix.lower() in DATA_SUFFIXES or path.exists() else source


def _short(name: str) -> str:
    """A backbone's name without its family prefix (``hf:``) and organisation; a folder's last two parts."""
    bare = name.partition(":")[2] if re.match(r"^[a-z-]+:", name) else name
    parts = Path(bare).parts
    if not parts:
        return name
    return "/".join(parts[-2:]) if bare.startswith(("/", ".", "~")) else parts[-1]


def _hub_id(value: Any) -> bool:
    """Whether ``value`` reads as a Hugging Face Hub id (``org/name``), not a file or folder on disk."""
    if not isinstance(value, str) or not HUB_ID.match(value) or Path(value).suffix.lower() in DATA_SUFFIXES:
        return False
    return not Path(value).exists()
