"""Upload an artifact or an export to the Hugging Face Hub: ``finetuner push``, ``fit(push_to_hub=...)``.

Needs ``huggingface_hub`` (installed with the text and multimodal plugins) and a token
(``hf auth login`` or ``HF_TOKEN``). :func:`check_hub_access` fails at once, before anything is
uploaded, when ``HF_HUB_OFFLINE`` is set, the endpoint (``HF_ENDPOINT``) does not accept a
connection within a few seconds, or there is no token. Pushing never changes the local folder.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from finetuner.errors import ArtifactError, HubError

CONNECT_TIMEOUT_S = 5.0
COMMIT_MESSAGE = "Upload with finetuner"


def check_hub_access() -> None:
    """Raise :class:`HubError` unless an upload can start: online, the endpoint reachable, a token set."""
    try:
        from huggingface_hub import constants, get_token
    except ImportError as exc:
        raise HubError("pushing to the Hugging Face Hub needs huggingface_hub: pip install huggingface_hub") from exc
    if constants.HF_HUB_OFFLINE:
        raise HubError("cannot push to the Hugging Face Hub: HF_HUB_OFFLINE is set (unset it, with network access, to upload)")
    if not _reachable(constants.ENDPOINT):
        raise HubError(
            f"cannot push to the Hugging Face Hub: {constants.ENDPOINT} did not accept a connection within "
            f"{CONNECT_TIMEOUT_S:g} s (no network, a proxy needed, or a wrong HF_ENDPOINT)"
        )
    if not get_token():
        raise HubError("cannot push to the Hugging Face Hub: no token; run `hf auth login` or set HF_TOKEN")


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = False, message: str = COMMIT_MESSAGE) -> str:
    """Upload ``folder`` (an artifact or an export) to the model repo ``repo_id``, created if missing; returns the commit URL."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"cannot push {folder}: it is not a folder (push an artifact or an export)")
    check_hub_access()
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="model", commit_message=message)
    except Exception as exc:  # noqa: BLE001 - HTTP, network and validation errors of the Hub client alike
        raise HubError(f"pushing {folder} to {repo_id} failed: {exc}") from exc
    return str(commit.commit_url)


def _reachable(url: str) -> bool:
    """Whether the host of ``url`` (or the proxy for it) accepts a TCP connection within :data:`CONNECT_TIMEOUT_S`.

    The connection runs in a daemon thread, so a DNS lookup that hangs costs the timeout at most.
    """
    parsed = urlparse(url)
    bypass = not parsed.hostname or urllib.request.proxy_bypass(parsed.hostname)
    proxy = None if bypass else urllib.request.getproxies().get(parsed.scheme)
    target = urlparse(proxy) if proxy else parsed
    if not target.hostname:
        return False
    address = (target.hostname, target.port or (443 if target.scheme == "https" else 80))
    connected: list[bool] = []

    def connect() -> None:
        with contextlib.suppress(OSError), socket.create_connection(address, timeout=CONNECT_TIMEOUT_S):
            connected.append(True)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S)
    return bool(connected)
