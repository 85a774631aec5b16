"""Download one file safely: stream to a temporary file, check it, then rename it into place.

The destination either does not exist or holds the complete, checked file: the bytes go to a
hidden ``.part`` file in the same folder (so the final rename is atomic on one file system),
which is deleted on any failure, including a dropped connection or Ctrl-C.
"""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path
from typing import BinaryIO

from flowllm_kit.data.registry import FileCheck
from flowllm_kit.files import atomic_file
from flowllm_kit.progress import progress_bar

__all__ = ["DownloadError", "DownloadMismatchError", "download_file"]

_CHUNK_BYTES = 1 << 20
_USER_AGENT = "flowllm-kit dataset downloader"


class DownloadError(OSError):
    """A download failed: the server could not be reached or the transfer broke off."""


class DownloadMismatchError(DownloadError):
    """A downloaded file's size or SHA-256 differs from the expected value."""


def download_file(
    url: str,
    destination: str | Path,
    *,
    expected: FileCheck | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``destination``, checking its size and hash before it appears.

    Args:
        url: Any URL ``urllib`` can open (``https://``, ``http://``, ``file://``).
        destination: Final path; its folder is created if needed.
        expected: Size and/or SHA-256 the file must have (unchecked where ``None``).
        timeout: Seconds to wait for the server on each read.
        progress: Show a tqdm progress bar.

    Returns:
        ``destination`` as a ``Path``.

    Raises:
        DownloadMismatchError: If the size or hash differs from ``expected``; the message names
            the URL, the expected value and the value got.
        DownloadError: If the server cannot be reached or sends fewer bytes than it announced.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    expected = expected or FileCheck()
    with atomic_file(destination) as sink:
        label = f"{destination.parent.name}/{destination.name}"
        size, digest = _stream(
            url, sink, label=label, limit=expected.size, timeout=timeout, progress=progress
        )
        _verify(url, expected, size=size, digest=digest)
    return destination


def _stream(
    url: str, sink: BinaryIO, *, label: str, limit: int | None, timeout: float, progress: bool
) -> tuple[int, str]:
    """Copy the response body into ``sink``; returns (bytes written, sha256 hex).

    With a known expected size (``limit``), a server that announces another length, or sends
    more, is refused before the whole body is fetched.
    """
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    hasher = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            header = response.headers.get("Content-Length")
            announced = int(header) if header is not None else None
            if limit is not None and announced is not None and announced != limit:
                _size_mismatch(url, limit, f"{announced} bytes announced")
            with progress_bar(
                total=announced,
                unit="B",
                unit_scale=True,
                desc=f"download {label}",
                disable=not progress,
                leave=False,
            ) as bar:
                while chunk := response.read(_CHUNK_BYTES):
                    sink.write(chunk)
                    hasher.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
                    if limit is not None and size > limit:
                        _size_mismatch(url, limit, f"more (stopped after {size} bytes)")
    except OSError as error:  # URLError, HTTPError, timeouts, resets are all OSErrors
        if isinstance(error, DownloadError):
            raise
        raise DownloadError(f"could not download {url}: {error}") from error
    # http.client returns a short body without raising when the server closes the connection
    # early, so an announced length is the only sign of a truncated transfer.
    if announced is not None and size < announced:
        raise DownloadError(
            f"download of {url} broke off: got {size} bytes of the {announced} announced"
        )
    return size, hasher.hexdigest()


def _size_mismatch(url: str, expected: int, got: str) -> None:
    raise DownloadMismatchError(f"size mismatch for {url}: expected {expected} bytes, got {got}")


def _verify(url: str, expected: FileCheck, *, size: int, digest: str) -> None:
    if expected.size is not None and size != expected.size:
        raise DownloadMismatchError(
            f"size mismatch for {url}: expected {expected.size} bytes, got {size} bytes"
        )
    if expected.sha256 is not None and digest != expected.sha256.lower():
        raise DownloadMismatchError(
            f"sha256 mismatch for {url}: expected {expected.sha256.lower()}, got {digest}"
        )
