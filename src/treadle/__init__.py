"""Treadle: an LLM serving and operations platform."""

from treadle.config import EngineConfig
from treadle.sampling_params import SamplingParams

__version__ = "0.1.0"
__all__ = ["LLM", "EngineConfig", "SamplingParams", "__version__"]


def __getattr__(name: str):  # noqa: ANN202 - lazy import keeps `import treadle` light
    if name == "LLM":
        from treadle.llm import LLM

        return LLM
    raise AttributeError(name)
