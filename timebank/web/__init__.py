"""Server-rendered pages. Templates live in the top-level templates/ folder."""
from __future__ import annotations

import importlib

from flask import Flask


def register_web(app: Flask) -> None:
    from timebank.web import views

    app.register_blueprint(views.bp)
    # Capability page blueprints, each optional until it lands.
    for name in ("people", "ledger", "exchanges", "matching", "reports"):
        try:
            module = importlib.import_module(f"timebank.web.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"timebank.web.{name}":
                raise
            continue
        app.register_blueprint(module.bp)

    from timebank.web.navigation import navigation_for

    @app.context_processor
    def _navigation():
        return {"navigation": navigation_for()}
