"""Upstreams: every frozen speech model behind one interface (AbsUpstream).

Teachers (fairseq HuBERT / wav2vec 2.0, unilm WavLM, Hugging Face, ESPnet SSL), students
exported by this package, and randomly initialised models for tests; ``load_upstream(spec)``
reads them all.
"""

from espnet2_stacking.upstreams.abs_upstream import AbsUpstream, select_states
from espnet2_stacking.upstreams.load import load_upstream

__all__ = ["AbsUpstream", "load_upstream", "select_states"]
