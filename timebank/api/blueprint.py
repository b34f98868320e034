"""The API's Blueprint: flask-smorest's, with a webargs parser that makes each argument schema once."""
from __future__ import annotations

import flask_smorest
import marshmallow as ma
from webargs.flaskparser import FlaskParser


class SchemaOnceParser(FlaskParser):
    """webargs makes a new instance of a Schema class given to @blp.arguments on every request. A schema keeps
    no state between loads (ours have no hooks that store any), so one instance per class and process does."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._schemas: dict[type, ma.Schema] = {}

    def _get_schema(self, argmap, req) -> ma.Schema:
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            schema = self._schemas.get(argmap)
            if schema is None:
                schema = self._schemas[argmap] = argmap()
            return schema
        return super()._get_schema(argmap, req)


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint (documented way to change its parser: override ARGUMENTS_PARSER)."""

    ARGUMENTS_PARSER = SchemaOnceParser()
