"""Random mutations of a valid artifact's finetuner.json: load() succeeds or raises ArtifactError, never another exception."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import finetuner

KEYS = ["format", "format_version", "sources", "name", "plugin", "options", "modalities", "files", "frozen", "dim", "weights"]
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-3, 40)  # small: a dimension option must not allocate gigabytes
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["dummy-text", "dummy-image", "dummy", "text", "image", "backbone-0", "backbone-1", ".", "/etc", "../x"])
)
JSON = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


def places(node: Any, where: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path (keys and indices) of every value in ``node``, itself included."""
    inner = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    return [where, *(place for key, child in inner for place in places(child, (*where, key)))]


def mutate(data: st.DataObject, config: Any) -> Any:
    """``config`` with one random change at a random place: a value replaced, dropped, or a key or item added to it."""
    deepest_first = sorted(places(config), key=len, reverse=True)  # hypothesis favours the first ones
    where = data.draw(st.sampled_from(deepest_first))
    action = data.draw(st.sampled_from(["replace", "drop", "add"]))
    if not where:
        return data.draw(JSON) if action == "replace" or not isinstance(config, (dict, list)) else mutate_in(data, config, action)
    parent = config
    for key in where[:-1]:
        parent = parent[key]
    if action == "drop":
        del parent[where[-1]]
    elif action == "add" and isinstance(parent[where[-1]], (dict, list)):
        mutate_in(data, parent[where[-1]], action)
    else:
        parent[where[-1]] = data.draw(JSON)
    return config


def mutate_in(data: st.DataObject, container: dict[str, Any] | list[Any], action: str) -> Any:
    """Add a random key or item to ``container`` (in place)."""
    if isinstance(container, dict):
        container[data.draw(st.sampled_from(KEYS))] = data.draw(JSON)
    else:
        container.insert(data.draw(st.integers(0, len(container))), data.draw(JSON))
    return container


@pytest.fixture
def two_towers(tmp_path) -> tuple[Path, dict[str, Any]]:
    """A saved two-tower model (projection, a frozen tower: every field in use) and its JSON as written."""
    path = finetuner.save(finetuner.build_model("dummy-text+dummy-image", output_dim=8, freeze="image"), tmp_path / "model")
    return path, json.loads((path / "finetuner.json").read_text())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_a_mutated_json_loads_or_raises_artifact_error(two_towers, data):
    path, original = two_towers
    mutated = copy.deepcopy(original)
    for _ in range(data.draw(st.integers(1, 3))):
        mutated = mutate(data, mutated)
    (path / "finetuner.json").write_text(json.dumps(mutated))
    try:
        finetuner.load(path)
    except finetuner.ArtifactError as error:
        assert str(error)
