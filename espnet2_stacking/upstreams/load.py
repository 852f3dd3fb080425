"""``load_upstream(spec)``: every teacher format behind one call.

Specs (detected in this order):
    random:<hubert|wav2vec2|wavlm>[?key=value&...]
        a tiny randomly initialised teacher (tests, smoke runs); keys in random_teacher.py
    fbank[?n_mels=N]
        log-mel filterbanks, no layers (a downstream baseline, not a teacher to distil)
    <dir> holding config.json
        a Hugging Face HubertModel / WavLMModel / Wav2Vec2Model, read offline
    <file>.pt
        a fairseq HuBERT / wav2vec 2.0 checkpoint (config in 'cfg' or 'args') or a unilm
        WavLM checkpoint (flat 'cfg'), told apart by their contents; fairseq not needed
    <file>.pth with config.yaml in the same directory
        an ESPnet SSL-task model (e.g. an exported stacking_transformer student)
    <file>.pth with torchaudio_config.json in the same directory
        a torchaudio wav2vec2_model state dict (e.g. an exported hubert student)

Example::

    teacher = load_upstream("/models/hubert_base_ls960.pt", dtype="bfloat16", device="cuda")
    states, frame_lengths = teacher.extract_features(wavs, lengths, num_layers=12)
"""

from pathlib import Path

from typeguard import typechecked

from espnet2_stacking.upstreams.abs_upstream import DTYPES, NORMALIZATIONS, AbsUpstream

TORCHAUDIO_CONFIG = "torchaudio_config.json"  # as torchaudio_model.TORCHAUDIO_CONFIG

SUPPORTED = (
    "random:<hubert|wav2vec2|wavlm>[?key=value&...] (a tiny random teacher); "
    "fbank[?n_mels=N] (log-mel filterbanks: a downstream baseline); "
    "a directory with config.json (Hugging Face HubertModel / WavLMModel / Wav2Vec2Model); "
    "a .pt file (fairseq HuBERT / wav2vec 2.0, unilm WavLM); "
    "a .pth file with config.yaml beside it (ESPnet SSL model); "
    "a .pth file with torchaudio_config.json beside it (torchaudio wav2vec2_model state dict)"
)


@typechecked
def names_a_path(spec: str) -> bool:
    """Whether ``spec`` is a file or directory for load_upstream (all but random: and fbank)."""
    return not (spec.startswith("random:") or spec == "fbank" or spec.startswith("fbank?"))


def load_upstream(spec: str, *, dtype: str = "float32", device: str = "cpu",
                 normalize: str = "none") -> AbsUpstream:
    """A frozen teacher from ``spec`` (see the module docstring), on ``device``.

    Args:
        spec: a ``random:`` spec or a path.
        dtype: what the teacher computes in: float32, bfloat16 or float16 (states are
            returned in float32).
        device: e.g. "cpu", "cuda", "cuda:1".
        normalize: "none" or "layer_norm" (per-frame, no affine) on every returned state,
            e.g. for high-norm pre-LN teachers.
    """
    # Fail on options before any slow loading.
    if dtype not in DTYPES:
        raise ValueError(f"teacher dtype '{dtype}' is not one of {tuple(DTYPES)}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"teacher normalize '{normalize}' is not one of {NORMALIZATIONS}")
    if spec.startswith("random:"):
        from espnet2_stacking.upstreams.random_init import load_random_upstream

        return load_random_upstream(spec, dtype=dtype, normalize=normalize).to(device)
    if not names_a_path(spec):
        from espnet2_stacking.upstreams.fbank import load_fbank_upstream

        return load_fbank_upstream(spec, dtype=dtype, normalize=normalize).to(device)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(
            f"teacher '{spec}' does not exist; a teacher is one of: {SUPPORTED}"
        )
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ValueError(
                f"teacher '{spec}': a directory without config.json is no known format; "
                f"a teacher is one of: {SUPPORTED}"
            )
        from espnet2_stacking.upstreams.hf_import import load_hf_upstream

        teacher = load_hf_upstream(path, dtype=dtype, normalize=normalize)
    elif path.suffix == ".pt":
        from espnet2_stacking.upstreams.fairseq_import import load_fairseq_upstream

        teacher = load_fairseq_upstream(path, dtype=dtype, normalize=normalize)
    elif path.suffix == ".pth" and (path.parent / TORCHAUDIO_CONFIG).exists() \
            and not (path.parent / "config.yaml").exists():
        from espnet2_stacking.upstreams.torchaudio_model import load_torchaudio_checkpoint

        teacher = load_torchaudio_checkpoint(path, dtype=dtype, normalize=normalize)
    elif path.suffix == ".pth":
        from espnet2_stacking.upstreams.espnet_ssl import load_espnet_ssl_upstream

        teacher = load_espnet_ssl_upstream(path, dtype=dtype, normalize=normalize)
    else:
        raise ValueError(f"teacher '{spec}': unknown format; a teacher is one of: {SUPPORTED}")
    return teacher.to(device)
