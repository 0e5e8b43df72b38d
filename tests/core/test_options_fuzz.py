"""fit() options fed random values: each is converted, or refused with a FinetunerError naming it, never another exception."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import finetuner
from finetuner.training.options import FitOptions, OptionSpec, option_specs
from tests.core.helpers import pairs

SPECS = {spec.name: spec for spec in option_specs()}
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# anything a config file, a command line or a Python caller could give
ANYTHING = st.deferred(
    lambda: (
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats()
        | st.text(max_size=8)
        | st.sampled_from(["1e-5", " 3 ", "-1", "0", "nan", "inf", "true", "no", "", "cuda:0", "AdamW", "memory", "[1, 2]"])
        | st.lists(st.integers(-3, 30) | st.text(max_size=3) | st.floats(), max_size=4)
        | st.tuples(st.integers(-3, 30))
        | st.dictionaries(st.text(max_size=6), st.integers() | st.floats() | st.text(max_size=4), max_size=3)
        | st.builds(object)
    )
)


@settings(SETTINGS, max_examples=400)
@given(options=st.dictionaries(st.sampled_from(sorted(SPECS)), ANYTHING, min_size=1, max_size=4))
def test_any_option_value_is_converted_or_refused_naming_the_option(options):
    try:
        made = FitOptions(**options)
    except finetuner.FinetunerError as error:
        assert any(name in str(error) for name in options), error
        return
    for name in options:  # what was kept is a value the option accepts
        spec, value = SPECS[name], getattr(made, name)
        assert spec.check(value) == value
        assert not isinstance(value, float) or math.isfinite(value)


def few(spec: OptionSpec) -> st.SearchStrategy[Any]:
    """Values for a run of a few steps: wrong ones of every kind, right ones kept small (a fuzzed run must end quickly)."""
    if spec.range is not None and spec.types[0] in (int, tuple):
        low = int(spec.range.low)
        small = st.integers(low, low + 2)
        right = st.lists(small, min_size=1, max_size=3).map(tuple) if spec.types[0] is tuple else small
        return st.one_of(right, right, st.integers(-3, low - 1) | st.text(max_size=3) | st.floats())
    if spec.range is not None:
        right = st.floats(spec.range.low, min(spec.range.high, 1.0))
        return st.one_of(right, right, st.floats() | st.integers(-2, 2) | st.sampled_from(["1e-3", "x"]))
    if spec.choices is not None:
        return st.sampled_from([*spec.choices, "bogus", 3])
    return NAMED.get(spec.name, ANYTHING)


NAMED: dict[str, st.SearchStrategy[Any]] = {
    "loss": st.sampled_from(
        [None, "MultipleNegativesRankingLoss", "CoSENTLoss", "CosineSimilarityLoss", "TripletMarginLoss", "ArcFaceLoss"]
        + ["ClipLoss", "SigLIPLoss", "NoSuchLoss", 7]
    ),
    "miner": st.sampled_from([None, "MultiSimilarityMiner", "TripletMarginMiner", "NoSuchMiner", 3]),
    "optimizer": st.sampled_from(["AdamW", "SGD", "Adam", "RMSprop", "Adagrad", "LBFGS", "SparseAdam", "sgd", "NoSuch", 1]),
    "device": st.sampled_from(["cpu", "auto", "cuda", "cuda:3", "cpu:0", "meta", "mps", "", "gpu", 0]),
    "loss_options": st.dictionaries(
        st.sampled_from(["scale", "margin", "temperature", "no_such_option"]), st.floats(-2, 50) | st.text(max_size=2), max_size=2
    ),
    "optimizer_options": st.dictionaries(
        st.sampled_from(["momentum", "betas", "eps", "nesterov", "amsgrad", "no_such_option"]),
        st.floats(-1, 2) | st.booleans() | st.tuples(st.floats(-1, 2), st.floats(-1, 2)) | st.text(max_size=2),
        max_size=2,
    ),
    "compile": st.sampled_from([False, "false", "x", 2]),  # True would compile the towers: slow
    "num_workers": st.sampled_from([0, "0", -1, "x", 1.5]),  # workers start processes: slow
    "verbose": st.sampled_from([False, "no", 2]),
}
KINDS = {
    "pairs": pairs(16),
    "labeled": [(f"{word} item {i}", word) for i, word in enumerate(["red", "green", "blue", "grey"] * 4)],
    "scored": [(q, d, (i % 5) / 4) for i, (q, d) in enumerate(pairs(16))],
}


# a few options at a time, so that most runs get past the checks and train
OPTIONS = st.lists(st.sampled_from(sorted(SPECS)), max_size=4, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({name: few(SPECS[name]) for name in names})
)


@settings(SETTINGS, max_examples=30)
@given(kind=st.sampled_from(sorted(KINDS)), options=OPTIONS)
def test_fit_with_random_options_trains_or_raises_a_finetuner_error(kind, options):
    options = {"batch_size": 4, "samples_per_class": 2, "epochs": 1, **options}
    try:
        finetuner.fit("dummy-text", KINDS[kind], kind=kind, output_dir=None, **{"verbose": False, **options})
    except finetuner.FinetunerError as error:
        assert str(error)
