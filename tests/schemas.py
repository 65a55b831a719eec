"""Validate bodies against OpenAI's own schemas (tests/openai-schemas.json, MIT, see its LICENSE file)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMAS = Path(__file__).with_name("openai-schemas.json")


@cache
def _registry() -> Registry:  # type: ignore[type-arg]
    doc = json.loads(SCHEMAS.read_text())
    return Registry().with_resource("urn:openai", Resource.from_contents(doc, default_specification=DRAFT202012))


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"urn:openai#/components/schemas/{name}"}, registry=_registry())


@cache
def completion_chunk_validator() -> Draft202012Validator:
    """CreateCompletionResponse, which OpenAI documents as the shape of streamed chunks too, with
    the one thing OpenAI's own completion streams do differently: `finish_reason` is null on every
    chunk before the last. Nothing else is relaxed."""
    doc = json.loads(SCHEMAS.read_text())
    schema = copy.deepcopy(doc["components"]["schemas"]["CreateCompletionResponse"])
    choice = schema["properties"]["choices"]["items"]["properties"]
    choice["finish_reason"] = {"anyOf": [choice["finish_reason"], {"type": "null"}]}
    schema["properties"]["usage"] = {"$ref": "urn:openai#/components/schemas/CompletionUsage"}  # was relative
    return Draft202012Validator(schema, registry=_registry())


def validate(name: str, body: Any) -> Any:
    """Raise jsonschema.ValidationError unless `body` is a valid `name`; return it for chaining."""
    validator(name).validate(body)
    return body
