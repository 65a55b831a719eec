"""config.toml edited under a running `tokenbridge serve`: SIGHUP and file changes swap channels for
new requests while streams in flight finish on the old ones; a broken edit keeps the old config."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from tests.conftest import PRICE, FakeUpstream, Gateway
from tests.e2e.test_chat import MESSAGES
from tests.e2e.test_first_run import Served
from tests.fakes.server import free_port
from tests.fakes.upstream import TEXT

SECRETS = {"old": "sk-OLD-channel-SECRET-111", "new": "sk-NEW-channel-SECRET-222", "newer": "sk-NEWER-SECRET-333"}


def config(upstream: str, name: str, upstream_model: str) -> str:
    prices = "".join(f"{term} = {value}\n" for term, value in PRICE.items())
    return f"""
[server]
database = "reload.db"

[[channels]]
name = "{name}"
base_url = "{upstream}/v1"
api_key = "{SECRETS[name]}"
models = ["live"]
model_map = {{ "live" = "{upstream_model}" }}

[models."live"]
{prices}"""


def test_reload_swaps_channels_for_new_requests_and_refuses_a_broken_edit(
    upstream: tuple[FakeUpstream, str], tmp_path: Path
) -> None:
    fake, url = upstream
    path = tmp_path / "config.toml"
    path.write_text(config(url, "old", "fake-hold"))
    port = free_port()
    served = Served(path, port)
    try:
        served.until(r"Uvicorn running on")
        gateway = Gateway(f"http://127.0.0.1:{port}", path, fake)
        client = gateway.client(gateway.create_key("reload", credit_usd="5"))

        fake.arm()
        stream = client.chat.completions.create(model="live", messages=MESSAGES, stream=True)
        first = [next(stream) for _ in range(4)]  # role + three pieces, then the upstream holds it open

        path.write_text(config(url, "new", "fake-ok"))
        served.process.send_signal(signal.SIGHUP)
        served.until(r"config reloaded \((SIGHUP|file changed)\): 1 channels")
        assert client.chat.completions.create(model="live", messages=MESSAGES).choices[0].message.content == TEXT

        finishing = threading.Thread(target=lambda: first.extend(stream))
        finishing.start()
        fake.release()
        finishing.join(30)
        assert "".join(c.choices[0].delta.content or "" for c in first if c.choices) == TEXT

        path.write_text(config(url, "new", "fake-ok").replace('models = ["live"]', "models = 7"))
        served.process.send_signal(signal.SIGHUP)
        refused = served.until(r"config reload \((SIGHUP|file changed)\) refused.*")
        assert "channels[0] (new).models" in refused[0]
        assert client.chat.completions.create(model="live", messages=MESSAGES).choices

        path.write_text(config(url, "newer", "fake-ok"))
        served.until(r"config reloaded \(file changed\)")
        client.chat.completions.create(model="live", messages=MESSAGES)

        rows = gateway.usage("reload")
        assert [r["channel"] for r in rows] == ["new", "old", "new", "newer"]  # in the order they finished
        assert rows[1]["end_reason"] == "done" and rows[1]["completion_tokens"] == 3
    finally:
        served.stop()
    log = "".join(served.seen)
    leaked = [name for name, secret in SECRETS.items() if secret in log]
    assert leaked == [], f"channel secrets in the log: {leaked}"
