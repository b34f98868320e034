"""GET /healthz: is the service up and does the database answer?"""
from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from timebank.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure means "not healthy", never a 500
        current_app.logger.warning("health check: database unavailable: %s", type(exc).__name__)
        db.session.rollback()
        return jsonify(status="unavailable", database="unavailable",
                       reason=f"database did not answer ({type(exc).__name__})"), 503
    return jsonify(status="ok", database="ok")
