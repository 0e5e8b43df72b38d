"""The command line: every command's help keeps its examples, `finetuner fit` takes its flags from FitOptions."""

from __future__ import annotations

import importlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
from safetensors import SafetensorError

from finetuner.cli import COMMANDS, main
from finetuner.training.options import option_specs
from tests.core.helpers import pairs, run_cli


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def examples_of(command: str) -> list[str]:
    """The lines of the literal blocks (after a line ending in ``::``) of the command module's docstring."""
    lines = (importlib.import_module(f"finetuner.commands.{command}").__doc__ or "").splitlines()
    examples, in_block = [], False
    for line in lines:
        if line.rstrip().endswith("::"):
            in_block = True
        elif in_block and line and not line.startswith(" "):
            in_block = False
        elif in_block and line.strip():
            examples.append(line.strip())
    return examples


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_each_example_on_its_own_line(command, capsys):
    shown = {line.strip() for line in help_of(command, capsys).splitlines()}
    missing = [example for example in examples_of(command) if example not in shown]
    assert not missing, f"`finetuner {command} --help` runs these examples into other lines: {missing}"


def test_the_commands_with_examples_are_found():
    assert {"fit", "encode", "export", "report"} <= {c for c in COMMANDS if examples_of(c)}


def test_fit_has_a_flag_for_every_option_with_one(capsys):
    text = help_of("fit", capsys)
    for spec in option_specs():
        flag = "--" + spec.name.replace("_", "-")
        assert (re.search(rf"{flag}\b", text) is not None) == spec.flag, flag


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-grad-norm", "-1"], r"max_grad_norm must be non-negative in \[0, inf\), got '-1'"),
        (["--warmup-ratio", "5"], r"warmup_ratio must be a number in \[0, 1\], got '5'"),
        (["--num-workers", "-1"], r"num_workers must be a non-negative integer in \[0, inf\), got '-1'"),
        (["--learning-rate", "fast"], r"learning_rate must be a number, got 'fast' \(a string that does not read as one\)"),
        (["--scheduler", "cosin"], r"unknown scheduler 'cosin'\. Did you mean: cosine\?"),
        (["--eval-k", "0", "5"], r"eval_k must be a list of positive integers"),
    ],
)
def test_fit_refuses_bad_flags_with_one_line_before_reading_data(flags, message, tmp_path, capsys):
    missing = tmp_path / "missing.csv"  # never read: options are checked first
    assert main(["fit", "--model", "dummy-text", "--train-data", str(missing), "--quiet", *flags]) == 1
    err = capsys.readouterr().err
    assert re.search(rf"^finetuner: error: {message}", err, re.MULTILINE), err
    assert "Traceback" not in err


def test_fit_config_strings_are_converted(tmp_path, capsys):
    """PyYAML reads 1e-2 as a string: it becomes the number it spells."""
    train = tmp_path / "train.csv"
    train.write_text("query,document\n" + "\n".join(f"q{i} alpha,d{i} alpha" for i in range(16)))
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model: dummy-text\ntrain_data: {train}\nbatch_size: '8'\nlearning_rate: 1e-2\neval_k: [1, 2]\noutput_dir: {tmp_path / 'out'}\n"
    )
    assert main(["fit", "--config", str(config), "--quiet", "--no-compile", "--cache-frozen", "false"]) == 0
    record = json.loads((tmp_path / "out" / "model" / "finetuner.json").read_text())["training"]
    assert (record["learning_rate"], record["batch_size"], record["eval_k"]) == (0.01, 8, [1, 2])
    assert record["compile"] is False and record["cache_frozen"] is False


def test_fit_config_with_an_unknown_option_lists_the_valid_ones(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("model: dummy-text\ntrain_data: train.csv\nlearning_rat: 0.1\n")
    assert main(["fit", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "unknown fit() option 'learning_rat'. Did you mean: learning_rate" in err
    assert all(name in err for name in ("max_grad_norm", "output_dir", "resume"))


# --- errors a user can cause: one line, never a traceback ---------------------------------------


def write_inputs(folder: Path) -> dict[str, str]:
    """The files the bad command lines below name, by placeholder."""
    (folder / "train.csv").write_text("query,document\n" + "".join(f"{q},{d}\n" for q, d in pairs(16)))
    (folder / "texts.txt").write_text("hello\nworld\n")
    (folder / "not-yaml.yaml").write_text("model: [1\n")
    (folder / "empty").mkdir()
    return {
        "CSV": str(folder / "train.csv"),
        "TXT": str(folder / "texts.txt"),
        "YAML": str(folder / "not-yaml.yaml"),
        "EMPTY": str(folder / "empty"),
        "MISSING": str(folder / "missing.csv"),
        "OUT": str(folder / "out"),
    }


FIT = ["fit", "--model", "dummy-text", "--train-data", "CSV", "--output-dir", "OUT", "--batch-size", "4", "--quiet"]
BAD_ARGUMENTS: dict[str, list[list[str]]] = {
    "models": [["models", "--task", "text-to-imag"], ["models", "--bogus"]],
    "plugins": [["plugins", "--bogus"]],
    "fit": [
        ["fit"],
        ["fit", "--model", "dummy-text", "--train-data", "MISSING", "--output-dir", "OUT"],
        ["fit", "--model", "no-such-model", "--train-data", "CSV", "--output-dir", "OUT"],
        ["fit", "--config", "YAML"],
        ["fit", "--config", "MISSING"],
        [*FIT, "--miner", "MultiSimilarityMiner"],
        [*FIT, "--device", "cuda:99"],
        [*FIT, "--eval-k", "0"],
        [*FIT, "--output-dim", "-5"],
        [*FIT, "--freeze"],
        [*FIT, "--batch-size", "1000"],
        [*FIT, "--loss", "CoSENTLoss"],
        [*FIT, "--kind", "scored"],
        [*FIT, "--learning-rate", "fast"],
        [*FIT, "--eval-data", "MISSING"],
        [*FIT, "--matryoshka-dims", "8,16"],
        [*FIT, "--matryoshka-dims", "64,8"],
        ["fit", "--model", "dummy-text", "--train-data", "CSV", "--output-dir", "CSV"],
    ],
    "encode": [
        ["encode", "dummy-text", "MISSING", "-o", "OUT"],
        ["encode", "no-such-model", "TXT", "-o", "OUT"],
        ["encode", "EMPTY", "TXT", "-o", "OUT"],
        ["encode", "dummy-text", "EMPTY", "-o", "OUT"],
        ["encode", "dummy-text", "TXT", "-o", "OUT", "--batch-size", "0"],
        ["encode", "dummy-text", "TXT", "-o", "OUT", "--device", "cuda:99"],
        ["encode", "dummy-text", "TXT", "-o", "OUT", "--precision", "fp8"],
        ["encode", "dummy-text", "TXT", "-o", "OUT", "--backend", "onnx"],
        ["encode", "dummy-text", "TXT"],
        ["encode", "dummy-text", "TXT", "-o", "OUT", "--truncate-dim", "99"],
        ["encode", "dummy-text", "TXT", "-o", "OUT", "--quantize", "int4"],
        ["encode", "dummy-text", "TXT", "-o", "OUT", "--quantize", "int8"],
    ],
    "calibrate": [
        ["calibrate", "dummy-text", "TXT"],
        ["calibrate", "dummy-text", "MISSING", "-o", "OUT"],
        ["calibrate", "dummy-text", "TXT", "-o", "OUT", "--dims", "99"],
        ["calibrate", "dummy-text", "TXT", "-o", "OUT", "--dims", "8,x"],
    ],
    "evaluate": [
        ["evaluate", "dummy-text", "MISSING"],
        ["evaluate", "EMPTY", "CSV"],
        ["evaluate", "dummy-text", "CSV", "--k", "0"],
        ["evaluate", "dummy-text", "CSV", "--metrics", "bogus"],
        ["evaluate", "dummy-text", "CSV", "--kind", "labeled"],
        ["evaluate", "dummy-text", "CSV", "--device", "cuda:99"],
        ["evaluate", "dummy-text", "CSV", "--dims", "16,99"],
        ["evaluate", "dummy-text", "CSV", "--quantize", "int4"],
        ["evaluate", "dummy-text", "CSV", "--rescore", "10"],
        ["evaluate", "dummy-text", "CSV", "--dims", "8", "--wise-ft", "0,1"],
    ],
    "export": [
        ["export", "EMPTY", "--onnx"],
        ["export", "MISSING", "--onnx"],
        ["export", "EMPTY"],
        ["export", "EMPTY", "--onnx", "--truncate-dim", "8"],
    ],
    "push": [["push", "EMPTY", "my-org/my-model"], ["push", "MISSING", "my-org/my-model"], ["push", "EMPTY"]],
    "report": [["report", "MISSING"], ["report", "EMPTY"], ["report", "CSV"]],
    "demo": [["demo", "--task", "bogus"], ["demo", "--epochs", "0"]],
    "mine": [
        ["mine", "dummy-text", "MISSING", "-o", "OUT"],
        ["mine", "no-such-model", "CSV", "-o", "OUT"],
        ["mine", "dummy-text", "CSV", "-o", "OUT", "--num-negatives", "0"],
        ["mine", "dummy-text", "CSV", "-o", "OUT", "--corpus", "MISSING"],
    ],
}


def test_every_command_has_bad_arguments_to_try():
    assert set(COMMANDS) <= set(BAD_ARGUMENTS)


@pytest.mark.parametrize("argv", [case for command in COMMANDS for case in BAD_ARGUMENTS.get(command, [])], ids=" ".join)
def test_bad_arguments_give_one_error_line_and_no_traceback(argv, tmp_path, capsys):
    places = write_inputs(tmp_path)
    try:
        code = main([places.get(word, word) for word in argv])
    except SystemExit as exit_info:  # argparse: usage, then its error line
        code = exit_info.code
    err = capsys.readouterr().err
    assert code not in (0, None), err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if re.match(rf"finetuner( {argv[0]})?: error: \S", line)]
    assert len(errors) == 1, err
    assert err.rstrip().endswith(errors[0])  # the last line says what is wrong


def test_the_command_line_hides_the_traceback_and_verbose_shows_it(tmp_path):
    missing = str(tmp_path / "missing.csv")
    quiet = run_cli("fit", "--model", "dummy-text", "--train-data", missing)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert quiet.stderr.rstrip().splitlines()[-1] == f"finetuner: error: data file not found: {missing}"
    verbose = run_cli("-v", "fit", "--model", "dummy-text", "--train-data", missing)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and "finetuner.errors.DataError" in verbose.stderr
    assert verbose.stderr.rstrip().splitlines()[-1] == f"finetuner: error: data file not found: {missing}"


def test_a_full_disk_reported_by_safetensors_is_one_line_naming_the_folder(tmp_path, monkeypatch, capsys):
    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    places = write_inputs(tmp_path)
    monkeypatch.setattr(safetensors.torch, "save_model", disk_full)
    assert main([places.get(word, word) for word in FIT]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        err.rstrip().splitlines()[-1]
        == f"finetuner: error: [Errno 28] No space left on device: '{tmp_path / 'out' / 'checkpoint'}'"
    )


def test_ctrl_c_during_fit_says_where_the_checkpoint_is_and_how_to_resume(tmp_path):
    places = write_inputs(tmp_path)
    command = [places.get(word, word) for word in FIT] + ["--epochs", "100000", "--checkpoint-every-steps", "1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "finetuner", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as in a terminal: an ignored SIGINT is inherited through exec, and Python then installs no KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    state, deadline = Path(places["OUT"]) / "checkpoint" / "state.json", time.monotonic() + 90
    while not state.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()[1]
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1, err
    assert re.fullmatch(
        rf"interrupted at step \d+ of 400000; the last good checkpoint \(step \d+\) is in {Path(places['OUT']) / 'checkpoint'}: "
        r"to continue, run again with resume=True \(finetuner fit \.\.\. --resume\)",
        lines[0],
    ), lines[0]
