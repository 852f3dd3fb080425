"""Hugging Face directories through our loader against transformers itself.

Tiny random HubertModel / Wav2Vec2Model / WavLMModel are saved with save_pretrained; our
teacher (torchaudio's model, our forward) must give transformers' hidden_states tuple.
"""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from espnet2_stacking.upstreams import load_upstream  # noqa: E402

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(32,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
CLASSES = {
    "hubert": (transformers.HubertModel, transformers.HubertConfig),
    "wav2vec2": (transformers.Wav2Vec2Model, transformers.Wav2Vec2Config),
    "wavlm": (transformers.WavLMModel, transformers.WavLMConfig),
}


def tiny_hf_model(kind, seed=0, **over):
    model_class, config_class = CLASSES[kind]
    extra = dict(num_buckets=32, max_bucket_distance=64) if kind == "wavlm" else {}
    torch.manual_seed(seed)
    return model_class(config_class(**TINY, **extra, **over)).eval()


def utterances():
    g = torch.Generator().manual_seed(1)
    return torch.randn(1, 16000, generator=g), torch.randn(1, 11200, generator=g)


def hf_states(model, wav):
    with torch.no_grad():
        return model(wav, output_hidden_states=True).hidden_states


def assert_states(ours, theirs, frames=None):
    assert len(ours) == len(theirs)
    for k, (a, b) in enumerate(zip(ours, theirs)):
        a = a if frames is None else a[:, :frames]
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=lambda m: f"state {k}: {m}")


@pytest.mark.parametrize("kind", ["hubert", "wav2vec2", "wavlm"])
def test_directory_gives_transformers_hidden_states(kind, tmp_path):
    model = tiny_hf_model(kind)
    model.save_pretrained(tmp_path)
    teacher = load_upstream(str(tmp_path))
    assert (teacher.num_layers, teacher.hidden_size, teacher.layer_norm_first) == (2, 32, False)
    a, b = utterances()
    for wav in (a, b):
        ours, frames = teacher.extract_features(wav, torch.tensor([wav.size(1)]))
        assert_states(ours, hf_states(model, wav))
    # one padded batch: each row as transformers gives it alone
    batch = torch.zeros(2, 16000)
    batch[0], batch[1, :11200] = a[0], b[0]
    ours, frames = teacher.extract_features(batch, torch.tensor([16000, 11200]))
    assert frames.tolist() == [49, 34]
    assert_states([h[:1] for h in ours], hf_states(model, a))
    assert_states([h[1:] for h in ours], hf_states(model, b), frames=34)


def test_pytorch_model_bin_directory(tmp_path):
    model = tiny_hf_model("wavlm", seed=3)
    # transformers 5 writes safetensors only: lay out an older directory by hand
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    wav = utterances()[1]
    ours, _ = load_upstream(str(tmp_path)).extract_features(wav, torch.tensor([wav.size(1)]))
    assert_states(ours, hf_states(model, wav))


def test_pre_ln_model_with_waveform_normalisation(tmp_path):
    """A Large-style model: layer-norm CNN, stable layer norm, do_normalize preprocessing."""
    model = tiny_hf_model("hubert", feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
    model.save_pretrained(tmp_path)
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, sampling_rate=16000)
    extractor.save_pretrained(tmp_path)
    teacher = load_upstream(str(tmp_path))
    assert teacher.layer_norm_first and teacher.normalize_waveform
    wav = 0.1 * utterances()[1] + 0.05  # not already zero-mean, unit-variance
    ours, _ = teacher.extract_features(wav, torch.tensor([wav.size(1)]))
    inputs = extractor(wav[0].numpy(), sampling_rate=16000, return_tensors="pt").input_values
    with torch.no_grad():
        out = model(inputs, output_hidden_states=True)
    assert_states(ours, out.hidden_states)
    # h_L is the raw output of layer L: the final LayerNorm makes last_hidden_state from it
    with torch.no_grad():
        torch.testing.assert_close(model.encoder.layer_norm(ours[-1]), out.last_hidden_state, atol=1e-5, rtol=0)
    assert (ours[-1] - out.last_hidden_state).abs().max() > 0.1


def test_missing_weights_are_an_error_naming_them(tmp_path):
    tiny_hf_model("hubert").save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    state = safetensors_torch.load_file(weights)
    del state["encoder.layers.1.feed_forward.output_dense.weight"]
    safetensors_torch.save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=f"{tmp_path}.*lack.*encoder.layers.1.feed_forward.output_dense.weight"):
        load_upstream(str(tmp_path))


def test_other_sampling_rate_and_unsupported_config_are_errors(tmp_path):
    tiny_hf_model("hubert").save_pretrained(tmp_path / "a")
    (tmp_path / "a" / "preprocessor_config.json").write_text(json.dumps({"sampling_rate": 8000}))
    with pytest.raises(ValueError, match="sampling_rate 8000.*16000 Hz"):
        load_upstream(str(tmp_path / "a"))
    tiny_hf_model("hubert", hidden_act="relu").save_pretrained(tmp_path / "b")
    with pytest.raises(ValueError, match="hidden_act='relu' is not supported"):
        load_upstream(str(tmp_path / "b"))
