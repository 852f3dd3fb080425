"""Our loaders against an independent implementation: Hugging Face transformers.

Tiny random HF models are saved with save_pretrained, then read (a) through our HF path and
(b) as fairseq / unilm checkpoints whose keys are made from HF's by inverting the mapping of
transformers' own conversion scripts (convert_hubert_original_pytorch_checkpoint_to_pytorch.py,
convert_wavlm_original_pytorch_checkpoint_to_pytorch.py: fairseq name -> HF name; the scripts
are not shipped in the transformers wheel, so the table is written out below).
"""

import argparse
import re

import pytest
import torch
import transformers

from espnet2_stacking.teachers import load_teacher

# transformers' MAPPING, fairseq -> HF, inverted here: HF -> fairseq.
HF_TO_FAIRSEQ = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.", r"feature_extractor.conv_layers.\1.2."),
    (r"^feature_projection\.projection\.", "post_extract_proj."),
    (r"^feature_projection\.layer_norm\.", "layer_norm."),
    (r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0", "encoder.pos_conv.0.weight_g"),
    (r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1", "encoder.pos_conv.0.weight_v"),
    (r"^encoder\.pos_conv_embed\.conv\.bias", "encoder.pos_conv.0.bias"),
    (r"^encoder\.layer_norm\.", "encoder.layer_norm."),
    (r"^encoder\.layers\.(\d+)\.attention\.(k|v|q|out)_proj\.", r"encoder.layers.\1.self_attn.\2_proj."),
    (r"^encoder\.layers\.(\d+)\.attention\.gru_rel_pos_linear\.", r"encoder.layers.\1.self_attn.grep_linear."),
    (r"^encoder\.layers\.(\d+)\.attention\.gru_rel_pos_const", r"encoder.layers.\1.self_attn.grep_a"),
    (r"^encoder\.layers\.(\d+)\.attention\.rel_attn_embed\.", r"encoder.layers.\1.self_attn.relative_attention_bias."),
    (r"^encoder\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.final_layer_norm."),
    (r"^masked_spec_embed$", "mask_emb"),
]

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(32,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, hidden_dropout=0.0,
            attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0)


def hf_model(kind, **over):
    torch.manual_seed(0)
    if kind == "hubert":
        model = transformers.HubertModel(transformers.HubertConfig(**TINY, **over))
    elif kind == "wavlm":
        model = transformers.WavLMModel(transformers.WavLMConfig(**TINY, num_buckets=32, max_bucket_distance=64, **over))
    else:
        model = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**TINY, **over))
    return model.eval()


def hf_states(model, wav):
    with torch.no_grad():
        return model(wav, output_hidden_states=True).hidden_states


def wav():
    return torch.randn(1, 8000, generator=torch.Generator().manual_seed(3))


def to_fairseq(state):
    out = {}
    for key, value in state.items():
        for pattern, repl in HF_TO_FAIRSEQ:
            if re.match(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            raise AssertionError(f"no fairseq name for HF key {key}")
    return out


def fairseq_cfg(model, layer_norm_first):
    c = model.config
    return {
        "extractor_mode": "default", "conv_feature_layers": str(list(zip(c.conv_dim, c.conv_kernel, c.conv_stride))),
        "conv_bias": c.conv_bias, "encoder_embed_dim": c.hidden_size, "encoder_layers": c.num_hidden_layers,
        "encoder_attention_heads": c.num_attention_heads, "encoder_ffn_embed_dim": c.intermediate_size,
        "layer_norm_first": layer_norm_first, "conv_pos": c.num_conv_pos_embeddings,
        "conv_pos_groups": c.num_conv_pos_embedding_groups,
    }


def assert_same(ours, theirs):
    assert len(ours) == len(theirs)
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, k
        assert torch.allclose(a, b, atol=1e-5), f"state {k}: max diff {(a - b).abs().max()}"


@pytest.mark.parametrize("kind", ["hubert", "wav2vec2", "wavlm"])
def test_huggingface_directory_matches_transformers(kind, tmp_path):
    model = hf_model(kind)
    model.save_pretrained(tmp_path / "hf")
    teacher = load_teacher(str(tmp_path / "hf"))
    x = wav()
    ours, frames = teacher.extract_features(x, torch.tensor([x.size(1)]))
    assert_same(ours, hf_states(model, x))
    assert frames.tolist() == [1 + (8000 - 400) // 320]


def test_huggingface_pre_ln_matches_transformers(tmp_path):
    model = hf_model("hubert", do_stable_layer_norm=True, feat_extract_norm="layer")
    model.save_pretrained(tmp_path / "hf")
    teacher = load_teacher(str(tmp_path / "hf"))
    assert teacher.layer_norm_first
    x = wav()
    assert_same(teacher.extract_features(x, torch.tensor([x.size(1)]))[0], hf_states(model, x))


@pytest.mark.parametrize("style", ["cfg", "args"])
def test_fairseq_hubert_checkpoint_matches_transformers(style, tmp_path):
    model = hf_model("hubert")
    state = to_fairseq(model.state_dict())
    state["label_embs_concat"] = torch.zeros(10, 8)  # training-only keys are dropped
    state["final_proj.weight"] = torch.zeros(8, 32)
    cfg = fairseq_cfg(model, False)
    if style == "cfg":
        ckpt = {"cfg": {"model": cfg}, "model": state}
    else:  # old checkpoints pickle an argparse Namespace: needs the weights_only fallback
        ckpt = {"args": argparse.Namespace(**cfg), "model": state}
    torch.save(ckpt, tmp_path / "hubert.pt")
    teacher = load_teacher(str(tmp_path / "hubert.pt"))
    x = wav()
    assert_same(teacher.extract_features(x, torch.tensor([x.size(1)]))[0], hf_states(model, x))


def test_unilm_wavlm_checkpoint_matches_transformers(tmp_path):
    model = hf_model("wavlm")
    cfg = fairseq_cfg(model, False)
    cfg.update(relative_position_embedding=True, num_buckets=32, max_distance=64)
    torch.save({"cfg": cfg, "model": to_fairseq(model.state_dict())}, tmp_path / "WavLM.pt")
    # unilm keeps the config at the top level of cfg, not under cfg["model"]
    ckpt = torch.load(tmp_path / "WavLM.pt")
    torch.save({"cfg": {"model": ckpt["cfg"]}, "model": ckpt["model"]}, tmp_path / "WavLM.pt")
    teacher = load_teacher(str(tmp_path / "WavLM.pt"))
    x = wav()
    assert_same(teacher.extract_features(x, torch.tensor([x.size(1)]))[0], hf_states(model, x))


def test_unknown_and_missing_keys_name_the_file(tmp_path):
    model = hf_model("hubert")
    state = to_fairseq(model.state_dict())
    cfg = fairseq_cfg(model, False)
    torch.save({"cfg": {"model": cfg}, "model": {**state, "decoder.proj.weight": torch.zeros(1)}}, tmp_path / "a.pt")
    with pytest.raises(KeyError, match=r"a\.pt.*decoder\.proj\.weight"):
        load_teacher(str(tmp_path / "a.pt"))
    state.pop("encoder.layers.1.fc1.weight")
    torch.save({"cfg": {"model": cfg}, "model": state}, tmp_path / "b.pt")
    with pytest.raises(KeyError, match=r"b\.pt.*missing"):
        load_teacher(str(tmp_path / "b.pt"))
