"""The stacking-aware student encoder and optimizer-state carry-over at a growth."""

from espnet2_stacking.encoder.optimizer_state import transfer_optimizer_state
from espnet2_stacking.encoder.stacking_encoder import StackingTransformerEncoder

__all__ = ["StackingTransformerEncoder", "transfer_optimizer_state"]
