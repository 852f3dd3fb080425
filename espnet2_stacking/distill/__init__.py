"""Distillation: the student model, its losses and the frame-aligned collate."""
