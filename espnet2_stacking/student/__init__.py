"""The student: the stacking-aware encoder, the distillation model, its loss and collate."""
