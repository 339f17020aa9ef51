"""The files a run writes and reads back: atomic writes, checksummed checkpoints that load
without running code, and model weights as safetensors.

A checkpoint is `CHECKPOINT_MAGIC`, the payload's sha256 and a newline, then the payload (a
`torch.save` of the training state). It is loaded with `torch.load(weights_only=True)`, which
builds tensors, numpy arrays and plain Python values and nothing else; so a crafted checkpoint
cannot run code through it. The exception is what the RL methods keep inside theirs (the SB3
agent and the training envs, as cloudpickle bytes): those are unpickled when such a run resumes
or is evaluated, so an RL checkpoint is a trusted file, like any pickle.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from baselines.errors import RunError, UsageError

CHECKPOINT_MAGIC = b"amp-checkpoint 1\n"
WEIGHTS_SUFFIX = ".safetensors"
# weights files written before safetensors (torch.save of {"format": 1, "model": state}); read
# with weights_only=True
LEGACY_WEIGHTS_SUFFIX = ".pt"

# what a checkpoint may hold besides tensors and plain values: numpy arrays and scalars (replay
# buffers, random generator states); none of these can run code when unpickled
_NUMPY_GLOBALS = [
    np.ndarray,
    np.dtype,
    np._core.multiarray._reconstruct,
    np._core.multiarray.scalar,
    *{
        type(np.dtype(t))
        for t in ("bool", "int8", "int32", "int64", "uint8", "uint32", "uint64", "float32", "float64")
    },
]


def temporary_path(path: Path) -> Path:
    """Where `path` is written before it is moved into place: per process, so two writers never
    share a half-written file."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_bytes(data: bytes, path: Path) -> None:
    """Write `path` so that a crash leaves either the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(text: str, path: Path) -> None:
    atomic_write_bytes(text.encode(), path)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256(path: Path) -> str:
    return sha256_bytes(Path(path).read_bytes())


# -- checkpoints ---------------------------------------------------------------------------------------
def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write a training state with its checksum, atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    atomic_write_bytes(CHECKPOINT_MAGIC + sha256_bytes(payload).encode() + b"\n" + payload, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`. A file that is missing, truncated, altered or
    of another format raises `RunError` with one line naming it and what to do."""
    path = Path(path)
    advice = "start the run over with --overwrite, or put back an intact copy of the file"
    try:
        data = path.read_bytes()
    except OSError as error:
        raise RunError(f"cannot read checkpoint {path}: {error.strerror or error}") from None
    if not data.startswith(CHECKPOINT_MAGIC):
        what = "empty" if not data else "not a checkpoint of this version of amp-envs"
        raise RunError(f"checkpoint {path} is corrupt ({what}): {advice}")
    header_end = data.find(b"\n", len(CHECKPOINT_MAGIC))
    recorded = data[len(CHECKPOINT_MAGIC) : header_end].decode(errors="replace")
    payload = data[header_end + 1 :]
    if header_end < 0 or sha256_bytes(payload) != recorded:
        raise RunError(
            f"checkpoint {path} is corrupt (its checksum does not match: truncated or altered): {advice}"
        )
    try:
        with torch.serialization.safe_globals(_NUMPY_GLOBALS):
            state = torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as error:  # a payload with a valid checksum that torch still refuses
        raise RunError(f"checkpoint {path} cannot be loaded ({type(error).__name__}): {advice}") from None
    if not isinstance(state, dict):
        raise RunError(f"checkpoint {path} does not hold a training state: {advice}")
    return state


# -- weights -------------------------------------------------------------------------------------------
def save_weights(model: torch.nn.Module, path: Path) -> str:
    """Save the model's parameters and buffers alone, as float32 safetensors (no optimiser, no
    replay buffer, no pickle); returns the file's sha256."""
    state = {
        k: v.detach().to("cpu", torch.float32).clone().contiguous() for k, v in model.state_dict().items()
    }
    data = safetensors.torch.save(state, metadata={"format": "amp-weights 1"})
    atomic_write_bytes(data, path)
    return sha256_bytes(data)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A weights file's tensors (safetensors, or the older `.pt` read with weights_only=True);
    `UsageError` if it cannot be read."""
    path = Path(path)
    try:
        if path.suffix == LEGACY_WEIGHTS_SUFFIX:
            state = torch.load(path, weights_only=True, map_location="cpu")["model"]
        else:
            state = safetensors.torch.load_file(path)
    except Exception as error:
        raise UsageError(f"weights file {path} cannot be loaded ({type(error).__name__}: {error})") from None
    return state
