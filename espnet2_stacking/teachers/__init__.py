"""Teachers: one frozen interface (AbsTeacher) over fairseq, unilm WavLM, Hugging Face,
ESPnet SSL and tiny random models; ``load_teacher(spec)`` reads them all."""

from espnet2_stacking.teachers.abs_teacher import (
    HOP,
    WINDOW,
    AbsTeacher,
    num_frames,
    num_samples_for,
    select_states,
)
from espnet2_stacking.teachers.load import load_teacher

__all__ = [
    "HOP",
    "WINDOW",
    "AbsTeacher",
    "load_teacher",
    "num_frames",
    "num_samples_for",
    "select_states",
]
