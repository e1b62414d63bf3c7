"""The model zoo. Importing this package registers every model."""

import trainers.fusion.attention  # noqa: F401  (attention-fusion trains like any model)
import trainers.models.branched  # noqa: F401
from trainers.models import hybrid_attention, video3d  # noqa: F401
