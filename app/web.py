"""Helpers shared by the blueprints."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.json.provider import DefaultJSONProvider

from app.context import Context
from app.pipeline.rules import mask_all


def context() -> Context:
    """The Conveyor context of the running app."""
    return current_app.extensions["conveyor"]


class MaskedJSONProvider(DefaultJSONProvider):
    """The app's JSON: every string of every answer masked (SPEC §7), whichever route made
    it, so that no route can forget to."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """`obj` as JSON, with `mask` applied to each string in it."""
        secrets = self._app.extensions["conveyor"].secrets()  # type: ignore[attr-defined]
        return super().dumps(mask_all(obj, secrets), **kwargs)
