"""Finding a checkpoint (local directory or hub id) and loading it with strict key accounting.

Layout of a checkpoint directory (that of the hub repo `nvidia/canary-qwen-2.5b`):
    config.json          SALM config (pretrained_llm, audio_locator_tag, lora, perception, ...)
    model.safetensors    SALM state dict, bf16
and, for the LLM, either beside them (NeMo's local layout)
    tokenizer.json, tokenizer_config.json (+ vocab.json, merges.txt): root or llm_backbone/
    llm_backbone/config.json: the Qwen3 config
or nothing, in which case both come from the hub repo named by `pretrained_llm` (Qwen/Qwen3-1.7B).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor, nn

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
LLM_DIR = "llm_backbone"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# Buffers a checkpoint may or may not carry; rebuilt at run time, accepted and dropped when present.
OPTIONAL_KEYS = frozenset({"perception.encoder.pos_enc.pe"})

HOW_TO_PROVIDE = (
    "Provide the weights as either\n"
    "  * a local directory holding config.json and model.safetensors (the layout of the hub repo "
    "nvidia/canary-qwen-2.5b), plus the Qwen3 tokenizer files (tokenizer.json, "
    "tokenizer_config.json) "
    "and llm_backbone/config.json, or with those fetched from the hub repo named by config.json's "
    "pretrained_llm; or\n"
    "  * a hub id such as 'nvidia/canary-qwen-2.5b', downloaded into cache_dir (or the HF cache). "
    "With HF_HUB_OFFLINE=1 only an already-cached copy is used: download it once with network "
    "access, or point to a local directory."
)


class CheckpointError(Exception):
    """A checkpoint that cannot be used: wrong keys, wrong shapes, unreadable config."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The source is neither a checkpoint directory nor a downloadable hub repository."""


@dataclasses.dataclass(frozen=True)
class CheckpointFiles:
    root: Path
    config: dict[str, Any]
    weights: Path
    tokenizer_dir: Path
    llm_config: dict[str, Any]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return data


def _download(repo_id: str, cache_dir: str | Path | None, patterns: list[str]) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}
    try:
        path = snapshot_download(
            repo_id, cache_dir=cache_dir, allow_patterns=patterns, local_files_only=offline
        )
    except HFValidationError as error:
        raise CheckpointNotFoundError(
            f"{repo_id!r} is neither a directory nor a valid hub id.\n{HOW_TO_PROVIDE}"
        ) from error
    except Exception as error:  # network, auth, offline-cache misses: all mean "not available"
        raise CheckpointNotFoundError(
            f"could not get {repo_id!r} from the Hugging Face hub "
            f"(HF_HUB_OFFLINE={'1' if offline else '0'}): {type(error).__name__}: {error}\n"
            f"{HOW_TO_PROVIDE}"
        ) from error
    return Path(path)


def _has_tokenizer(directory: Path) -> bool:
    return any((directory / name).is_file() for name in TOKENIZER_FILES)


def resolve(source: str | Path, cache_dir: str | Path | None = None) -> CheckpointFiles:
    """Locate config, weights, tokenizer and LLM config for `source` (directory or hub id)."""
    root = Path(source).expanduser()
    if not root.is_dir():
        text = str(source)
        if root.exists() or text.count("/") != 1 or text.startswith((".", "/", "~")):
            raise CheckpointNotFoundError(f"no checkpoint directory at {text!r}.\n{HOW_TO_PROVIDE}")
        root = _download(
            text,
            cache_dir,
            [CONFIG, WEIGHTS, "tokenizer*", "vocab.json", "merges.txt", f"{LLM_DIR}/*"],
        )
    for name in (CONFIG, WEIGHTS):
        if not (root / name).is_file():
            raise CheckpointNotFoundError(f"{root} has no {name}.\n{HOW_TO_PROVIDE}")
    config = _read_json(root / CONFIG)
    llm_repo = str(config.get("pretrained_llm", ""))
    hub_llm: Path | None = None
    if _has_tokenizer(root):
        tokenizer_dir = root
    elif _has_tokenizer(root / LLM_DIR):
        tokenizer_dir = root / LLM_DIR
    else:
        hub_llm = _download(
            llm_repo, cache_dir, ["config.json", "tokenizer*", "vocab.json", "merges.txt"]
        )
        tokenizer_dir = hub_llm
    if (root / LLM_DIR / CONFIG).is_file():
        llm_config = _read_json(root / LLM_DIR / CONFIG)
    else:
        hub_llm = hub_llm or _download(llm_repo, cache_dir, ["config.json"])
        llm_config = _read_json(hub_llm / CONFIG)
    return CheckpointFiles(root, config, root / WEIGHTS, tokenizer_dir, llm_config)


def _describe(keys: set[str], limit: int = 20) -> str:
    ordered = sorted(keys)
    shown = ", ".join(ordered[:limit])
    return shown + (f", ... ({len(ordered) - limit} more)" if len(ordered) > limit else "")


def check_keys(expected: dict[str, torch.Size], found: dict[str, torch.Size], source: str) -> None:
    """Every expected key present with its shape, nothing else (bar OPTIONAL_KEYS), or an error."""
    missing = set(expected) - set(found)
    unexpected = set(found) - set(expected) - OPTIONAL_KEYS
    problems: list[str] = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_describe(unexpected)}")
    wrong = {
        f"{k} (file {tuple(found[k])}, model {tuple(expected[k])})"
        for k in set(expected) & set(found)
        if found[k] != expected[k]
    }
    if wrong:
        problems.append(f"shape mismatches ({len(wrong)}): {_describe(wrong)}")
    if problems:
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(problems))


def load_weights(
    model: nn.Module,
    weights: Path,
    expected: dict[str, torch.Size],
    aliases: dict[str, str],
    device: torch.device,
    dtype: torch.dtype,
) -> None:
    """Load `weights` into a meta-device `model`: `load_state_dict(strict=True, assign=True)`.

    `expected` maps checkpoint keys to shapes; `aliases` maps the model's extra state-dict keys
    (tied tensors stored once) to the checkpoint key that supplies them. Each file tensor is read
    once; floating tensors are cast to `dtype` on `device`, integer ones (BatchNorm's counter) kept.
    """
    with safe_open(str(weights), framework="pt") as file:
        shapes = {key: torch.Size(file.get_slice(key).get_shape()) for key in file.keys()}  # noqa: SIM118
        check_keys(expected, shapes, str(weights))
        state: dict[str, Tensor] = {}
        for key in expected:
            tensor = file.get_tensor(key)
            if tensor.is_floating_point():
                tensor = tensor.to(device=device, dtype=dtype)
            else:
                tensor = tensor.to(device=device)
            state[key] = tensor
    for alias, key in aliases.items():
        state[alias] = state[key]
    model.load_state_dict(state, strict=True, assign=True)
