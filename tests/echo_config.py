"""Settings with echo channels only, for tests below the whole gateway (stages, the proxy, transports)."""

from __future__ import annotations

from pathlib import Path

from tokenbridge.settings import Settings, parse_settings

MODEL = "m"


def echo_settings(*names: str, completions: str = "chat", directory: Path = Path("/tmp")) -> Settings:
    """One echo channel per name (default: one, "demo"), each serving MODEL, priced at 1 and 2 USD per 1M."""
    channels = "".join(
        f'[[channels]]\nname = "{name}"\nkind = "echo"\nmodels = ["{MODEL}"]\ncompletions = "{completions}"\n\n'
        for name in names or ("demo",)
    )
    text = f'[server]\ndatabase = "t.db"\n\n{channels}[models.{MODEL}]\ninput = 1.0\noutput = 2.0\n'
    return parse_settings(text, directory / "config.toml", environ={})
