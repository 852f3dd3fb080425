"""The stacking-aware student encoder and optimizer-state carry-over at a growth."""
