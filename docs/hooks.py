"""mkdocs hooks: the site also publishes repository files that live outside docs/.

The package pages (core/, plugins/*, examples/*), bench/README.md and the records under bench/runs/
are added to the site at their repository paths, so the pages keep one source. Links are written
for GitHub, relative to the file that holds them (docs/speed.md links ``../bench/README.md``); this
hook points each one that resolves to a published file at that file's place in the site. A link
to a file the site does not publish is left as it is, and ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = ("core/README.md", "plugins/*/README.md", "examples/*/README.md", "bench/README.md", "bench/runs/**/*")
ALIASES = {"README.md": "index.md"}  # the repository's front door links land on the site's
LINK = re.compile(r"(\]\()([^)\s]+)(\))")  # an inline Markdown link: ](target)
# The docstrings are written for Sphinx-style readers: drop the roles (:class:`x` shows as x) and the
# "::" that introduces a literal block, which Markdown renders as a code block already.
ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):(<code>)~?")
LITERAL = re.compile(r"::(</p>)")

_published: set[str] = set()


def on_files(files, config):
    for pattern in PUBLISHED:
        for path in sorted(REPO.glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                uri = path.relative_to(REPO).as_posix()
                _published.add(uri)
                files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def _site_path(repo_path: str) -> str | None:
    """Where the repository file ``repo_path`` is in the site, or None when the site does not publish it."""
    if repo_path.startswith("docs/"):
        return repo_path.removeprefix("docs/")
    if repo_path in _published:
        return repo_path
    if f"{repo_path}/README.md" in _published:
        return f"{repo_path}/README.md"
    return ALIASES.get(repo_path)


def on_page_markdown(markdown, page, config, files):
    here = page.file.src_uri
    repo_here = here if here in _published else f"docs/{here}"

    def point(match: re.Match) -> str:
        target, _, anchor = match.group(2).partition("#")
        if not target or "://" in target or target.startswith(("/", "mailto:")):
            return match.group(0)
        site = _site_path(posixpath.normpath(posixpath.join(posixpath.dirname(repo_here), target)))
        if site is None:
            return match.group(0)
        relative = posixpath.relpath(site, posixpath.dirname(here) or ".")
        return f"{match.group(1)}{relative}{'#' + anchor if anchor else ''}{match.group(3)}"

    return LINK.sub(point, markdown)


def on_page_content(html, page, config, files):
    return LITERAL.sub(r":\1", ROLE.sub(r"\1", html))
