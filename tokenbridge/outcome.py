"""How a request ended, worked out in one place: the usage row (quota), the metrics and the access
line (observe) all say what `outcome(call, failure)` says.

Two facts come from the meter, which taps the answer: `call.complete`, the marker that the answer is
whole (written just before the message that completes it goes out: `data: [DONE]`, or the last byte
of a JSON body's Content-Length; a client stops reading there, so quota settles, observe records and
the proxy stops watching for a caller who leaves, on it), and `call.end_reason`, set only when the
answer was cut short (`failure_reason`), or by quota when its charge could not be written. The rest
follows here, purely from the Call and what the request failed with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tokenbridge.errors import ClientGone, GatewayError, UpstreamTimeout

if TYPE_CHECKING:
    from tokenbridge.call import Call
    from tokenbridge.money import Usage

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a caller that left before any answer went out


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int  # what the caller got; 499 when it got nothing
    end_reason: str  # done | client_gone | upstream_error | timeout | rejected | store_error
    error: str  # why it failed, for the usage row (never a secret); "" when it did not
    usage: Usage | None  # what the meter read or estimated; quota decides whether it is billed


def failure_reason(failure: BaseException) -> tuple[str, str]:
    """The meter's (end_reason, error) for an answer cut short by `failure`."""
    if isinstance(failure, ClientGone):
        return "client_gone", ""
    if isinstance(failure, UpstreamTimeout):
        return "timeout", failure.message
    if isinstance(failure, GatewayError):
        return "upstream_error", failure.message
    return "upstream_error", f"{type(failure).__name__} in the gateway"


def outcome(call: Call, failure: BaseException | None, *, sent: int = 0) -> Outcome:
    """How `call` ended. `failure` is what the stages inside raised (None: they returned); `sent` is the
    status that went out, where it is known (observe, outside intake, sees every route's), else 0.

    A caller that got nothing of the upstream's answer got the error instead: its status, or 499 if
    it left, or a bare 500 for a bug in the gateway.
    """
    status, error = sent or call.status, call.error
    if not sent and failure is not None and not call.delivered:
        status = 0  # the caller got the error, not the upstream's status
    if not status:
        if failure is None or isinstance(failure, ClientGone):
            status, error = CLIENT_CLOSED_REQUEST, error or "the caller disconnected"
        elif isinstance(failure, GatewayError):
            status, error = failure.status, failure.message
        else:
            status, error = 500, f"{type(failure).__name__} in the gateway"
    return Outcome(status, call.end_reason or _plain_end(call, failure, status), error, call.usage)


def _plain_end(call: Call, failure: BaseException | None, status: int) -> str:
    """The end reason of a request nothing cut short, or that never reached the meter."""
    if call.complete:
        return "done"
    if status == CLIENT_CLOSED_REQUEST:
        return "client_gone"
    return "done" if status < 400 and failure is None else "rejected"
