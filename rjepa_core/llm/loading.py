"""Loading a student LLM from an `LLMSpec`: source resolution, device/dtype choice, quantization.

    >>> from rjepa_core.llm.loading import load_model
    >>> tokenizer, model, device = load_model(spec, device="auto")

Sources: "embedded:smollm2" / "embedded:minilm" / "embedded:gemma3" (packaged models; Gemma is the
opt-in extra `.[gemma]`), a local folder, a .gguf file,
or a Hugging Face hub id (read from the local cache only when HF_HUB_OFFLINE is set).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from rjepa_core.llm.embedded import gemma3_dir, minilm_dir, smollm2_dir
from rjepa_core.llm.registry import LLMSpec

_TORCH_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}
# quantization → (python module of a backend that transformers can use, install hint)
_QUANT_BACKENDS: dict[str, tuple[tuple[str, ...], str]] = {
    "awq": (
        ("gptqmodel", "awq"),
        "`pip install gptqmodel` (transformers 5 loads AWQ through it) or `pip install .[awq]`",
    ),
    "gptq": (("gptqmodel",), "`pip install gptqmodel`"),
    "bnb-4bit": (("bitsandbytes",), "`pip install bitsandbytes` (needs CUDA)"),
    "bnb-8bit": (("bitsandbytes",), "`pip install bitsandbytes` (needs CUDA)"),
}


def pick_device(device: str = "auto") -> str:
    """Device for "auto": cuda, then mps, then cpu."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(spec_dtype: str, device: str, override: str | None = None):
    """torch dtype: explicit override, else the spec's, else bf16 on CUDA and fp32 elsewhere."""
    import torch

    name = override or spec_dtype
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if name not in _TORCH_DTYPES:
        raise ValueError(f"dtype {name!r} is not one of auto, {', '.join(_TORCH_DTYPES)}")
    return getattr(torch, _TORCH_DTYPES[name])


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_source(spec: LLMSpec) -> tuple[str, dict[str, Any]]:
    """(path or hub id, extra from_pretrained kwargs) for the spec's source."""
    if spec.source == "embedded:smollm2":
        return str(smollm2_dir()), {}
    if spec.source == "embedded:minilm":
        return str(minilm_dir()), {}
    if spec.source == "embedded:gemma3":
        return str(gemma3_dir()), {}
    src = Path(spec.source).expanduser()
    if spec.source.endswith(".gguf"):
        if not src.is_file():
            raise FileNotFoundError(f"llm {spec.llm_tag!r}: GGUF file {src} does not exist")
        return str(src.parent), {"gguf_file": src.name}
    extra: dict[str, Any] = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
    if src.is_dir():
        return str(src), extra
    if spec.source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"llm {spec.llm_tag!r}: local folder {src} does not exist")
    if _offline():
        extra["local_files_only"] = True
    return spec.source, extra


def quantization_config(spec: LLMSpec):
    """transformers quantization config for bitsandbytes specs; AWQ/GPTQ read theirs from the checkpoint.

    Raises ImportError naming what to install when the backend is missing.
    """
    if spec.quantization is None:
        return None
    modules, hint = _QUANT_BACKENDS[spec.quantization]
    if not any(importlib.util.find_spec(m) is not None for m in modules):
        raise ImportError(
            f"llm {spec.llm_tag!r} is quantized with {spec.quantization} but no backend "
            f"({' or '.join(modules)}) is installed: install it with {hint}"
        )
    if spec.quantization.startswith("bnb-"):
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(
            load_in_4bit=spec.quantization == "bnb-4bit", load_in_8bit=spec.quantization == "bnb-8bit"
        )
    return None  # AWQ / GPTQ checkpoints carry their quantization_config in config.json


def load_model(spec: LLMSpec, device: str = "auto", dtype: str | None = None):
    """(tokenizer, model in eval mode, device) for a spec; checks the declared hidden size."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    device = pick_device(device)
    torch_dtype = pick_dtype(spec.dtype, device, dtype)
    qconfig = quantization_config(spec)
    where, extra = resolve_source(spec)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, **extra}
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **extra)
        model_cls = AutoModel if spec.kind == "encoder" else AutoModelForCausalLM
        model = model_cls.from_pretrained(where, **kwargs)
    except OSError as exc:
        raise OSError(
            f"llm {spec.llm_tag!r}: could not load {where!r} ({exc}). For a hub id, download it first "
            f"(`hf download {where}`) on a machine with network, or point `source` at a local folder"
        ) from exc
    if spec.quantization is None and device != "cpu":
        model = model.to(device)
    model.eval()
    hidden = int(model.config.hidden_size)
    if spec.hidden_size is not None and spec.hidden_size != hidden:
        raise ValueError(
            f"llm {spec.llm_tag!r} declares hidden_size {spec.hidden_size} but {where} has {hidden}: "
            "fix hidden_size in its registry YAML"
        )
    return tokenizer, model, device


def decoder_layers(model, kind: str = "causal"):
    """The ModuleList of transformer blocks whose outputs are the extractable hidden states."""
    if kind == "encoder":
        enc = getattr(model, "encoder", None) or getattr(getattr(model, "bert", None), "encoder", None)
        if enc is not None and hasattr(enc, "layer"):
            return enc.layer
    candidates = []
    if hasattr(model, "get_decoder"):
        try:
            candidates.append(model.get_decoder())
        except (AttributeError, NotImplementedError):
            pass
    candidates += [getattr(model, "model", None), getattr(model, "transformer", None), model]
    for c in candidates:
        if c is None:
            continue
        for name in ("layers", "h", "blocks"):
            layers = getattr(c, name, None)
            if layers is not None and hasattr(layers, "__len__") and len(layers) > 0:
                return layers
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__}: unsupported architecture")
