"""Entry points: python -m espnet2_stacking.bin.<name>."""
