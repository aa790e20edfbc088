"""Loading pretrained weights into a module: from a local file or an official URL (through torch.hub's cache).

* ``path`` given: the file is loaded (``torch.load(weights_only=True)``); a checkpoint wrapped in ``state_dict`` or
  ``model`` is unwrapped and a DDP ``module.`` prefix is stripped.
* otherwise ``url``: the file is looked for in torch.hub's cache (``torch.hub.get_dir()/checkpoints/<filename>``) and
  loaded from there without touching the network; if it is not there it is downloaded into that cache with
  ``torch.hub.load_state_dict_from_url``. Before downloading, the host (or the configured proxy) is probed with a short
  timeout, so an offline machine fails in seconds with a :class:`~segkit.errors.DownloadError` that says where to put
  the file by hand, or how to point ``backbone.pretrained_model_path`` at it.

Keys are loaded non-strictly; the keys the module lacks or does not know, and those whose shapes differ (skipped),
are returned in a :class:`LoadReport` and logged as a warning.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

import torch
from torch import nn

from ..errors import CheckpointError, DownloadError

logger = logging.getLogger("segkit.models")

PROBE_TIMEOUT_S: float = 5.0
"""How long the reachability probe waits for the host (DNS and TCP connect) before giving up."""

DOWNLOAD_TIMEOUT_S: float = 60.0
"""Socket timeout while downloading: a stalled transfer fails instead of hanging."""

_SKIP_LOADING: contextvars.ContextVar[bool] = contextvars.ContextVar("segkit_skip_pretrained", default=False)

KeyMap = Callable[[str], "str | None"] | Mapping[str, str]


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did: where the weights came from and which keys did not fit."""

    source: str
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    mismatched_keys: list[str] = field(default_factory=list)
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return not (self.missing_keys or self.unexpected_keys or self.mismatched_keys)


@contextlib.contextmanager
def skip_loading() -> Iterator[None]:
    """Within this block :func:`load_pretrained` checks its arguments but reads and downloads nothing.

    Recipe validation builds backbones this way (on the meta device) to learn their feature channels cheaply.
    """
    token = _SKIP_LOADING.set(True)
    try:
        yield
    finally:
        _SKIP_LOADING.reset(token)


def loading_skipped() -> bool:
    """Whether the caller is inside :func:`skip_loading`."""
    return _SKIP_LOADING.get()


def hub_cache_path(url: str) -> str:
    """Where torch.hub keeps the file of ``url``: ``torch.hub.get_dir()/checkpoints/<filename>``."""
    filename = os.path.basename(urlparse(url).path)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def load_pretrained(
    module: nn.Module,
    *,
    url: str | None,
    path: str | None,
    key_map: KeyMap | None = None,
    ignore_prefixes: tuple[str, ...] = (),
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> LoadReport:
    """Load weights into ``module`` from ``path`` (preferred when given) or ``url``; return a :class:`LoadReport`.

    ``key_map`` renames checkpoint keys: a mapping of prefix -> prefix, or a function returning the new key (``None``
    drops the key). Checkpoint keys starting with one of ``ignore_prefixes`` (a classifier ``fc.``) are dropped
    silently. ``convert`` then turns the whole state dict into ``module``'s names and shapes (another codebase's
    layout, resized position embeddings) before keys are matched and reported.
    """
    if not path and not url:
        raise CheckpointError("load_pretrained needs a url or a path")
    if path and not os.path.isfile(path):
        raise CheckpointError(f"pretrained_model_path: no such file: {path}")
    source = path or url or ""
    if loading_skipped():
        return LoadReport(source=source, skipped=True)
    checkpoint = _read_file(path) if path else _fetch_url(url or "")
    state_dict = _rename(_unwrap(checkpoint, source), key_map)
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(ignore_prefixes)}
    if convert is not None:
        state_dict = convert(state_dict)
    return load_state_dict_reported(module, state_dict, source)


def load_published_weights(module: nn.Module, *, urls: Mapping[str, str], structure_type: str | None,
                           pretrained_model_path: str = "", family: str | None = None, **load_kwargs) -> LoadReport:
    """Load ``pretrained_model_path`` or, without it, the published weights ``urls[structure_type]`` into a
    backbone (SSSegmentation's ``pretrained``/``pretrained_model_path`` contract). ``load_kwargs`` go to
    :func:`load_pretrained` (``key_map``, ``ignore_prefixes``, ``convert``). A missing file or a structure type
    without published weights is an error naming the recipe key."""
    from .layers import ArgumentError

    if pretrained_model_path:
        if not os.path.isfile(pretrained_model_path):
            raise ArgumentError("pretrained_model_path", f"no such file: {pretrained_model_path}")
        return load_pretrained(module, url=None, path=pretrained_model_path, **load_kwargs)
    url = urls.get(structure_type or "")
    if url is None:
        available = ", ".join(sorted(urls)) or "none are published"
        raise ArgumentError("pretrained", f"no published {family or type(module).__name__} weights for "
                            f"structure_type {structure_type!r} (available: {available}); set pretrained = false "
                            "or give pretrained_model_path")
    return load_pretrained(module, url=url, path=None, **load_kwargs)


# ----------------------------------------------------------------------------------------------- reading


def _read_file(path: str) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, or pickled objects weights_only refuses
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc


def _fetch_url(url: str) -> object:
    cached = hub_cache_path(url)
    if os.path.isfile(cached):
        return _read_file(cached)
    host_problem = _probe(url, PROBE_TIMEOUT_S)
    if host_problem:
        raise DownloadError(_offline_message(url, cached, host_problem))
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        # files named like resnet50-19c8e357.pth carry a sha256 prefix: torch.hub verifies it on download
        named_hash = torch.hub.HASH_REGEX.search(os.path.basename(urlparse(url).path)) is not None
        return torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=_is_main_process(), check_hash=named_hash, weights_only=True
        )
    except OSError as exc:  # URLError, HTTPError, timeouts
        raise DownloadError(_offline_message(url, cached, f"download failed: {exc}")) from exc
    except RuntimeError as exc:
        if "invalid hash value" in str(exc):  # torch.hub removed the file; nothing is left in the cache
            raise DownloadError(f"{url}: the download does not match the checksum in its name ({exc}); "
                                "nothing was kept, try again or place a verified copy at " + cached) from None
        raise CheckpointError(f"cannot read the checkpoint downloaded from {url} ({cached}): {exc}") from exc
    except Exception as exc:  # downloaded, but not a readable weights-only checkpoint
        raise CheckpointError(f"cannot read the checkpoint downloaded from {url} ({cached}): {exc}") from exc
    finally:
        socket.setdefaulttimeout(previous)


def _offline_message(url: str, cached: str, problem: str) -> str:
    return (
        f"cannot download pretrained weights from {url} ({problem}).\n"
        f"Either place the file at {cached} (torch.hub's cache; it is then used without network),\n"
        f"or set the path in the recipe: backbone.pretrained_model_path = \"/path/to/{os.path.basename(cached)}\"\n"
        f"(or backbone.pretrained = false to train from scratch)."
    )


def _probe(url: str, timeout: float) -> str | None:
    """Return why the host of ``url`` (or the proxy for it) cannot be reached within ``timeout``, else ``None``.

    The probe runs in a daemon thread, so a hanging DNS lookup cannot hold the caller longer than ``timeout``.
    """
    parsed = urlparse(url)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname or ""):
        target = urlparse(proxy if "://" in proxy else f"http://{proxy}")
    else:
        target = parsed
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    outcome: dict[str, str] = {}

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome["ok"] = "yes"
        except Exception as exc:  # noqa: BLE001 (OSError, or whatever a sandbox's patched socket raises)
            outcome["error"] = f"cannot reach {host}:{port}: {exc}"

    worker = threading.Thread(target=connect, name="segkit-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return f"no answer from {host}:{port} within {timeout:g} s; is this machine offline?"
    return outcome.get("error")


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


# ----------------------------------------------------------------------------------------------- keys


def _unwrap(checkpoint: object, source: str) -> dict[str, torch.Tensor]:
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model"):
            inner = checkpoint.get(key)
            if isinstance(inner, Mapping):
                checkpoint = inner
                break
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{source} does not hold a state dict (got {type(checkpoint).__name__})")
    state_dict = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def _rename(state_dict: dict[str, torch.Tensor], key_map: KeyMap | None) -> dict[str, torch.Tensor]:
    if key_map is None:
        return state_dict
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new_key = key_map(key) if callable(key_map) else _rename_prefix(key, key_map)
        if new_key is not None:
            renamed[new_key] = value
    return renamed


def _rename_prefix(key: str, prefixes: Mapping[str, str]) -> str:
    for old in sorted(prefixes, key=len, reverse=True):
        if key.startswith(old):
            return prefixes[old] + key[len(old):]
    return key


def load_state_dict_reported(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> LoadReport:
    """Non-strict load; keys missing, unexpected or of another shape (skipped) are returned and logged."""
    own = module.state_dict()
    mismatched = sorted(k for k, v in state_dict.items() if k in own and own[k].shape != v.shape)
    fitting = {k: v for k, v in state_dict.items() if k not in mismatched}
    result = module.load_state_dict(fitting, strict=False)
    report = LoadReport(
        source=source,
        missing_keys=sorted(set(result.missing_keys) | set(mismatched)),
        unexpected_keys=sorted(result.unexpected_keys),
        mismatched_keys=mismatched,
    )
    if not report.ok:
        logger.warning(
            "pretrained weights from %s: %d missing keys %s; %d unexpected keys %s; %d with other shapes %s",
            source, len(report.missing_keys), _shorten(report.missing_keys),
            len(report.unexpected_keys), _shorten(report.unexpected_keys),
            len(report.mismatched_keys), _shorten(report.mismatched_keys),
        )
    else:
        logger.info("loaded pretrained weights from %s", source)
    return report


def _shorten(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}]"
