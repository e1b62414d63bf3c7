"""The model zoo. Importing this package registers every model."""

import trainers.fusion.attention
import trainers.models.branched  # noqa: F401
from trainers.models import hybrid_attention, image, video3d  # noqa: F401
