"""Helpers shared by the blueprints."""

from __future__ import annotations

from flask import current_app

from app.context import Context


def context() -> Context:
    """The Conveyor context of the running app."""
    return current_app.extensions["conveyor"]
