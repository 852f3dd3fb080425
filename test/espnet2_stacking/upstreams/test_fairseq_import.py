"""fairseq and unilm checkpoints (without fairseq) against transformers.

A tiny random HF model is the reference; its weights are renamed to fairseq / unilm names by
inverting the MAPPING of transformers' own conversion scripts
(models/hubert/convert_hubert_original_pytorch_checkpoint_to_pytorch.py and
models/wavlm/convert_wavlm_original_pytorch_checkpoint_to_pytorch.py). Those scripts are not
shipped in the installed transformers wheel (5.x), so their table is written out below.
The checkpoint is saved as fairseq / unilm lay them out and must load through our .pt path
and give transformers' hidden states.
"""

import argparse
import logging
import re

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from espnet2_stacking.upstreams import load_upstream  # noqa: E402
from espnet2_stacking.upstreams.fairseq_import import eval_conv_layers  # noqa: E402

# transformers' MAPPING: fairseq name fragment -> HF name ("*" = layer index).
FAIRSEQ_TO_HF = {
    "post_extract_proj": "feature_projection.projection",
    "encoder.pos_conv.0": "encoder.pos_conv_embed.conv",
    "self_attn.k_proj": "encoder.layers.*.attention.k_proj",
    "self_attn.v_proj": "encoder.layers.*.attention.v_proj",
    "self_attn.q_proj": "encoder.layers.*.attention.q_proj",
    "self_attn.out_proj": "encoder.layers.*.attention.out_proj",
    "self_attn.grep_linear": "encoder.layers.*.attention.gru_rel_pos_linear",
    "self_attn.relative_attention_bias": "encoder.layers.*.attention.rel_attn_embed",
    "self_attn.grep_a": "encoder.layers.*.attention.gru_rel_pos_const",
    "self_attn_layer_norm": "encoder.layers.*.layer_norm",
    "fc1": "encoder.layers.*.feed_forward.intermediate_dense",
    "fc2": "encoder.layers.*.feed_forward.output_dense",
    "final_layer_norm": "encoder.layers.*.final_layer_norm",
    "encoder.layer_norm": "encoder.layer_norm",
    "w2v_model.layer_norm": "feature_projection.layer_norm",
    "mask_emb": "masked_spec_embed",
}
# The scripts' weight types: torch's weight-norm parametrisation <- fairseq's weight_g / weight_v.
WEIGHT_NORM = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(32,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
CONV = "[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2"


def tiny_hf_model(kind, **over):
    classes = {"hubert": (transformers.HubertModel, transformers.HubertConfig),
               "wav2vec2": (transformers.Wav2Vec2Model, transformers.Wav2Vec2Config),
               "wavlm": (transformers.WavLMModel, transformers.WavLMConfig)}
    model_class, config_class = classes[kind]
    extra = dict(num_buckets=32, max_bucket_distance=64) if kind == "wavlm" else {}
    torch.manual_seed(0)
    return model_class(config_class(**TINY, **extra, **over)).eval()


def fairseq_name(hf_key, layer_norm_cnn):
    """Invert the scripts' renaming for one HF key."""
    m = re.fullmatch(r"feature_extractor\.conv_layers\.(\d+)\.(conv|layer_norm)\.(\w+)", hf_key)
    if m:  # the scripts' load_conv_layer: type 0 = conv, type 2 = its norm
        i, part, p = m.groups()
        sub = "0" if part == "conv" else ("2.1" if layer_norm_cnn else "2")
        return f"feature_extractor.conv_layers.{i}.{sub}.{p}"
    layer = re.match(r"encoder\.layers\.(\d+)\.", hf_key)
    generic = re.sub(r"^encoder\.layers\.\d+\.", "encoder.layers.*.", hf_key)
    for fairseq, hf in FAIRSEQ_TO_HF.items():
        if generic == hf or generic.startswith(hf + "."):
            rest = generic[len(hf):]
            for new, old in WEIGHT_NORM.items():
                rest = rest.replace(new, old)
            fairseq = fairseq.replace("w2v_model.", "")  # a pretrained checkpoint has no prefix
            return (f"encoder.layers.{layer.group(1)}." if "*" in hf else "") + fairseq + rest
    raise AssertionError(f"no fairseq name for {hf_key}")


def fairseq_state(model, layer_norm_cnn=False):
    return {fairseq_name(k, layer_norm_cnn): v.clone() for k, v in model.state_dict().items()}


def model_cfg(name="hubert", **over):
    cfg = {"_name": name, "extractor_mode": "default", "conv_feature_layers": CONV, "conv_bias": False,
           "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64,
           "encoder_attention_heads": 2, "layer_norm_first": False, "conv_pos": 16, "conv_pos_groups": 2,
           "activation_fn": "gelu", "dropout": 0.1, "layerdrop": 0.05, "label_rate": 50}
    cfg.update(over)
    return cfg


def task_cfg(**over):
    return {"_name": "hubert_pretraining", "sample_rate": 16000, "normalize": False, **over}


def wav(n=11200, seed=2):
    return torch.randn(1, n, generator=torch.Generator().manual_seed(seed))


def assert_matches(teacher, model, x, hf_input=None):
    ours, _ = teacher.extract_features(x, torch.tensor([x.size(1)]))
    with torch.no_grad():
        theirs = model(x if hf_input is None else hf_input, output_hidden_states=True).hidden_states
    assert len(ours) == len(theirs) == 3
    for k, (a, b) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=lambda m: f"state {k}: {m}")


def our_warnings(caplog):
    return [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("espnet2_stacking")]


def test_hubert_cfg_checkpoint_reads_safely_and_matches(tmp_path, caplog):
    model = tiny_hf_model("hubert")
    state = fairseq_state(model)
    state["label_embs_concat"] = torch.zeros(10, 16)  # training-only parts are dropped
    state["final_proj.weight"], state["final_proj.bias"] = torch.zeros(16, 32), torch.zeros(16)
    torch.save({"cfg": {"model": model_cfg(), "task": task_cfg()}, "model": state}, tmp_path / "hubert.pt")
    with caplog.at_level(logging.WARNING):
        teacher = load_upstream(str(tmp_path / "hubert.pt"))
    assert not our_warnings(caplog)
    assert (teacher.num_layers, teacher.hidden_size, teacher.layer_norm_first) == (2, 32, False)
    assert not teacher.normalize_waveform
    assert_matches(teacher, model, wav(16000))
    assert_matches(teacher, model, wav(11200))


def test_old_args_checkpoint_loads_without_the_unsafe_fallback(tmp_path, caplog):
    model = tiny_hf_model("hubert")
    fields = {**model_cfg(), **task_cfg()}
    del fields["_name"]  # old checkpoints name the model in arch, the task in task
    args = argparse.Namespace(arch="hubert", task="hubert_pretraining", **fields)
    torch.save({"args": args, "cfg": None, "model": fairseq_state(model)}, tmp_path / "old.pt")
    with caplog.at_level(logging.WARNING):
        teacher = load_upstream(str(tmp_path / "old.pt"))
    assert not our_warnings(caplog)  # Namespace is allow-listed for weights_only=True
    assert_matches(teacher, model, wav())


def test_omegaconf_checkpoint_falls_back_with_a_warning(tmp_path, caplog):
    omegaconf = pytest.importorskip("omegaconf")
    model = tiny_hf_model("hubert")
    cfg = omegaconf.OmegaConf.create({"model": model_cfg(), "task": task_cfg(), "common": {"fp16": True}})
    torch.save({"cfg": cfg, "model": fairseq_state(model)}, tmp_path / "hubert_base_ls960.pt")
    with caplog.at_level(logging.WARNING):
        teacher = load_upstream(str(tmp_path / "hubert_base_ls960.pt"))
    (record,) = our_warnings(caplog)
    assert "hubert_base_ls960.pt" in record.message and "weights_only=False" in record.message
    assert "trust" in record.message
    assert_matches(teacher, model, wav())


def test_large_style_wav2vec2_with_normalised_waveforms(tmp_path):
    """layer-norm CNN with bias, pre-LN, task.normalize: fairseq layer-norms each waveform."""
    model = tiny_hf_model("wav2vec2", feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
    state = fairseq_state(model, layer_norm_cnn=True)
    state.update({"quantizer.vars": torch.zeros(1, 8, 4), "quantizer.weight_proj.weight": torch.zeros(8, 32),
                  "quantizer.weight_proj.bias": torch.zeros(8), "project_q.weight": torch.zeros(4, 4),
                  "project_q.bias": torch.zeros(4), "final_proj.weight": torch.zeros(4, 32),
                  "final_proj.bias": torch.zeros(4)})
    cfg = model_cfg("wav2vec2", extractor_mode="layer_norm", layer_norm_first=True, conv_bias=True)
    torch.save({"cfg": {"model": cfg, "task": task_cfg(normalize=True)}, "model": state}, tmp_path / "large.pt")
    teacher = load_upstream(str(tmp_path / "large.pt"))
    assert teacher.layer_norm_first and teacher.normalize_waveform
    x = 0.1 * wav() + 0.05
    assert_matches(teacher, model, x, hf_input=F.layer_norm(x, x.shape))


def test_unilm_wavlm_checkpoint_matches(tmp_path):
    model = tiny_hf_model("wavlm")
    cfg = model_cfg(relative_position_embedding=True, num_buckets=32, max_distance=64, gru_rel_pos=True,
                    normalize=False)
    del cfg["_name"]
    state = fairseq_state(model)
    assert "encoder.layers.0.self_attn.relative_attention_bias.weight" in state
    assert "encoder.layers.1.self_attn.grep_a" in state
    torch.save({"cfg": cfg, "model": state}, tmp_path / "WavLM-Base+.pt")
    teacher = load_upstream(str(tmp_path / "WavLM-Base+.pt"))
    assert_matches(teacher, model, wav(16000))
    batch = torch.zeros(2, 16000)
    batch[0], batch[1, :11200] = wav(16000)[0], wav(11200)[0]
    states, frames = teacher.extract_features(batch, torch.tensor([16000, 11200]))
    with torch.no_grad():
        alone = model(wav(11200), output_hidden_states=True).hidden_states
    for a, b in zip(states, alone):
        torch.testing.assert_close(a[1:, :34], b, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda ck: ck["model"].update({"decoder.proj.weight": torch.zeros(1)}),
         r"bad\.pt: weights this loader does not know: decoder\.proj\.weight"),
        (lambda ck: ck["model"].pop("encoder.layers.1.fc1.weight"),
         r"bad\.pt: .*missing encoder\.transformer\.layers\.1\.feed_forward\.intermediate_dense\.weight"),
        (lambda ck: ck["model"].update({"encoder.layers.1.fc1.weight": torch.zeros(3, 3)}),
         r"bad\.pt: weights of the wrong shape"),
        (lambda ck: ck.update(model={"w2v_encoder.w2v_model." + k: v for k, v in ck["model"].items()}),
         r"bad\.pt: a fine-tuned checkpoint"),
        (lambda ck: ck["cfg"]["model"].update(_name="hubert_ctc"), r"bad\.pt: model 'hubert_ctc'.*fine-tuned"),
        (lambda ck: ck["cfg"]["task"].update(sample_rate=22050), r"bad\.pt: .*22050 Hz"),
        (lambda ck: ck["cfg"]["model"].update(activation_fn="relu"), r"bad\.pt: activation_fn='relu' is not supported"),
        (lambda ck: ck["cfg"]["model"].pop("encoder_layers"), r"bad\.pt: the model config lacks \['encoder_layers'\]"),
        (lambda ck: ck.pop("cfg"), r"bad\.pt: no model config"),
    ],
)
def test_checkpoint_errors_name_the_file(tmp_path, change, match):
    model = tiny_hf_model("hubert")
    ckpt = {"cfg": {"model": model_cfg(), "task": task_cfg()}, "model": fairseq_state(model)}
    change(ckpt)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=match):
        load_upstream(str(tmp_path / "bad.pt"))


def test_not_a_checkpoint(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "weights.pt")
    with pytest.raises(ValueError, match=r"weights\.pt: not a fairseq / unilm checkpoint"):
        load_upstream(str(tmp_path / "weights.pt"))


@pytest.mark.parametrize(
    "expr,layers",
    [
        ("[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2",
         [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2),
        ("[(64, 10, 5), (64, 8, 4)]", [(64, 10, 5), (64, 8, 4)]),
        ("2 * [(8, 2, 2)]", [(8, 2, 2), (8, 2, 2)]),
    ],
)
def test_conv_feature_layers_are_evaluated_safely(expr, layers):
    assert eval_conv_layers(expr) == layers


@pytest.mark.parametrize("expr", ["__import__('os').system('true')", "[(512, 10)]", "[(512, 10, 5)] * 10 ** 9",
                                  "[(512.0, 10, 5)]", "[]", "[(1, 2, 3)] + 4"])
def test_conv_feature_layers_reject_anything_else(expr):
    with pytest.raises(ValueError, match="conv_feature_layers"):
        eval_conv_layers(expr)
