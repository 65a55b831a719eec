"""Validate bodies against OpenAI's own schemas (tests/openai-schemas.json, MIT, see its LICENSE file).

The Responses API's schemas (`Response`, every stream event) are in tests/openai-responses-schemas.json,
taken whole from the same document with everything they reference (its `x-source` says how).
"""

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
RESPONSES_SCHEMAS = Path(__file__).with_name("openai-responses-schemas.json")


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


@cache
def responses_validator(name: str) -> Draft202012Validator:
    """A schema of the Responses API: `Response`, `ResponseStreamEvent`, `ResponseErrorEvent`, ..."""
    doc = json.loads(RESPONSES_SCHEMAS.read_text())
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry = Registry().with_resource("urn:openai-responses", resource)  # type: ignore[var-annotated]
    return Draft202012Validator({"$ref": f"urn:openai-responses#/components/schemas/{name}"}, registry=registry)


def validate_responses(name: str, body: Any) -> Any:
    """As `validate`, against the Responses API's schemas."""
    responses_validator(name).validate(body)
    return body


@cache
def _event_schemas() -> dict[str, str]:
    """Each stream event's `type` -> the name of its schema (ResponseStreamEvent's discriminator)."""
    schemas = json.loads(RESPONSES_SCHEMAS.read_text())["components"]["schemas"]
    names = [ref["$ref"].rsplit("/", 1)[-1] for ref in schemas["ResponseStreamEvent"]["anyOf"]]
    return {kind: name for name in names for kind in schemas[name]["properties"]["type"].get("enum", [])}


def validate_event(event: Any) -> Any:
    """A Responses stream event against the schema its `type` names (an unknown type fails)."""
    return validate_responses(_event_schemas()[event["type"]], event)
