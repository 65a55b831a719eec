"""The account API's refusals (SPEC §9, §10), GatewayErrors rendered by intake like every other.

    GatewayError (errors.py)
    ├── InvalidCredentials    401 invalid_credentials (unknown name and wrong password alike)
    ├── TooManyAttempts       429 too_many_attempts (sign-in or redeem throttled; Retry-After)
    ├── OriginMismatch        403 origin_mismatch (a cookie-authenticated write without JSON or a same-origin Origin)
    ├── RegistrationClosed    403 registration_closed
    ├── IpNotAllowed          403 ip_not_allowed (a key's allow_ips)
    ├── InvalidCode           400 invalid_code (used, disabled, expired and unknown alike)
    ├── UnknownAccount        404 account_not_found
    ├── UnknownCode           404 code_not_found
    ├── CodeUsed              409 code_used (a redeemed code cannot be disabled)
    ├── AccountExists         409 account_exists
    └── UnknownChannel        404 channel_not_found (the admin's channel test)

Kept apart from errors.py so that file stays the OpenAI routes' own; the messages never echo a
password, a code or a token.
"""

from __future__ import annotations

from tokenbridge.errors import GatewayError, retry_after_header


class InvalidCredentials(GatewayError):
    """A sign-in whose name is unknown or whose password is wrong: one answer, so names cannot be probed."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_credentials"

    def __init__(self) -> None:
        super().__init__("Wrong name or password.")


class TooManyAttempts(GatewayError):
    """Too many failed sign-ins (or redeems) for this name or from this address lately."""

    status = 429
    type = "invalid_request_error"
    code = "too_many_attempts"

    def __init__(self, what: str, *, retry_in_s: float) -> None:
        retry_after = retry_after_header(retry_in_s)
        super().__init__(
            f"Too many failed {what} attempts; try again in {retry_after}s.", headers={"retry-after": retry_after}
        )


class OriginMismatch(GatewayError):
    """A write authenticated by the session cookie that a browser could have sent for another site."""

    status = 403
    type = "invalid_request_error"
    code = "origin_mismatch"


class RegistrationClosed(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "registration_closed"

    def __init__(self) -> None:
        super().__init__("Registration is closed: ask an admin for an account.")


class IpNotAllowed(GatewayError):
    """The key has an `allow_ips` list and the caller's address is not in it."""

    status = 403
    type = "invalid_request_error"
    code = "ip_not_allowed"

    def __init__(self) -> None:
        super().__init__("This API key may not be used from your address (see the key's allow_ips).")


class InvalidCode(GatewayError):
    """A code that cannot be redeemed, whatever the reason: used, disabled, expired and unknown are one answer."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_code"

    def __init__(self, param: str = "code") -> None:
        super().__init__("This code is not valid.", param=param)


class UnknownAccount(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "account_not_found"


class AccountExists(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "account_exists"


class UnknownCode(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "code_not_found"


class CodeUsed(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "code_used"


class UnknownChannel(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "channel_not_found"
