"""Sizes the gateway bounds what it reads by, where more than one room must agree on them.

A JSON answer is read whole only up to MAX_JSON_BYTES: the meter reads its usage, the shape stage
translates it for `/v1/completions`, and the proxy parses it before its first byte goes out (a 200
that is no answer fails over). Past it the meter passes the bytes on unread but for the usage that
ends them (embeddings.py: a large embeddings batch), and the shape stage refuses: the same figure
everywhere, so billing never depends on the route.
"""

from __future__ import annotations

MAX_JSON_BYTES = 8 << 20  # a JSON answer larger than this is passed on but not read for usage
