"""Export a distilled student (recipe stage 4), in the formats its architecture can carry.

- ``encoder: stacking_transformer`` (the ``espnet`` student) -> ``espnet_ssl``: a stock ESPnet
  SSL-task model (config.yaml + model.pth). Its frontend (wav2vec2 CNN), preencoder (linear)
  and active layers have exactly the parameter names of ESPnet's CNNFrontend,
  LinearProjection and TransformerEncoder, so ESPnet's ``espnet_ssl`` ASR frontend (and
  ``SSLTask.build_model_from_file``) loads it with no plugin code.
- ``encoder: hubert`` (HuBERT's own layer) ->
  ``torchaudio``: model.pth, the state dict of ``torchaudio.models.wav2vec2_model(**kwargs)``
  with the kwargs in torchaudio_config.json; espnet_asr_encoder.yaml beside it fine-tunes it
  in an ESPnet ASR recipe as ESPnet's own ``torchaudiohubert`` encoder (``init_param``);
  ``hf``: hf/ (config.json + model.safetensors), a ``transformers.HubertModel``.

Every format is checked while written: the target model is built and our weights loaded into
it strictly, so a mismatch fails here, not in a user's run. The heads, the growth buffers
and inactive layer slots are left behind; stacking.json keeps the history and README.md (a
model card, in every export dir) says what the model is. The whole output dir is written
under a temporary name and renamed when complete.
"""

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import torch
import yaml
from espnet2.tasks.ssl import SSLTask

from espnet2_stacking.core.frames import SAMPLE_RATE
from espnet2_stacking.data.atomic import atomic_output
from espnet2_stacking.student.espnet_model import DistillModel
from espnet2_stacking.tasks.distill_config import RENAMED, refuse_renamed, stacking_kwargs
from espnet2_stacking.upstreams.torchaudio_model import TORCHAUDIO_CONFIG, load_strict

# SSLTask needs a token list and a loss to build; the export never trains, so the HuBERT
# loss gets a placeholder vocabulary. ESPnet's espnet_ssl frontend deletes the losses.
PLACEHOLDER_TOKENS = ["0", "<unk>"]
STUDENT_PARTS = ("frontend", "preencoder", "encoder")
# What each student architecture (distill config's ``encoder``) can be exported as, default
# first: the stage-5 upstream is the first format's model.pth.
ENCODER_FORMATS = {
    "stacking_transformer": ("espnet_ssl",),
    "hubert": ("torchaudio", "hf"),
}
ESPNET_ASR_CONFIG = "espnet_asr_encoder.yaml"
HF_DIR = "hf"


def ssl_config(model: DistillModel, distill_args: argparse.Namespace) -> dict:
    """SSLTask's full default config with our student's components filled in."""
    parser = SSLTask.get_parser()
    config = vars(parser.parse_args(["--token_list", "tokens.txt", "--output_dir", "unused"]))
    for key in ("config", "print_config", "required", "output_dir", "ngpu"):
        config.pop(key, None)
    encoder_conf = model.encoder.export_config()
    config.update(
        token_list=list(PLACEHOLDER_TOKENS),
        input_size=None,
        frontend="wav2vec_cnn",
        frontend_conf=dict(distill_args.frontend_conf),
        specaug=None,
        specaug_conf={},
        normalize=None,
        normalize_conf={},
        preencoder=distill_args.preencoder,
        preencoder_conf=(
            {"input_size": model.frontend.output_size(), **distill_args.preencoder_conf}
            if distill_args.preencoder is not None else {}
        ),
        encoder="transformer",
        encoder_conf=encoder_conf,
        model="espnet",
        model_conf={},
        loss=[{"name": "hubert", "conf": {"num_classes": len(PLACEHOLDER_TOKENS), "final_dim": 1}}],
        util=[],
    )
    return config


def student_state_dict(model: DistillModel) -> Dict[str, torch.Tensor]:
    """frontend.*, preencoder.* and the active encoder layers, under SSLTask's names."""
    state = {f"frontend.{k}": v for k, v in model.frontend.state_dict().items()}
    if model.preencoder is not None:
        state.update({f"preencoder.{k}": v for k, v in model.preencoder.state_dict().items()})
    state.update({f"encoder.{k}": v for k, v in model.encoder.export_state_dict().items()})
    return state


def load_distill_model(config_file: Path, model_file: Optional[Path]
                       ) -> Tuple[DistillModel, argparse.Namespace]:
    """The DistillModel of a distill_train run, in eval mode.

    ``model_file=None`` gives the *random student*: the same architecture at its final depth,
    every layer freshly initialised (seeded by the config's ``seed``), the reference a
    distilled student must beat downstream.
    """
    from espnet2_stacking.tasks.distill import DistillTask
    from espnet2_stacking.tasks.register import register_scheduler

    register_scheduler()
    with config_file.open(encoding="utf-8") as f:
        args = argparse.Namespace(**yaml.safe_load(f))
    # a run of an earlier version: name what replaced its options rather than fail on a key
    refuse_renamed([name for name in RENAMED if getattr(args, name, None) is not None],
                   where=f"{config_file}: ")
    if model_file is None:
        torch.manual_seed(getattr(args, "seed", 0))
    # The exported student needs no online teacher. A distilled student's CNN is in its
    # checkpoint; a random one starts, as the run did, from the teacher's CNN if so configured.
    model = DistillTask.build_student(args, DistillTask.cnn_teacher(args) if model_file is None else None)
    if model_file is None:
        # Activate every slot as its own lineage: no layer is a copy of another.
        state = model.state_dict()
        full = model.encoder.num_blocks
        state["encoder.active_depth"] = torch.tensor(float(full))
        state["encoder.lineage_buffer"] = torch.arange(full, dtype=torch.float32)
    else:
        state = torch.load(model_file, map_location="cpu", weights_only=True)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(
            f"{model_file} does not match {config_file}: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    model.eval()
    return model, args


def export_formats(encoder: str, requested: Optional[Sequence[str]] = None) -> Tuple[str, ...]:
    """The formats to write for a student with this ``encoder``: ``requested`` (checked), or
    all it can carry; a format it cannot carry is refused, naming those it can."""
    if encoder not in ENCODER_FORMATS:
        raise ValueError(f"no export for encoder '{encoder}': known {sorted(ENCODER_FORMATS)}")
    can = ENCODER_FORMATS[encoder]
    if not requested:
        return can
    unknown = sorted({f for f in requested} - {f for v in ENCODER_FORMATS.values() for f in v})
    bad = [f for f in requested if f not in can]
    if unknown or bad:
        why = {"stacking_transformer": "ESPnet's TransformerEncoder is not HuBERT's layer "
                                       "(ReLU feed-forward, no residual round the positional "
                                       "convolution); train with encoder: hubert for those",
               "hubert": "HuBERT's layer is not ESPnet's TransformerEncoder"}[encoder]
        raise ValueError(
            f"the {encoder} student cannot be exported as {unknown or bad}: it exports as "
            f"{list(can)} ({why})")
    return tuple(dict.fromkeys(requested))


def check_cnn_exportable(frontend_conf: Dict) -> str:
    """torchaudio's extractor_mode for a CNNFrontend config, or an error naming the option
    torchaudio's and transformers' CNN cannot express."""
    conf = {"conv_mode": "standard", "normalize_audio": False, "normalize_output": False,
            **frontend_conf}
    wrong = {k: conf[k] for k, want in (("conv_mode", "standard"), ("normalize_audio", False),
                                         ("normalize_output", False)) if conf[k] != want}
    if wrong or conf.get("norm_mode") not in ("group_norm", "layer_norm"):
        raise ValueError(
            f"frontend_conf {wrong or {'norm_mode': conf.get('norm_mode')}}: HuBERT's CNN (torchaudio, "
            "transformers) is a standard convolution with group_norm or layer_norm and no "
            "audio or output normalisation")
    return conf["norm_mode"]


def torchaudio_export(model: DistillModel, args: argparse.Namespace
                      ) -> Tuple[Dict, Dict[str, torch.Tensor]]:
    """(torchaudio.models.wav2vec2_model kwargs, its state dict) of a hubert student."""
    if model.preencoder is not None:
        raise ValueError("a hubert student has no preencoder (its feature projection is HuBERT's)")
    conf = dict(args.frontend_conf)
    shapes = conf.get("shapes") or [[512, 10, 5]] + [[512, 3, 2]] * 4 + [[512, 2, 2]] * 2
    kwargs = {
        "extractor_mode": check_cnn_exportable(conf),
        "extractor_conv_layer_config": [list(map(int, shape)) for shape in shapes],
        "extractor_conv_bias": bool(conf.get("bias")),
        **model.encoder.torchaudio_config(),
        "aux_num_out": None,
    }
    state = {f"feature_extractor.conv_layers.{k[len('layers.'):]}": v.detach().clone()
             for k, v in model.frontend.state_dict().items()}
    state.update({f"encoder.{k}": v for k, v in model.encoder.export_state_dict().items()})
    return kwargs, state


def hf_config(kwargs: Dict):
    """transformers.HubertConfig of a torchaudio wav2vec2_model's kwargs (no masking, no CTC
    head: a bare encoder, as HuBERT checkpoints on the hub)."""
    import transformers

    conv = kwargs["extractor_conv_layer_config"]
    return transformers.HubertConfig(
        architectures=["HubertModel"],
        hidden_size=kwargs["encoder_embed_dim"],
        num_hidden_layers=kwargs["encoder_num_layers"],
        num_attention_heads=kwargs["encoder_num_heads"],
        intermediate_size=kwargs["encoder_ff_interm_features"],
        hidden_act="gelu",
        hidden_dropout=kwargs["encoder_dropout"],
        activation_dropout=kwargs["encoder_ff_interm_dropout"],
        attention_dropout=kwargs["encoder_attention_dropout"],
        feat_proj_layer_norm=True,
        feat_proj_dropout=kwargs["encoder_projection_dropout"],
        layerdrop=kwargs["encoder_layer_drop"],
        layer_norm_eps=1e-5,  # torch's LayerNorm default, which torchaudio's blocks use
        feat_extract_norm=kwargs["extractor_mode"].replace("_norm", ""),
        feat_extract_activation="gelu",
        conv_dim=[c for c, _, _ in conv],
        conv_kernel=[k for _, k, _ in conv],
        conv_stride=[s for _, _, s in conv],
        conv_bias=kwargs["extractor_conv_bias"],
        num_conv_pos_embeddings=kwargs["encoder_pos_conv_kernel"],
        num_conv_pos_embedding_groups=kwargs["encoder_pos_conv_groups"],
        do_stable_layer_norm=kwargs["encoder_layer_norm_first"],
        mask_time_prob=0.0,  # no masked_spec_embed: the student was not trained with one
        mask_feature_prob=0.0,
    )


def hf_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """torchaudio Wav2Vec2Model names -> transformers HubertModel names (the CNN, attention,
    feed-forward and norm names are the same; only the nesting differs)."""
    out = {}
    for key, value in state.items():
        if key.startswith("encoder.feature_projection."):
            key = key[len("encoder."):]
        elif key.startswith("encoder.transformer."):
            key = "encoder." + key[len("encoder.transformer."):]
        out[key] = value
    return out


def _load_exactly(target: torch.nn.Module, state: Dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``target`` strictly, naming the keys that differ."""
    load_strict(target, state, Path(what))


def write_espnet_ssl(tmp: Path, model: DistillModel, args: argparse.Namespace, final: Path) -> int:
    config = ssl_config(model, args)
    # Build the stock model from that config and load our weights strictly into its student
    # part: if ESPnet cannot take them, fail here rather than in a user's ASR run.
    ssl_model = SSLTask.build_model(argparse.Namespace(**config))
    ours = student_state_dict(model)
    # The student is the frontend, preencoder and encoder; the rest (loss, masking, step
    # counter) is SSL training machinery that ESPnet's frontend drops.
    theirs = {k for k in ssl_model.state_dict() if k.split(".")[0] in STUDENT_PARTS}
    if set(ours) != theirs:
        raise RuntimeError(
            "exported keys do not match ESPnet's SSL model: "
            f"extra {sorted(set(ours) - theirs)[:5]}, missing {sorted(theirs - set(ours))[:5]}"
        )
    ssl_model.load_state_dict(ours, strict=False)
    with (tmp / "config.yaml").open("w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    torch.save(ssl_model.state_dict(), tmp / "model.pth")
    return sum(v.numel() for v in ours.values())


def write_torchaudio(tmp: Path, model: DistillModel, args: argparse.Namespace, final: Path) -> int:
    from torchaudio.models import wav2vec2_model

    kwargs, state = torchaudio_export(model, args)
    _load_exactly(wav2vec2_model(**kwargs), state, "torchaudio wav2vec2_model export")
    torch.save(state, tmp / "model.pth")
    (tmp / TORCHAUDIO_CONFIG).write_text(json.dumps(kwargs, indent=1))
    # ESPnet's torchaudiohubert encoder takes wav2vec2_model's kwargs (less the head) and
    # holds a Wav2Vec2Model at hubert_pretrain_model.wav2vec2: init_param loads ours there.
    encoder_conf = {k: v for k, v in kwargs.items() if k != "aux_num_out"}
    asr = {
        "frontend": None,  # the encoder reads the waveform with its own CNN
        "input_size": 1,
        "specaug": None,
        "normalize": None,  # the student was distilled on raw waveforms
        "encoder": "torchaudiohubert",
        "encoder_conf": {**encoder_conf, "finetuning": True},
        "init_param": [f"{final.resolve() / 'model.pth'}::encoder.hubert_pretrain_model.wav2vec2"],
    }
    (tmp / ESPNET_ASR_CONFIG).write_text(
        "# Merge into an ESPnet ASR config to fine-tune this student as the encoder\n"
        "# (ESPnet's torchaudiohubert encoder; set its mask_* and freeze options as needed).\n"
        + yaml.safe_dump(asr, sort_keys=False), encoding="utf-8")
    return sum(v.numel() for v in state.values())


def write_hf(tmp: Path, model: DistillModel, args: argparse.Namespace, final: Path) -> int:
    try:
        import transformers
    except ImportError:
        raise ImportError("the hf export needs transformers and safetensors: pip install "
                          "'espnet2_stacking[hf]'") from None
    kwargs, state = torchaudio_export(model, args)
    hf_model = transformers.HubertModel(hf_config(kwargs))
    state = hf_state_dict(state)
    _load_exactly(hf_model, state, "Hugging Face HubertModel export")
    hf_model.save_pretrained(tmp / HF_DIR, safe_serialization=True)
    return sum(v.numel() for v in state.values())


WRITERS = {"espnet_ssl": write_espnet_ssl, "torchaudio": write_torchaudio, "hf": write_hf}


def _training_facts(args: argparse.Namespace, distill_dir: Path) -> Dict:
    """What the model card says about the run: teacher, data, final validation loss."""
    facts: Dict = {"teacher": args.teacher}
    if facts["teacher"] is None and getattr(args, "train_dump_dir", None):
        meta = Path(args.train_dump_dir) / "meta.json"
        if meta.is_file():
            facts["teacher"] = json.loads(meta.read_text())["teacher"]
    shapes = getattr(args, "train_shape_file", None) or []
    if shapes and Path(shapes[0]).is_file():
        samples = [int(line.split()[1]) for line in Path(shapes[0]).read_text().splitlines()
                   if line.strip()]
        facts["train_utterances"] = len(samples)
        facts["train_hours"] = round(sum(samples) / SAMPLE_RATE / 3600, 3)
    entries = getattr(args, "train_data_path_and_name_and_type", None) or []
    facts["train_data"] = [e[0] for e in entries if e[1] == "speech"]
    checkpoint = distill_dir / "checkpoint.pth"
    if checkpoint.is_file():
        # our own run's checkpoint: its reporter state holds numpy scalars (weights_only refuses)
        stats = torch.load(checkpoint, map_location="cpu", weights_only=False)["reporter"]["stats"]
        valid = [stats[e]["valid"]["loss"] for e in sorted(stats) if "loss" in stats[e].get("valid", {})]
        if valid:
            facts["valid_loss"] = float(valid[-1])
            facts["epochs"] = len(stats)
    return facts


def model_card(info: Dict, formats: Sequence[str], where: str, hf_path: str = HF_DIR) -> str:
    """A README.md for a model hub: what the model is, how it was made, how to load it."""
    arch = {"stacking_transformer": "ESPnet TransformerEncoder (the `espnet` student)",
            "hubert": "HuBERT (torchaudio / transformers HubertModel layers, post-LN)"}
    summary = info.get("distillation", {})
    facts = info.get("facts", {})
    rows = [
        ("architecture", arch.get(info["encoder"], info["encoder"])),
        ("layers x width", f"{info['depth']} x {info['width']}"),
        ("parameters", f"{info['parameters']:,}"),
        ("init", info["init"]),
        ("teacher", facts.get("teacher") or "unknown"),
        ("stacking", f"{info['stacking_method']}, depths {info['stacking_depths']}, "
                     f"schedule {info['stacking_schedule']}, lineage {info['lineage']}"),
        ("training data", ", ".join(facts.get("train_data", [])) or "unknown"),
        ("training audio", f"{facts['train_hours']} h, {facts['train_utterances']} utterances"
         if "train_hours" in facts else "unknown"),
        ("distillation time", f"{summary['total_seconds']} s, {summary['updates']} updates"
         if summary else "not recorded"),
        ("final validation loss", f"{facts['valid_loss']:.4g} (epoch {facts['epochs']})"
         if "valid_loss" in facts else "not recorded"),
    ]
    use = {
        "espnet_ssl": "ESPnet ASR: `frontend: espnet_ssl`, `frontend_conf: {frontend_conf: "
                      "{path_or_url: model.pth}, multilayer_feature: true}` (stock ESPnet).",
        "torchaudio": f"torchaudio: `wav2vec2_model(**json.load(open('{TORCHAUDIO_CONFIG}')))`"
                      " then `load_state_dict(torch.load('model.pth'))`; ESPnet fine-tuning: merge "
                      f"`{ESPNET_ASR_CONFIG}` into the ASR config (encoder `torchaudiohubert`).",
        "hf": f"transformers: `HubertModel.from_pretrained('{hf_path}')` "
              "(input: 16 kHz waveform, not normalised).",
    }
    lines = [f"# Distilled speech encoder ({where})", "",
             "Distilled with espnet2_stacking (staged distillation with layer stacking: the "
             "student grew through the depths below, each new layer a copy of an existing one).",
             "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "## Use", ""] + [f"- {use[f]}" for f in formats]
    lines += ["", "Hidden state 0 is the transformer input, state k the output of layer k "
              "(as s3prl, torchaudio and transformers' `output_hidden_states`).", ""]
    return "\n".join(lines)


def export_student(config_file: Path, model_file: Optional[Path], out_dir: Path,
                   stacking_log: Optional[Path] = None,
                   formats: Optional[Sequence[str]] = None) -> Path:
    """Write out_dir in ``formats`` (default: all the student's architecture can carry), with
    stacking.json and README.md; returns the path of the first format's model file.

    ``model_file=None`` exports the random student of the same shape (see
    :func:`load_distill_model`); its stacking.json says ``"init": "random"``.
    """
    with config_file.open(encoding="utf-8") as f:
        encoder = (yaml.safe_load(f) or {}).get("encoder", "stacking_transformer")
    formats = export_formats(encoder, formats)  # refused before any loading
    model, args = load_distill_model(config_file, model_file)
    stacking = stacking_kwargs(args.stacking_conf)
    info = {
        "source_config": str(config_file),
        "source_model": None if model_file is None else str(model_file),
        "init": "random" if model_file is None else "distilled",
        "encoder": encoder, "formats": list(formats),
        "depth": model.depth, "width": model.encoder.output_size(),
        "lineage": model.encoder.lineage,
        "stacking_method": stacking["method"], "stacking_depths": list(stacking["depths"]),
        "stacking_schedule": stacking["schedule"],
    }
    if model_file is not None:
        if stacking_log is not None and stacking_log.exists():
            info["stacking_log"] = [json.loads(x) for x in stacking_log.read_text().splitlines() if x]
            summaries = [r["summary"] for r in info["stacking_log"] if "summary" in r]
            if summaries:
                info["distillation"] = summaries[-1]
        info["facts"] = _training_facts(args, config_file.parent)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_dir) as tmp:  # a rerun replaces the whole dir, never half of it
        tmp.mkdir()
        for fmt in formats:
            info["parameters"] = WRITERS[fmt](tmp, model, args, out_dir)
        (tmp / "stacking.json").write_text(json.dumps(info, indent=1))
        (tmp / "README.md").write_text(model_card(info, formats, out_dir.name), encoding="utf-8")
        if "hf" in formats:
            (tmp / HF_DIR / "README.md").write_text(model_card(info, ["hf"], out_dir.name, "."),
                                                    encoding="utf-8")
    logging.info(f"exported a {info['init']} {model.depth}-layer {encoder} student "
                 f"({info['parameters']:,} parameters) as {list(formats)} to {out_dir}")
    first = out_dir / (HF_DIR if formats[0] == "hf" else "model.pth")
    return first
