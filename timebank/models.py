"""Import every model so Alembic and create_all see the whole schema."""
from timebank.community.models import *  # noqa: F401,F403
from timebank.exchanges.models import *  # noqa: F401,F403
from timebank.ledger.models import *  # noqa: F401,F403
from timebank.matching.models import *  # noqa: F401,F403
