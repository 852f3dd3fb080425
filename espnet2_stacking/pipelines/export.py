"""Export a distilled student as a stock ESPnet SSL-task model (recipe stage 4).

The student's frontend (wav2vec2 CNN), preencoder (linear) and the active layers of its encoder
have exactly the parameter names of ESPnet's CNNFrontend, LinearProjection and
TransformerEncoder, so the export is a plain SSLTask model: config.yaml + model.pth that
ESPnet's ``espnet_ssl`` ASR frontend (and ``SSLTask.build_model_from_file``) loads with no
plugin code. The heads, the growth buffers and inactive layer slots are left behind; the
stacking history goes along as ``stacking.json``.
"""

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
import yaml
from espnet2.tasks.ssl import SSLTask

from espnet2_stacking.data.atomic import atomic_output
from espnet2_stacking.student.espnet_model import DistillModel
from espnet2_stacking.tasks.distill_config import RENAMED, refuse_renamed, stacking_kwargs

# SSLTask needs a token list and a loss to build; the export never trains, so the HuBERT
# loss gets a placeholder vocabulary. ESPnet's espnet_ssl frontend deletes the losses.
PLACEHOLDER_TOKENS = ["0", "<unk>"]
STUDENT_PARTS = ("frontend", "preencoder", "encoder")


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


def export_student(config_file: Path, model_file: Optional[Path], out_dir: Path,
                   stacking_log: Optional[Path] = None) -> Path:
    """Write out_dir/{config.yaml,model.pth,stacking.json}; returns the model path.

    ``model_file=None`` exports the random student of the same shape (see
    :func:`load_distill_model`); its stacking.json says ``"init": "random"``.
    """
    model, args = load_distill_model(config_file, model_file)
    stacking = stacking_kwargs(args.stacking_conf)
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

    info = {
        "source_config": str(config_file),
        "source_model": None if model_file is None else str(model_file),
        "init": "random" if model_file is None else "distilled",
        "depth": model.depth, "lineage": model.encoder.lineage,
        "stacking_method": stacking["method"], "stacking_depths": list(stacking["depths"]),
        "stacking_schedule": stacking["schedule"],
        "parameters": sum(v.numel() for k, v in ours.items()),
    }
    if model_file is not None and stacking_log is not None and stacking_log.exists():
        info["stacking_log"] = [json.loads(x) for x in stacking_log.read_text().splitlines() if x]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_dir) as tmp:  # a rerun replaces the whole dir, never half of it
        tmp.mkdir()
        with (tmp / "config.yaml").open("w", encoding="utf-8") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        torch.save(ssl_model.state_dict(), tmp / "model.pth")
        (tmp / "stacking.json").write_text(json.dumps(info, indent=1))
    logging.info(f"exported a {info['init']} {model.depth}-layer student ({info['parameters']:,} parameters) "
                 f"to {out_dir}")
    return out_dir / "model.pth"
