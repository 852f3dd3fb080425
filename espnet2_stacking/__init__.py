"""espnet2_stacking."""
