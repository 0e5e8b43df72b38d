"""Demo data that ships with Python or a dependency: nothing is downloaded or copied in.

- Python's standard library docstrings: a function's one-line summary (query) against the
  rest of its docstring (document).
- scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes), as labeled
  images and as captioned images ("a handwritten seven").
"""

from __future__ import annotations

import importlib
import inspect
import random
import warnings
import zlib

from finetuner.data.types import LabeledData, PairData

STDLIB_MODULES = (
    "abc argparse ast asyncio base64 bisect bz2 calendar cmd codecs collections colorsys configparser contextlib copy "
    "csv dataclasses datetime decimal difflib dis doctest email.message enum fnmatch fractions ftplib functools getopt "
    "gettext glob gzip hashlib heapq hmac html http.client http.cookies imaplib inspect io ipaddress itertools json "
    "locale logging lzma mailbox math mimetypes operator os os.path pathlib pdb pickle pickletools platform poplib pprint "
    "queue random re sched secrets selectors shlex shutil signal smtplib socket sqlite3 statistics string struct "
    "subprocess sysconfig tarfile tempfile textwrap threading time timeit tokenize traceback types typing unittest "
    "urllib.parse urllib.request uuid warnings wave weakref xml.dom.minidom zipfile zlib unittest.mock logging.handlers "
    "http.server xmlrpc.client xml.etree.ElementTree concurrent.futures multiprocessing.pool email.utils email.header "
    "optparse pydoc trace pstats cProfile asyncio.streams asyncio.tasks asyncio.events ctypes tkinter"
).split()
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _split_docstring(doc: str) -> tuple[str, str] | None:
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    summary = " ".join(paragraphs[0].split())
    body = " ".join(" ".join(paragraphs[1:]).split())
    if len(summary) < 15 or len(body) < 60 or ">>>" in body[:20]:
        return None
    return summary, body[:600]


def stdlib_docstring_pairs() -> list[tuple[str, str]]:
    """(summary line, rest of the docstring) for the documented functions, classes and methods of the standard library."""
    pairs: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module_name in STDLIB_MODULES:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            for _, obj in sorted(vars(module).items()):
                members = [obj]
                if inspect.isclass(obj) and obj.__module__ == module.__name__:
                    members += [m for _, m in sorted(vars(obj).items()) if inspect.isfunction(m)]
                for member in members:
                    if (
                        not (inspect.isfunction(member) or inspect.isclass(member))
                        or getattr(member, "__module__", None) != module.__name__
                    ):
                        continue
                    doc = member.__doc__
                    split = _split_docstring(doc) if isinstance(doc, str) else None
                    if split and split[0] not in pairs:
                        pairs[split[0]] = split[1]
    return sorted(pairs.items())


def split_held_out(pairs: list[tuple[str, str]], held_out: float = 0.2) -> tuple[PairData, PairData]:
    """A stable split by hashing the query: the same pair lands on the same side on every machine."""
    train, test = [], []
    for pair in pairs:
        (test if zlib.crc32(pair[0].encode()) % 1000 < held_out * 1000 else train).append(pair)
    as_data = lambda rows, name: PairData([q for q, _ in rows], [d for _, d in rows], source=name)  # noqa: E731
    return as_data(train, "stdlib docstrings (train)"), as_data(test, "stdlib docstrings (held out)")


def digits(seed: int = 0) -> tuple[list, list[str]]:
    """scikit-learn's digits as 8-bit grayscale arrays (0-255) with their labels, shuffled."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("the image demos read scikit-learn's bundled digits: pip install scikit-learn") from exc
    bunch = load_digits()
    images = [(image * (255 / 16)).astype("uint8") for image in bunch.images]
    labels = [DIGIT_NAMES[t] for t in bunch.target]
    order = list(range(len(images)))
    random.Random(seed).shuffle(order)
    return [images[i] for i in order], [labels[i] for i in order]


def digits_labeled(train_size: int = 1200) -> tuple[LabeledData, LabeledData]:
    images, labels = digits()
    return (
        LabeledData(images[:train_size], labels[:train_size], source="sklearn digits (train)"),
        LabeledData(images[train_size:], labels[train_size:], source="sklearn digits (held out)"),
    )


def digits_captioned(train_size: int = 1200) -> tuple[PairData, PairData]:
    """Images with captions made from their labels, varied so the text tower has something to learn."""
    images, labels = digits()
    templates = ("a handwritten {}", "the digit {}", "a scanned {}", "handwriting of the number {}")
    captions = [templates[i % len(templates)].format(label) for i, label in enumerate(labels)]
    return (
        PairData(captions[:train_size], images[:train_size], source="sklearn digits with captions (train)"),
        PairData(captions[train_size:], images[train_size:], source="sklearn digits with captions (held out)"),
    )
