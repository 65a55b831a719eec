"""Token Bridge: a small, exact, fast OpenAI-compatible API gateway."""

__version__ = "0.1.0"
