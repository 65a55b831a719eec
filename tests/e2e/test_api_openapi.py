"""GET /api/openapi.json: a valid OpenAPI 3.1 document naming exactly the routes served; and no
secret in any account-API or self-service answer but the create answers that hand a key or codes out."""

from __future__ import annotations

import re

from openapi_spec_validator import validate
from starlette.routing import Route

from tests.conftest import ADMIN_TOKEN, UPSTREAM_SECRET, Gateway
from tokenbridge.app import create_app
from tokenbridge.settings import load_settings

MESSAGES = [{"role": "user", "content": "hi"}]
OURS = re.compile(r"^/(api/|v1/me$|v1/dashboard/)")


def test_openapi_document_is_valid_and_names_every_served_route(admin_gateway: Gateway) -> None:
    answer = admin_gateway.api("GET", "/api/openapi.json", token=None)  # no auth: it holds no data
    assert answer.status_code == 200
    document = answer.json()
    validate(document)  # raises with the path of the first problem
    assert document["openapi"].startswith("3.1")
    served = {
        (route.path, method.lower())
        for route in create_app(load_settings(admin_gateway.config)).routes
        if isinstance(route, Route) and OURS.match(route.path)
        for method in route.methods or ()
        if method != "HEAD"
    }
    described = {
        (path, method) for path, item in document["paths"].items() for method in item if method != "parameters"
    }
    assert served == described
    assert len(served) == 30  # 28, and /api/models, /api/channels/{name}/test


def test_no_secret_in_any_answer_but_the_create_answer(admin_gateway: Gateway) -> None:
    created = admin_gateway.api("POST", "/api/keys", json={"name": "secretive", "credit_usd": "1"})
    secret, key_id = created.json()["key"], created.json()["id"]
    other = admin_gateway.create_key("secretive-other")
    [other_id] = [k["id"] for k in admin_gateway.api("GET", "/api/keys?account=secretive-other").json()["data"]]
    codes = admin_gateway.api("POST", "/api/codes", json={"amount_usd": "1", "count": 2}).json()["data"]
    admin_gateway.client(secret).chat.completions.create(model="fake-ok", messages=MESSAGES)
    answers = []
    for token in (ADMIN_TOKEN, secret):
        for method, path, body in [
            ("GET", "/api/openapi.json", None),
            ("GET", "/api/me", None),
            ("GET", "/api/keys", None),
            ("GET", f"/api/keys/{key_id}", None),
            ("PATCH", f"/api/keys/{key_id}", {"rpm": 100}),
            ("POST", "/api/accounts/secretive/credit", {"amount_usd": "1"}),
            ("GET", "/api/accounts", None),
            ("GET", "/api/accounts/secretive", None),
            ("GET", "/api/ledger?account=secretive", None),
            ("GET", "/api/codes", None),
            ("POST", f"/api/codes/{codes[0]['id']}/disable", None),
            ("POST", "/api/redeem", {"code": codes[1]["code"]}),
            ("GET", "/api/pricing", None),
            ("GET", "/api/usage", None),
            ("GET", "/api/usage?format=csv", None),
            ("GET", "/api/usage/summary?by=key&format=csv", None),
            ("GET", "/api/usage/series", None),
            ("GET", "/api/channels", None),
            ("POST", "/api/keys", {"name": "secretive"}),
            ("GET", "/v1/me", None),
            ("GET", "/v1/dashboard/billing/subscription", None),
            ("GET", "/v1/dashboard/billing/usage", None),
            ("POST", f"/api/keys/{other_id}/revoke", None),
        ]:
            answers.append(admin_gateway.api(method, path, token=token, json=body))
    answers.append(admin_gateway.api("GET", "/api/keys", token=ADMIN_TOKEN + "-wrong"))
    assert {a.status_code for a in answers} >= {200, 401, 403, 409}
    for answer in answers:
        seen = answer.text + str(answer.headers)
        for hidden in (
            ADMIN_TOKEN,
            secret,
            other,
            UPSTREAM_SECRET,
            secret[12:],
            other[12:],
            *(c["code"] for c in codes),
        ):
            assert hidden not in seen, (answer.request.method, answer.request.url.path)
