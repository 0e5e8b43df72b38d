"""FitOptions: every option of fit(), declared once with its help, choices and range.

The declarations drive everything else: ``finetuner fit`` builds its flags from them, the
unknown-option error lists their names, and :class:`FitOptions` checks every value against
them when it is made, before any data is read. Strings, as the command line and YAML give
them (PyYAML reads ``1e-5`` as a string), are converted to the option's type or refused
with the reason. Kept free of heavy imports: the CLI reads it to build its parser.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from typing import Any, NamedTuple

from finetuner.choices import PRECISIONS
from finetuner.errors import TrainingError, UnknownNameError
from finetuner.lora import check_settings
from finetuner.prompts import check_prompts

SCHEDULERS = ("linear", "cosine", "constant")
_BOOLEANS = {"true": True, "false": False}  # as the command line spells them; YAML reads yes/no/on/off itself
_NAMES = {
    int: "an integer",
    float: "a number",
    bool: "True or False",
    str: "a string",
    dict: "a mapping",
    tuple: "a list of integers",
    list: "a list of names",
}


class Range(NamedTuple):
    """The numbers an option accepts: from ``low`` to ``high``, each end included when its flag says so."""

    low: float
    high: float = math.inf
    low_inclusive: bool = True
    high_inclusive: bool = True

    def holds(self, value: float) -> bool:
        above = value >= self.low if self.low_inclusive else value > self.low
        below = value <= self.high if self.high_inclusive else value < self.high
        return math.isfinite(value) and above and below

    def __str__(self) -> str:
        closed = self.high_inclusive and math.isfinite(self.high)
        return f"{'[' if self.low_inclusive else '('}{_number(self.low)}, {_number(self.high)}{']' if closed else ')'}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def option(
    default: Any, text: str, *, choices: Sequence[Any] | None = None, bounds: Range | None = None, flag: bool = True
) -> Any:
    """A FitOptions field: its ``default`` (a value, or a factory such as ``dict`` for a mutable one), help ``text``,
    allowed ``choices``, numeric ``bounds`` (of each item, for a list) and whether ``finetuner fit`` has a flag for it."""
    defaults = {"default_factory": default} if callable(default) else {"default": default}
    return field(**defaults, metadata={"help": text, "choices": choices, "range": bounds, "flag": flag})


POSITIVE = Range(1)
NON_NEGATIVE = Range(0)
POSITIVE_REAL = Range(0, low_inclusive=False)


@dataclass
class FitOptions:
    """Every option of :func:`finetuner.fit`, converted and checked when made."""

    loss: Any = option(
        None,
        "loss name (default: by data kind); in YAML or Python also a mapping of the name and its options "
        "({name: MatryoshkaLoss, loss: mnrl, matryoshka_dims: [384, 128]}); in Python also a loss module",
    )
    loss_options: dict[str, Any] = option(dict, "keyword arguments of the loss", flag=False)
    miner: str | None = option(None, "pytorch-metric-learning miner name, for labeled data")
    epochs: int = option(1, "passes over the training data", bounds=POSITIVE)
    batch_size: int = option(32, "examples per batch (per process under torchrun)", bounds=Range(2))
    learning_rate: float = option(2e-5, "peak learning rate", bounds=POSITIVE_REAL)
    loss_learning_rate: float | None = option(
        None,
        "learning rate of a loss with weights (ArcFace; default: learning_rate times the loss's multiplier)",
        bounds=POSITIVE_REAL,
    )
    optimizer: str = option("AdamW", "any torch.optim optimizer by name")
    optimizer_options: dict[str, Any] = option(dict, "keyword arguments of the optimizer", flag=False)
    scheduler: str = option("linear", "learning-rate schedule after the warmup", choices=SCHEDULERS)
    warmup_ratio: float = option(0.1, "share of steps spent warming up", bounds=Range(0, 1))
    weight_decay: float = option(0.01, "weight decay of matrices and filters", bounds=NON_NEGATIVE)
    max_grad_norm: float | None = option(1.0, "clip the gradients' norm to this (0 or None: no clipping)", bounds=NON_NEGATIVE)
    gradient_accumulation_steps: int = option(1, "batches per optimizer step", bounds=POSITIVE)
    mini_batch_size: int | None = option(
        None,
        "GradCache: run the towers on this many examples at a time, still training on the whole batch (its in-batch "
        "negatives too): a mini-batch's activation memory for one more forward pass (Cached* losses: 32)",
        bounds=POSITIVE,
    )
    gradient_checkpointing: bool = option(
        False,
        "recompute the towers' activations during backward instead of keeping them (Hugging Face text, timm, CLIP, SigLIP and open_clip towers)",
    )
    samples_per_class: int = option(4, "items of each class in a batch of labeled data", bounds=Range(2))
    seed: int = option(0, "random seed", bounds=Range(0, 2**32 - 1))
    device: str = option("auto", "cpu, cuda, cuda:N or auto")
    precision: str = option("auto", "auto: bf16 where the hardware runs it fast, else fp32", choices=PRECISIONS)
    compile: bool = option(False, "run the towers through torch.compile")
    num_workers: int = option(0, "DataLoader worker processes for preprocessing", bounds=NON_NEGATIVE)
    cache_frozen: str | bool = option(
        "memory",
        "where a frozen backbone's embeddings of the training data are kept (false: not cached)",
        choices=("memory", "disk", False),
    )
    augment: bool | dict[str, Any] | None = option(
        None,
        "image towers: random resized crop, flip and colour jitter while training (timm's training transform); "
        "a mapping sets timm's options (default: off)",
    )
    wise_ft: float | None = option(
        None,
        "WiSE-FT: after training, set the towers' weights to alpha * fine-tuned + (1 - alpha) * the weights training started from",
        bounds=Range(0, 1),
    )
    layer_decay: float | None = option(
        None,
        "layer-wise learning-rate decay of transformer and ViT towers: a block d layers below the top trains at "
        "learning_rate * layer_decay**d",
        bounds=Range(0, 1, low_inclusive=False),
    )
    lora: bool | dict[str, Any] | None = option(
        None,
        "train LoRA adapters instead of the towers' weights (the lora extra; learning_rate then defaults to 1e-3); a mapping "
        "sets r, alpha, dropout and target_modules (default: 16, 32, 0 and the architecture's attention and feed-forward layers)",
    )
    matryoshka_dims: tuple[int, ...] | None = option(
        None,
        "train the first dims of the embeddings to work alone too (MatryoshkaLoss around the loss): "
        "the dimensions, largest first, e.g. 384,256,128,64; encode(truncate_dim=) then cuts to one of them",
        bounds=POSITIVE,
    )
    prompts: dict[str, str] | None = option(
        None,
        "text prefixes by name, e.g. {query: 'query: ', document: 'passage: '}: training puts the query prompt before "
        "each pair's first column and the document prompt before the others; kept with the model for encode and evaluate "
        "(default: the model's own, e.g. from its sentence-transformers folder)",
    )
    eval_every_steps: int | None = option(None, "evaluate every N optimizer steps (needs eval data)", bounds=POSITIVE)
    eval_every_epochs: int | None = option(None, "evaluate every N epochs (needs eval data)", bounds=POSITIVE)
    eval_k: tuple[int, ...] = option((1, 5, 10, 20), "cut-offs of the ranking metrics", bounds=POSITIVE)
    checkpoint_every_steps: int | None = option(
        None, "also checkpoint every N optimizer steps (always: every epoch)", bounds=POSITIVE
    )
    overwrite: bool = option(False, "replace <output_dir>/model and /checkpoint even when finetuner did not write them")
    push_to_hub: str | None = option(
        None, "upload the artifact to this Hugging Face Hub model repo (org/name) after training; needs network and a token"
    )
    report_to: str | list[str] | None = option(
        None,
        "log params, loss, learning rate, evaluations and the artifact's path to these experiment trackers: tensorboard, "
        "mlflow, wandb (comma-separated; each needs its extra, e.g. finetuner-core[mlflow])",
    )
    verbose: bool = option(True, "progress bars and the before/after table", flag=False)

    def __post_init__(self) -> None:
        for spec in option_specs():
            setattr(self, spec.name, spec.check(getattr(self, spec.name)))
        if isinstance(self.loss, dict):
            self.loss, self.loss_options = _named_loss(self.loss, self.loss_options)
        if self.matryoshka_dims is not None:
            from finetuner.truncation import check_matryoshka_dims  # numpy: not at import, the CLI's parser reads this module

            check_matryoshka_dims(self.matryoshka_dims)
        if not (self.loss is None or isinstance(self.loss, str) or callable(getattr(self.loss, "parameters", None))):
            raise TrainingError(f"loss must be a loss name or a torch.nn.Module, got {self.loss!r} ({type(self.loss).__name__})")
        self.lora = check_settings(self.lora)
        if self.prompts is not None:
            self.prompts = check_prompts(self.prompts)
        if self.mini_batch_size is not None and self.mini_batch_size > self.batch_size:
            raise TrainingError(
                f"mini_batch_size {self.mini_batch_size} is larger than batch_size {self.batch_size}: GradCache cuts each "
                "batch into mini-batches; lower mini_batch_size or raise batch_size"
            )

    @classmethod
    def from_kwargs(cls, options: dict[str, Any], arguments: Iterable[str] = ()) -> FitOptions:
        """The options named in ``options``; an unknown name is refused with the valid ones (these and ``arguments``)."""
        names = [spec.name for spec in option_specs()]
        unknown = sorted(set(options) - set(names))
        if unknown:
            valid = sorted({*names, *arguments})
            every = f"Valid: {', '.join(valid)}." if len(valid) > 40 else ""  # UnknownNameError lists up to 40 itself
            raise UnknownNameError("fit() option", unknown[0], valid, hint=every)
        return cls(**options)

    def check_data(self, train: Any) -> None:
        """The checks that need the training data (its size and kind)."""
        if self.batch_size > len(train):
            raise TrainingError(
                f"batch_size {self.batch_size} is larger than the training data ({len(train)} examples); lower batch_size"
            )
        if self.miner is not None and train.kind != "labeled":
            raise TrainingError(f"miner={self.miner!r} needs labeled data (item,label); this data is {train.kind}")


@dataclass(frozen=True)
class OptionSpec:
    """One option as declared: its name, accepted types, default, help, choices and range."""

    name: str
    types: tuple[type, ...]
    optional: bool
    default: Any
    help: str
    choices: Sequence[Any] | None
    range: Range | None
    flag: bool

    @property
    def kind(self) -> str:
        """What the option accepts, in words."""
        words = " or ".join(_NAMES.get(t, t.__name__) for t in self.types)
        return f"{words} or None" if self.optional else words

    def check(self, value: Any) -> Any:
        """``value`` converted to this option's type, refused with a TrainingError when it is out of range."""
        if not self.types or (value is None and self.optional):
            return value
        converted = next((c for c in (_convert(t, value) for t in self.types) if c is not _INVALID), _INVALID)
        if converted is _INVALID:
            reason = " (a string that does not read as one)" if isinstance(value, str) else f" ({type(value).__name__})"
            raise TrainingError(f"{self.name} must be {self.kind}, got {value!r}{reason}")
        if self.choices is not None and converted not in self.choices:
            raise UnknownNameError(self.name, str(converted), [str(c) for c in self.choices])
        numbers = converted if isinstance(converted, tuple) else (converted,)
        if self.range is not None and not all(self.range.holds(n) for n in numbers):
            raise TrainingError(f"{self.name} must be {self._describe()} in {self.range}, got {value!r}")
        return converted

    def _describe(self) -> str:
        """The range's kind of number in words: "a positive integer", "non-negative", "a number", ..."""
        low, integer = self.range.low, self.types[0] in (int, tuple)
        sign = None
        if math.isinf(self.range.high):
            if (low == 1 and integer and self.range.low_inclusive) or (low == 0 and not self.range.low_inclusive):
                sign = "positive"
            elif low == 0:
                sign = "non-negative"
        if self.types[0] is tuple:
            return f"a list of {sign} integers" if sign else _NAMES[tuple]
        if sign:
            return f"a {sign} integer" if integer else sign
        return _NAMES[self.types[0]]


_INVALID = object()


def _convert(kind: type, value: Any) -> Any:
    """``value`` as ``kind``, parsing strings; ``_INVALID`` when it is not one."""
    if kind is bool:
        word = _BOOLEANS.get(value.strip().lower(), _INVALID) if isinstance(value, str) else _INVALID
        return value if isinstance(value, bool) else word
    if kind in (int, float) and isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            return _INVALID
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is dict and isinstance(value, str) and value.lstrip().startswith("{"):  # a YAML mapping, as a flag gives it
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            return _INVALID
    if kind is tuple:
        if isinstance(value, (str, list, tuple)):  # "384,256" and ["384,256"] too, as YAML and the flags give them
            value = [part for item in ([value] if isinstance(value, str) else value) for part in _split(item)]
        items = [_convert(int, item) for item in value] if isinstance(value, list) and value else [_INVALID]
        return _INVALID if _INVALID in items else tuple(items)
    if kind is int and isinstance(value, bool):
        return _INVALID
    return value if isinstance(value, kind) else _INVALID


def _split(item: Any) -> list[Any]:
    """A comma-separated string as its parts; anything else alone."""
    return [part.strip() for part in item.split(",") if part.strip()] if isinstance(item, str) else [item]


def _named_loss(loss: dict[str, Any], options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``loss={"name": NAME, **kwargs}`` as the name and loss_options (kwargs joined with the loss_options given)."""
    rest = dict(loss)
    name = rest.pop("name", None)
    if not isinstance(name, str):
        raise TrainingError(f"loss given as a mapping needs its name, e.g. {{'name': 'MatryoshkaLoss', ...}}; got {loss!r}")
    both = sorted(set(rest) & set(options))
    if both:
        raise TrainingError(f"loss option {both[0]!r} is given twice: in loss= and in loss_options=")
    return name, {**rest, **options}


@cache
def option_specs() -> tuple[OptionSpec, ...]:
    """The options of FitOptions in declaration order."""
    hints = typing.get_type_hints(FitOptions)
    specs = []
    for f in fields(FitOptions):
        hint = hints[f.name]
        parts = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        accepted = tuple(typing.get_origin(p) or p for p in parts if p is not type(None) and p is not Any)
        # a union with str tries the other types first, so "false" is False and "3" is 3
        accepted = tuple(sorted(accepted, key=lambda t: t is str))
        default = f.default_factory() if f.default is MISSING else f.default
        specs.append(
            OptionSpec(
                f.name,
                accepted,
                type(None) in parts,
                default,
                f.metadata["help"],
                f.metadata["choices"],
                f.metadata["range"],
                f.metadata["flag"],
            )
        )
    return tuple(specs)
