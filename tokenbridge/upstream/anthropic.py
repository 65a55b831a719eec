"""The `anthropic` transport: Anthropic's HTTP API (base_url `https://api.anthropic.com/v1`).

The same aiohttp client as the `openai` kind (http.py); what differs is how a request says who
sends it: the channel's secret goes as `x-api-key`, never as a bearer token, and every request
carries the `anthropic-version` Anthropic requires. A caller of `/v1/messages` that sends its own
`anthropic-version` or `anthropic-beta` has them forwarded instead (adapters.py names them), so a
client that needs a newer version or a beta feature gets it.
"""

from __future__ import annotations

from typing import ClassVar

from tokenbridge.settings import Channel
from tokenbridge.upstream.http import HttpTransport

ANTHROPIC_VERSION = "2023-06-01"  # the version every Anthropic API key accepts; a caller's own wins


class AnthropicTransport(HttpTransport):
    """An HttpTransport that authenticates the Anthropic way and speaks the Messages API natively."""

    native_completions: ClassVar[bool] = False  # Anthropic has no OpenAI `/completions`
    native_messages: ClassVar[bool] = True
    native_responses: ClassVar[bool] = False  # nor OpenAI's /responses (KIND_ROUTES gives it no responses route)

    @staticmethod
    def channel_headers(channel: Channel) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if channel.api_key:
            headers["x-api-key"] = channel.api_key
        return headers
