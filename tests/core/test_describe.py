"""describe_models(), the boxed table and the `models`/`plugins` commands."""

from __future__ import annotations

import json

import pytest

import finetuner
from finetuner.cli import main
from finetuner.report.backbones import render_table
from tests.core.helpers import INSTALLED, run_cli


def test_describe_models_prints_the_reference_table(capsys):
    rows = finetuner.describe_models()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].strip() == "Finetuner backbones"
    assert lines[1].startswith("┏━") and "━┳━" in lines[1] and lines[1].endswith("━┓")
    assert [c.strip() for c in lines[2].strip("┃").split("┃")] == ["model", "task", "output_dim", "architecture", "description"]
    assert lines[3].startswith("┡━") and "━╇━" in lines[3]
    assert lines[-1].startswith("└─") and "─┴─" in lines[-1]
    body = lines[4:-1]
    assert len(body) == len(rows) and all(line.startswith("│ ") for line in body)
    widths = {len(line) for line in lines[1:]}
    assert len(widths) == 1  # every line of the box has the same width
    dummy = next(line for line in body if "dummy-text" in line)
    cells = dummy.strip("│").split("│")
    assert cells[2].endswith("16 ") and cells[2].strip() == "16"  # numbers right-aligned


def test_describe_models_filters_by_task(capsys):
    rows = finetuner.describe_models("image-to-image")
    assert rows and all(r["task"] == "image-to-image" for r in rows)
    assert "dummy-text" not in capsys.readouterr().out


def test_describe_models_without_plugins_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setenv("FINETUNER_DISABLE_PLUGINS", ",".join(INSTALLED))
    assert finetuner.describe_models() == []
    out = capsys.readouterr().out
    assert "┏━" in out and "└─" in out
    assert out.strip().splitlines()[-1].startswith("Install backbones with: pip install finetuner-vision")


def test_unknown_task_is_rejected():
    with pytest.raises(finetuner.UnknownNameError, match="text-to-image"):
        finetuner.list_models("text-to-video")
    result = run_cli("models", "--task", "text-to-video")
    assert result.returncode == 2 and "text-to-text" in result.stderr


def test_models_json(capsys):
    assert main(["models", "--json", "--task", "text-to-text"]) == 0
    rows = json.loads(capsys.readouterr().out)
    dummy = next(r for r in rows if r["model"] == "dummy-text")
    assert dummy == {**dummy, "output_dim": 16, "plugin": "dummy", "aliases": ["dummy-txt"]}


def test_plugins_json(capsys):
    with pytest.warns(RuntimeWarning):
        assert main(["plugins", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["dummy"]["status"] == "ok" and rows["dummy"]["version"] == "0.0.1"
    assert rows["broken"]["status"] == "failed" and rows["broken"]["error"]


def test_every_command_has_help():
    from finetuner.cli import COMMANDS

    for command in COMMANDS:
        result = run_cli(command, "--help")
        assert result.returncode == 0 and "usage: finetuner" in result.stdout, command


def test_empty_table_renders_a_closed_box():
    lines = render_table([]).splitlines()
    assert lines[1].startswith("┏") and lines[-1].startswith("└") and len(lines) == 5
