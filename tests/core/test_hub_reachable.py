"""The Hub endpoint probe behind ``check_hub_access``: a TCP connection within the timeout, through the proxy unless bypassed."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from finetuner.hub import _reachable


@pytest.fixture
def listening() -> Iterator[int]:
    """The port of a local socket that accepts connections."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_a_listening_host_is_reachable_and_a_closed_port_is_not(listening):
    assert _reachable(f"http://127.0.0.1:{listening}") is True
    assert _reachable(f"http://127.0.0.1:{closed_port()}") is False


@pytest.mark.parametrize("url", ["https://finetuner-test.invalid", "not a url"])
def test_an_unresolvable_or_missing_host_is_unreachable(url):
    assert _reachable(url) is False


def test_the_proxy_is_probed_unless_the_host_bypasses_it(listening, monkeypatch):
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port()}")
    assert _reachable(f"http://127.0.0.1:{listening}") is False  # the proxy, not the host, must answer
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert _reachable(f"http://127.0.0.1:{listening}") is True
