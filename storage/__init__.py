"""Where the line keeps recordings it has taken from Twilio: a local directory by default.

`storage_for(config)` gives the configured backend. Keys are relative paths such as
`recordings/2026/11/RE….wav`; a backend never exposes its location to the browser.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def open(self, key: str) -> BinaryIO: ...
    def size(self, key: str) -> int: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...


class LocalStorage:
    """Files under one directory, written atomically (temp file, fsync, rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"storage key {key!r} leaves the storage directory")
        return path

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def open(self, key: str) -> BinaryIO:
        return self.path(key).open("rb")

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def storage_for(config) -> Storage:
    """The backend the settings name: `RECORDINGS_DIR` (default instance/recordings), or with
    RECORDINGS_STORAGE=s3 the bucket `S3_BUCKET`."""
    if config.get("RECORDINGS_STORAGE") == "s3":
        from .s3 import S3Storage

        return S3Storage(
            config["S3_BUCKET"], config.get("S3_PREFIX") or "", config.get("S3_ENDPOINT_URL"), config.get("S3_REGION")
        )
    return LocalStorage(config.get("RECORDINGS_DIR") or Path(config["INSTANCE_DIR"]) / "recordings")
