"""Knowledge for label extension and explanation synthesis: prompts, the LLM client and its
response cache, the offline llama.cpp server, parsing/alignment/normalisation, offline taggers.

The names below are imported on first use, so that ``python -m knowfree llm assemble`` and the
taggers work in an environment without the ``openai`` package.
"""
import importlib

_EXPORTS = {
    "load_template": "prompts", "Template": "prompts", "KINDS": "prompts", "LANGS": "prompts",
    "LLMClient": "llm", "Request": "llm", "Response": "llm", "Failure": "llm", "Sampling": "llm",
    "Usage": "llm", "PreflightError": "llm",
    "ResponseCache": "cache", "CacheMissError": "cache", "request_key": "cache",
    "LlamaServer": "server", "assemble_gguf": "server", "MODELS": "server",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
