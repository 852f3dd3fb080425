"""Teachers: one interface (AbsTeacher) over fairseq, unilm, Hugging Face and ESPnet models."""

from espnet2_stacking.teachers.abs_teacher import (
    AbsTeacher, num_frames, num_samples_for, select_states,
)
from espnet2_stacking.teachers.load import load_teacher

__all__ = ["AbsTeacher", "load_teacher", "num_frames", "num_samples_for", "select_states"]
