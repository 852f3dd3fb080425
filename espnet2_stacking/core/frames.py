"""Frame geometry shared by every teacher, the student and the data checks.

All audio is 16 kHz mono. The wav2vec 2.0 / HuBERT CNN (and the student's, which has its
shape) sees ``WINDOW`` samples per frame and moves ``HOP`` samples between frames, so
``num_frames(n) = 1 + (n - WINDOW) // HOP`` for n >= WINDOW samples, else 0. Some teacher
implementations (older fairseq) give one frame less: consumers trim to the shorter.
"""

SAMPLE_RATE = 16000
WINDOW = 400  # samples in the receptive field of one frame
HOP = 320  # samples between frames (20 ms at 16 kHz)


def num_frames(num_samples: int) -> int:
    """Frames of the wav2vec2 CNN for ``num_samples`` samples (0 below one window)."""
    return 0 if num_samples < WINDOW else 1 + (num_samples - WINDOW) // HOP


def num_samples_for(frames: int) -> int:
    """The fewest samples that give ``frames`` frames."""
    return 0 if frames <= 0 else HOP * (frames - 1) + WINDOW
