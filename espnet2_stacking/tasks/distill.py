"""DistillTask: distil a speech foundation model into a student that grows by stacking.

    python -m espnet2_stacking.bin.distill_train --config conf/distill.yaml \
        --train_data_path_and_name_and_type data/train/wav.scp,speech,sound \
        --train_data_path_and_name_and_type dump/train/layer_12.scp,target_12,npy ...

Targets are dumped teacher states (data names ``target_<t>``, type ``npy``) or, with
``--teacher SPEC``, a teacher run online. With ``--teacher_cnn_features true`` the student's CNN
is the teacher's, frozen, and its output is read from the dump too (data name ``cnn_feats``),
or, with the teacher online, taken from the teacher's own pass.
Stages are measured in updates over the whole run: ``--num_iters_per_epoch`` is required so the
run's length is known before it starts.
"""

import argparse
import json
import logging
from pathlib import Path
from typing import Callable, Collection, Dict, List, Tuple

import numpy as np
import torch
from typeguard import typechecked

from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.frontend.cnn import CNNFrontend
from espnet2.asr.preencoder.abs_preencoder import AbsPreEncoder
from espnet2.asr.preencoder.linear import LinearProjection
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.class_choices import ClassChoices
from espnet2.utils.types import int_or_none, str2bool, str_or_none
from espnet2_stacking.distill.collate import DistillCollateFn
from espnet2_stacking.distill.espnet_model import CNN_FEATS, DistillModel, target_name
from espnet2_stacking.distill.inputs import check_training_inputs
from espnet2_stacking.distill.loss import DistillationLoss
from espnet2_stacking.encoder.stacking_encoder import StackingTransformerEncoder
from espnet2_stacking.stacking import StackingConfigError, plan_stacking
from espnet2_stacking.train.stacking_trainer import StackingTrainer

MAX_TEACHER_STATES = 64  # optional data names target_0 .. target_63

frontend_choices = ClassChoices(
    name="frontend",
    classes=dict(wav2vec_cnn=CNNFrontend),
    type_check=AbsFrontend,
    default="wav2vec_cnn",
)
preencoder_choices = ClassChoices(
    name="preencoder",
    classes=dict(linear=LinearProjection),
    type_check=AbsPreEncoder,
    default="linear",
    optional=True,
)
encoder_choices = ClassChoices(
    name="encoder",
    classes=dict(stacking_transformer=StackingTransformerEncoder),
    type_check=torch.nn.Module,
    default="stacking_transformer",
)
loss_choices = ClassChoices(
    name="loss",
    classes=dict(distill=DistillationLoss),
    type_check=torch.nn.Module,
    default="distill",
)


def int_list(value) -> List[int]:
    """'4,8,12' (command line) or [4, 8, 12] (YAML) -> [4, 8, 12]."""
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    try:
        return [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{value}'")


def same_teacher(a: str, b: str) -> bool:
    """Two teacher specs name the same teacher: equal, or paths to the same file."""
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())


class DistillTask(AbsTask):
    num_optimizers: int = 1
    class_choices_list = [frontend_choices, preencoder_choices, encoder_choices, loss_choices]
    trainer = StackingTrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Teacher")
        group.add_argument("--teacher", type=str_or_none, default=None,
                           help="Teacher spec for online targets (fairseq .pt, HF dir, ESPnet "
                                "SSL .pth, random:...). None: targets come from dumped data "
                                "named target_<t>")
        group.add_argument("--teacher_dtype", type=str, default="float32",
                           choices=["float32", "bfloat16", "float16"],
                           help="dtype the online teacher runs in")
        group.add_argument("--teacher_normalize", type=str, default="none",
                           choices=["none", "layer_norm"],
                           help="Per-frame LayerNorm of online teacher states (use the same "
                                "as the dump's --normalize)")
        group.add_argument("--init_from_teacher", type=str_or_none, default=None,
                           help="Teacher spec whose CNN initialises the student's frontend "
                                "(DistilHuBERT); needs frontend_conf.shapes equal to the "
                                "teacher's. Applied at a fresh start, never over a resume")
        group.add_argument("--teacher_cnn_features", type=str2bool, default=False,
                           help="The student's CNN is the teacher's (--init_from_teacher, "
                                "required), frozen, and its output is read from the dump (data "
                                "name cnn_feats: dump_teacher_feats --cnn_features) or, with "
                                "--teacher (the same), taken from the online teacher's pass, "
                                "instead of being computed a second time")
        group.add_argument("--teacher_num_layers", type=int, default=12,
                           help="Transformer layers of the teacher (L_T)")
        group.add_argument("--teacher_hidden_size", type=int, default=768,
                           help="Width of the teacher's hidden states")
        group.add_argument("--target_layers", type=int_list, default=[4, 8, 12],
                           help="Teacher hidden states to predict, e.g. 4,8,12 "
                                "(0 = transformer input, k = output of layer k)")

        group = parser.add_argument_group(description="Stacking")
        group.add_argument("--stacking_method", type=str, default="interleaved",
                           choices=["interleaved", "stackbert", "gradual", "midas", "none"])
        group.add_argument("--stacking_depths", type=int_list, default=[3, 6, 9, 12],
                           help="Depth of each stage, e.g. 3,6,9,12; the last is the "
                                "student's depth. One depth means no growth")
        group.add_argument("--stacking_anchor", type=str, default="last",
                           choices=["last", "first"],
                           help="interleaved: copy the last or first layer of each group")
        group.add_argument("--stacking_block_size", type=int_or_none, default=None,
                           help="midas: block size (default: the first depth)")
        group.add_argument("--stacking_schedule", type=str, default="eql",
                           help="Stage lengths: eql, prop:<alpha> or fractions 0.1,0.2,...")
        group.add_argument("--alignment_mode", type=str, default="l2l",
                           choices=["l2l", "pred", "l2l_proportional"],
                           help="Which student state predicts which teacher state")
        group.add_argument("--optimizer_state_rule", type=str, default="copy",
                           choices=["copy", "reset", "reset_all"],
                           help="The optimizer state at a growth: copy (new layers take their "
                                "source's moments), reset (new layers start with none) or "
                                "reset_all (a fresh optimizer; the bench's choice: README, "
                                "the optimizer state at a growth)")
        group.add_argument("--total_updates", type=int_or_none, default=None,
                           help="Updates of the whole run (default: max_epoch x "
                                "num_iters_per_epoch / accum_grad)")

        group = parser.add_argument_group(description="Batches")
        group.add_argument("--crop_mode", type=str, default="random",
                           choices=["random", "shortest", "none"],
                           help="random: crop long utterances to --crop_max_samples; "
                                "shortest: crop the batch to its shortest utterance")
        group.add_argument("--crop_max_samples", type=int_or_none, default=250000,
                           help="Longest training crop in samples (audio and targets alike)")
        group.add_argument("--check_inputs", type=str2bool, default=True,
                           help="Before training, check that every list holds the same "
                                "utterances, every audio path exists and every dumped "
                                "target is complete and of the right shape (headers only)")

        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    def get_parser(cls) -> argparse.ArgumentParser:
        from espnet2_stacking.register import register_scheduler

        register_scheduler()  # before ESPnet lists the --scheduler choices
        parser = super().get_parser()
        # Layers past the active depth get no gradient: DDP must be told (ESPNET.md).
        parser.set_defaults(unused_parameters=True, use_tensorboard=False)
        return parser

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        # Multi-GPU workers are spawned fresh processes: register again before building.
        from espnet2_stacking.register import register_scheduler

        register_scheduler()
        # Every rank checks (headers only, seconds): the process group does not exist yet, so
        # rank 0 could not hold the others at a barrier; this way bad input stops every rank
        # with the same message instead of leaving the others waiting at the first all-reduce.
        if not args.collect_stats:
            cls.check_teacher_cnn_features(args)
            if args.check_inputs:
                cls.check_inputs(args)
        super().main_worker(args)
        # ESPnet leaves the process group up; tearing gloo's threads down at interpreter exit
        # can abort a rank that already finished ("terminate called without an active
        # exception"). Leave together, then close the group.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()

    @classmethod
    def check_teacher_cnn_features(cls, args: argparse.Namespace) -> None:
        """Dumped CNN features stand in for the student's CNN only when both are the same
        teacher's CNN: --init_from_teacher must name the teacher of the dump."""
        lists = [entry[0] for split in ("train", "valid")
                 for entry in getattr(args, f"{split}_data_path_and_name_and_type") or []
                 if entry[1] == CNN_FEATS]
        if not args.teacher_cnn_features:
            if lists:
                raise StackingConfigError(
                    f"{lists[0]} is given as '{CNN_FEATS}' but --teacher_cnn_features is false: "
                    "set it (the student's CNN then is the teacher's, frozen) or drop the list"
                )
            return
        if args.init_from_teacher is None:
            raise StackingConfigError(
                "--teacher_cnn_features true reads the teacher's CNN output in place of the "
                "student's CNN: give --init_from_teacher SPEC (the teacher of the dump, or "
                "--teacher's) so the student's CNN is that CNN"
            )
        if args.teacher is not None and not lists and not same_teacher(args.teacher, args.init_from_teacher):
            raise StackingConfigError(
                f"--teacher_cnn_features true takes the CNN output from the online teacher's "
                f"pass, but --teacher {args.teacher} is not --init_from_teacher "
                f"{args.init_from_teacher}, whose CNN the student holds"
            )
        for scp in lists:
            meta_file = Path(scp).parent / "meta.json"
            if not meta_file.exists():
                continue  # not made by dump_teacher_feats: the user vouches for it
            dumped = json.loads(meta_file.read_text())["teacher"]
            if not same_teacher(dumped, args.init_from_teacher):
                raise StackingConfigError(
                    f"{scp} holds the CNN output of {dumped} ({meta_file}), but the student's CNN "
                    f"comes from --init_from_teacher {args.init_from_teacher}"
                )

    @classmethod
    def check_inputs(cls, args: argparse.Namespace) -> None:
        """Fail before the first update on lists that would fail mid-epoch (distill/inputs.py)."""
        widths = {}
        given = [entry[1] for split in ("train", "valid")
                 for entry in getattr(args, f"{split}_data_path_and_name_and_type") or []]
        if CNN_FEATS in given:  # the student CNN's width, built only to read it
            widths[CNN_FEATS] = frontend_choices.get_class(args.frontend)(
                **args.frontend_conf).output_size()
        for split in ("train", "valid"):
            entries = getattr(args, f"{split}_data_path_and_name_and_type") or []
            shapes = getattr(args, f"{split}_shape_file") or []
            check_training_inputs(entries, shapes[0] if shapes else None,
                                  args.teacher_hidden_size, widths)

    @classmethod
    def target_data_names(cls, args: argparse.Namespace) -> List[str]:
        return [target_name(t) for t in sorted(args.target_layers)]

    @classmethod
    @typechecked
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]],
        Tuple[List[str], Dict[str, torch.Tensor]],
    ]:
        targets = [] if args.teacher is not None else cls.target_data_names(args)
        option = f"{'train' if train else 'valid'}_data_path_and_name_and_type"
        given = {entry[1] for entry in getattr(args, option)}
        missing = [t for t in targets if t not in given]
        if missing:
            raise ValueError(
                f"no teacher targets: --{option} lacks {missing} and no --teacher is given; pass "
                "the dumped states (stage 2, e.g. dump/train/layer_4.scp,target_4,npy) or run "
                "the teacher online with --teacher SPEC"
            )
        if getattr(args, "teacher_cnn_features", False):
            if CNN_FEATS in given:
                targets = targets + [CNN_FEATS]
            elif args.teacher is None:  # online, the teacher's pass gives it
                raise ValueError(
                    f"--teacher_cnn_features true but --{option} lacks '{CNN_FEATS}': pass the "
                    f"dumped CNN output (dump_teacher_feats --cnn_features true, e.g. "
                    f"dump/train/cnn.scp,{CNN_FEATS},npy)"
                )
        if train:
            return DistillCollateFn(targets, crop_mode=args.crop_mode,
                                    max_samples=args.crop_max_samples)
        return DistillCollateFn(targets, crop_mode="none")

    @classmethod
    def build_preprocess_fn(cls, args, train):
        return None

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("speech",)

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return tuple(target_name(t) for t in range(MAX_TEACHER_STATES)) + (CNN_FEATS,)

    @classmethod
    def total_updates(cls, args: argparse.Namespace) -> int:
        if args.total_updates is not None:
            return args.total_updates
        if args.num_iters_per_epoch is None:
            raise StackingConfigError(
                "DistillTask measures stages in updates: give --num_iters_per_epoch (or "
                "--total_updates) so the run's length is known before it starts"
            )
        return args.max_epoch * args.num_iters_per_epoch // args.accum_grad

    @classmethod
    def build_plan(cls, args: argparse.Namespace):
        return plan_stacking(
            args.stacking_method,
            list(args.stacking_depths),
            anchor=args.stacking_anchor,
            block_size=args.stacking_block_size,
            teacher_layers=args.teacher_num_layers,
            targets=list(args.target_layers),
            mode=args.alignment_mode,
            schedule=args.stacking_schedule,
            total_updates=cls.total_updates(args),
        )

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> DistillModel:
        teacher = None
        if args.teacher is not None:
            from espnet2_stacking.teachers import load_teacher

            teacher = load_teacher(args.teacher, dtype=args.teacher_dtype,
                                   normalize=args.teacher_normalize)
            # The teacher is the truth about itself: record it so config.yaml is exact.
            args.teacher_num_layers = teacher.num_layers
            args.teacher_hidden_size = teacher.hidden_size
        plan = cls.build_plan(args)

        # 1. frontend: waveform -> CNN features (320x down, the teacher's frame rate)
        frontend = frontend_choices.get_class(args.frontend)(**args.frontend_conf)
        input_size = frontend.output_size()
        # 2. preencoder: CNN features -> encoder width
        preencoder = None
        if args.preencoder is not None:
            preencoder = preencoder_choices.get_class(args.preencoder)(
                input_size=input_size, **args.preencoder_conf
            )
            input_size = preencoder.output_size()
        # 3. encoder: allocated at the final depth, active at the first
        encoder_conf = dict(args.encoder_conf)
        for key, want in (("num_blocks", plan.depths[-1]), ("initial_depth", plan.depths[0])):
            if key in encoder_conf and encoder_conf[key] != want:
                raise StackingConfigError(
                    f"encoder_conf.{key}={encoder_conf[key]} disagrees with "
                    f"stacking_depths={list(plan.depths)} (leave {key} out: it is derived)"
                )
            encoder_conf[key] = want
        encoder = encoder_choices.get_class(args.encoder)(input_size=input_size, **encoder_conf)
        # 4. loss and model
        loss = loss_choices.get_class(args.loss)(**args.loss_conf)
        model = DistillModel(
            frontend=frontend,
            preencoder=preencoder,
            encoder=encoder,
            plan=plan,
            teacher_hidden_size=args.teacher_hidden_size,
            loss=loss,
            optimizer_state_rule=args.optimizer_state_rule,
        )
        if args.init_from_teacher is not None:
            cls.init_frontend_from_teacher(model, args, teacher)
        if getattr(args, "teacher_cnn_features", False):
            # it is the teacher's CNN, whose output the batches carry or the online teacher
            # gives (see DistillModel.forward)
            model.frontend.requires_grad_(False)
        if teacher is not None:
            # the student's CNN is this teacher's, frozen: take its output from the teacher's pass
            cnn_from_teacher = (getattr(args, "teacher_cnn_features", False)
                                and args.init_from_teacher is not None
                                and same_teacher(args.teacher, args.init_from_teacher))
            model.set_teacher(teacher, cnn_from_teacher=cnn_from_teacher)
        return model

    @classmethod
    def init_frontend_from_teacher(cls, model: DistillModel, args, teacher) -> None:
        """Copy the teacher's CNN into the student's frontend (exact: same blocks).

        Only the CNN: ESPnet's transformer block uses ReLU where HuBERT/wav2vec 2.0 use GELU,
        and its positional convolution has no residual, so teacher layers cannot be copied
        into it exactly.
        """
        from espnet2_stacking.teachers import load_teacher

        if teacher is None or args.init_from_teacher != args.teacher:
            teacher = load_teacher(args.init_from_teacher)
        if not hasattr(teacher, "cnn_state_dict"):
            raise ValueError(f"--init_from_teacher {args.init_from_teacher}: this teacher has no "
                             "CNN to copy (fairseq, unilm, Hugging Face, random and ESPnet SSL "
                             "teachers do)")
        state = teacher.cnn_state_dict()
        mine = model.frontend.state_dict()
        wrong = sorted(set(state) ^ set(mine)) + [
            f"{k} {tuple(v.shape)} vs {tuple(mine[k].shape)}"
            for k, v in state.items() if k in mine and v.shape != mine[k].shape]
        if wrong:
            raise ValueError(
                f"--init_from_teacher {args.init_from_teacher}: the teacher's CNN does not fit the "
                f"student's frontend ({wrong[:3]}); set frontend_conf (shapes, norm_mode, bias) to "
                "the teacher's"
            )
        model.frontend.load_state_dict(state, strict=True)
        logging.info(f"initialised the student's CNN from {args.init_from_teacher}")

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model: torch.nn.Module):
        optimizers = super().build_optimizers(args, model)
        # Count updates where they happen: after a real optimizer step (a step skipped for a
        # non-finite gradient is not an update, and accum_grad batches make one).
        optimizers[0].register_step_post_hook(lambda *_: model.count_update())
        # One learning-rate schedule over the whole run: fill in its length.
        if args.scheduler == "warmuplineardecaylr" and "total_steps" not in args.scheduler_conf:
            args.scheduler_conf = {**args.scheduler_conf, "total_steps": model.plan.total_updates}
        return optimizers
