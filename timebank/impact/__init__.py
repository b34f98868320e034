"""Impact reports. `rebuild_rollups(session, timebank_id)` rebuilds the report roll-up after bulk loads."""
from timebank.impact.rollups import rebuild_rollups  # noqa: F401
