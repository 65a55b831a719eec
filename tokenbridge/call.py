"""Call: one request as it flows through the stages, stored once at `scope["tokenbridge.call"]`.

Each field has exactly one writer, named in its comment (mitmproxy's Flow style). A stage reads what
outer stages wrote and writes only its own fields; nobody re-reads `receive` for the body.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenbridge.asgi import Scope
    from tokenbridge.money import Usage
    from tokenbridge.settings import Channel, Settings
    from tokenbridge.store.keys import KeyRecord

SCOPE_KEY = "tokenbridge.call"


@dataclass(slots=True)
class Call:
    """The request as it flows. Fields are grouped by the stage that writes them."""

    # intake: set once when the request arrives
    request_id: str  # ours, always: the hold's and the usage row's key, and the id our log lines name
    settings: Settings  # the config this request runs on to its end, even if a reload swaps it
    started: float = field(default_factory=time.perf_counter)
    created_at: float = field(default_factory=time.time)
    delivered: int = 0  # body bytes that went out to the caller (intake counts them as they leave)
    caller_request_id: str = ""  # the caller's own X-Request-ID (when usable), kept for tracing only
    # body: the parsed request
    route: str = ""  # "chat" | "completions" | "embeddings" | ... (routing.ROUTES); set first, so errors take its shape
    body: dict[str, Any] = field(default_factory=dict)
    raw_body: bytes = b""  # `body` as JSON (re-serialised, so exactly what was checked), the bytes forwarded
    model: str = ""
    stream: bool = False
    # auth (and the admin and self-service routes, which authenticate a key holder themselves)
    key: KeyRecord | None = None
    # quota: nano-USD held for the worst case; 0 when nothing is held
    hold: int = 0
    held: bool = False  # a hold was taken (of 0 for a free model, too): quota writes the usage row
    cost: int = 0  # nano-USD charged when the hold settled (the usage row's cost)
    # mapping: channels to try, in order
    candidates: tuple[Channel, ...] = ()
    # shape: the body each wire among the candidates is sent (adapters.py), the caller's own where it passes through
    upstream_bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    # proxy: the channel that answered (or failed last), the wire it speaks and the body it was sent,
    channel: Channel | None = None
    wire: str = ""  # "chat" | "completions" | ...: the shape of what went upstream and of what came back
    upstream_body: dict[str, Any] = field(default_factory=dict)
    # ... the model name it was sent, attempts made,
    upstream_model: str = ""
    attempts: int = 0
    # ... and a JSON answer's body, parsed once when the proxy checked it (the meter reads its usage there)
    answer: dict[str, Any] | None = None
    # meter: what came back
    status: int = 0
    ttfb: float | None = None  # seconds from arrival to the first response byte
    usage: Usage | None = None
    usage_source: str = ""  # upstream | estimated; "" while there is no usage
    complete: bool = False  # the answer is whole: set just before the message that completes it (outcome.py)
    end_reason: str = ""  # what cut the answer short: client_gone | upstream_error | timeout; quota: store_error
    error: str = ""  # why the request failed, for the usage row (never a secret)


def caller_wants_usage(body: dict[str, Any]) -> bool:
    """Did the caller ask for the usage chunk of a stream?"""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def get_call(scope: Scope) -> Call:
    """The Call intake stored; a stage mounted outside intake is a wiring bug."""
    call: Call = scope[SCOPE_KEY]
    return call
