"""DistillTask: distil a speech foundation model into a student that grows by stacking.

    python -m espnet2_stacking.bin.distill_train --config conf/distill.yaml \
        --train_data_path_and_name_and_type data/train/wav.scp,speech,sound \
        --train_shape_file data/train/utt2num_samples --train_dump_dir dump/train \
        --valid_data_path_and_name_and_type data/dev/wav.scp,speech,sound \
        --valid_shape_file data/dev/utt2num_samples --valid_dump_dir dump/dev ...

Targets are dumped teacher states (``--{train,valid}_dump_dir``: stage 2's output dirs, whose
``meta.json`` names the teacher and its layers; the task adds their lists as data named
``target_<t>``, type ``npy``) or come from a teacher run online (``--teacher SPEC``).
``student_cnn`` says what the student's CNN is: its own (``trained``), the teacher's as a start
(``teacher_init``), or the teacher's, frozen (``teacher_frozen``): then it is not even run when
the dump holds its output (``cnn.scp``, data name ``cnn_feats``) or the online teacher's pass
gives it. The stacking settings are one mapping, ``stacking_conf``, whose keys are
``plan_stacking``'s arguments, so ``stack_plan --config`` plans exactly the run configured.
Stages are measured in updates over the whole run: ``--num_iters_per_epoch`` is required so the
run's length is known before it starts.
"""

import argparse
import json
import logging
from pathlib import Path
from typing import Callable, Collection, Dict, List, Optional, Tuple

import numpy as np
import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.frontend.cnn import CNNFrontend
from espnet2.asr.preencoder.abs_preencoder import AbsPreEncoder
from espnet2.asr.preencoder.linear import LinearProjection
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.class_choices import ClassChoices
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import int_or_none, str2bool, str_or_none
from typeguard import typechecked

from espnet2_stacking.data.cropped_npy import CROPPED_NPY
from espnet2_stacking.data.training_inputs import check_training_inputs_once
from espnet2_stacking.stacking import StackingConfigError, plan_stacking
from espnet2_stacking.student.collate import DistillCollateFn
from espnet2_stacking.student.espnet_model import CNN_FEATS, DistillModel, target_name
from espnet2_stacking.student.hubert_encoder import StackingHubertEncoder
from espnet2_stacking.student.loss import DistillationLoss
from espnet2_stacking.student.stacking_encoder import StackingTransformerEncoder
from espnet2_stacking.tasks.distill_config import (
    RENAMED,
    STACKING_DEFAULTS,
    STUDENT_CNN,
    count_total_updates,
    refuse_renamed,
    stacking_kwargs,
)
from espnet2_stacking.training.dump_check import check_ranks_see_the_same_dump
from espnet2_stacking.training.stacking_trainer import StackingTrainer

MAX_TEACHER_STATES = 64  # optional data names target_0 .. target_63
MAX_PASSES_PER_EPOCH = 2  # more is a config sized for another training set
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
    # stacking_transformer: ESPnet's TransformerEncoder (exports to a stock ESPnet SSL model);
    # hubert: HuBERT's own encoder (exports to Hugging Face, torchaudio, ESPnet's HuBERT encoder)
    classes=dict(stacking_transformer=StackingTransformerEncoder, hubert=StackingHubertEncoder),
    type_check=torch.nn.Module,
    default="stacking_transformer",
)
loss_choices = ClassChoices(
    name="loss",
    classes=dict(distill=DistillationLoss),
    type_check=torch.nn.Module,
    default="distill",
)


def read_dump_meta(dump_dir) -> dict:
    """meta.json of a dump_teacher_feats output dir (teacher, layers, widths, cnn_features)."""
    meta_file = Path(dump_dir) / "meta.json"
    if not meta_file.is_file():
        raise StackingConfigError(
            f"{dump_dir}: no meta.json; is it an output dir of dump_teacher_feats (stage 2)?")
    meta = json.loads(meta_file.read_text())
    missing = [k for k in ("teacher", "layers", "hidden_size", "num_layers") if k not in meta]
    if missing:
        raise StackingConfigError(f"{meta_file}: lacks {missing}")
    return meta


def copy_teacher_cnn(model: DistillModel, spec: str, teacher) -> None:
    """Copy the teacher's CNN into the student's frontend (exact: same blocks).

    Only the CNN: ESPnet's transformer block uses ReLU where HuBERT/wav2vec 2.0 use GELU,
    and its positional convolution has no residual, so teacher layers cannot be copied
    into it exactly.
    """
    if not hasattr(teacher, "cnn_state_dict"):
        raise ValueError(f"student_cnn: the teacher {spec} has no CNN to copy (fairseq, unilm, "
                         "Hugging Face, random and ESPnet SSL teachers do)")
    state = teacher.cnn_state_dict()
    mine = model.frontend.state_dict()
    wrong = sorted(set(state) ^ set(mine)) + [
        f"{k} {tuple(v.shape)} vs {tuple(mine[k].shape)}"
        for k, v in state.items() if k in mine and v.shape != mine[k].shape]
    if wrong:
        raise ValueError(
            f"student_cnn: the CNN of the teacher {spec} does not fit the student's frontend "
            f"({wrong[:3]}); set frontend_conf (shapes, norm_mode, bias) to the teacher's"
        )
    model.frontend.load_state_dict(state, strict=True)
    logging.info(f"the student's CNN starts as the CNN of {spec}")


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
                                "SSL .pth, random:...). None: targets come from the dump dirs "
                                "(--train_dump_dir) or from data named target_<t>")
        group.add_argument("--teacher_dtype", type=str, default="float32",
                           choices=["float32", "bfloat16", "float16"],
                           help="dtype the online teacher runs in")
        group.add_argument("--teacher_normalize", type=str, default="none",
                           choices=["none", "layer_norm"],
                           help="Per-frame LayerNorm of online teacher states (use the same "
                                "as the dump's --normalize)")
        group.add_argument("--teacher_num_layers", type=int, default=12,
                           help="Transformer layers of the teacher (L_T); an online teacher or "
                                "the dump's meta.json overrides it")
        group.add_argument("--teacher_hidden_size", type=int, default=768,
                           help="Width of the teacher's hidden states; an online teacher or the "
                                "dump's meta.json overrides it")
        for split in ("train", "valid"):
            group.add_argument(f"--{split}_dump_dir", type=str_or_none, default=None,
                               help=f"Stage 2's dump of the {split} set (dump_teacher_feats "
                                    "--out_dir): its layer_<t>.scp lists become data target_<t> "
                                    "and, with student_cnn teacher_frozen, its cnn.scp data "
                                    "cnn_feats")
        group.add_argument("--student_cnn", type=str, default="trained", choices=STUDENT_CNN,
                           help="The student's CNN: trained (its own, from a random init), "
                                "teacher_init (starts as the teacher's, trains; DistilHuBERT) "
                                "or teacher_frozen (the teacher's, frozen: its output is read "
                                "from the dump's cnn.scp or taken from the online teacher's "
                                "pass instead of being computed again). The teacher is "
                                "--teacher, or the one the dump's meta.json names")

        group = parser.add_argument_group(description="Stacking")
        group.add_argument("--stacking_conf", action=NestedDictAction, default=dict(),
                           help="The stacking plan, as plan_stacking's keyword arguments: "
                                "method (interleaved, stackbert, gradual, midas, none), depths "
                                "(e.g. [3, 6, 9, 12]), targets (teacher states, e.g. [4, 8, 12]), "
                                "mode (l2l, pred, l2l_proportional), schedule (eql, prop:<a> or "
                                "fractions), anchor (last, first), block_size (midas). "
                                f"Defaults: {STACKING_DEFAULTS}. `stack_plan --config` reads it")
        group.add_argument("--total_updates", type=int_or_none, default=None,
                           help="Updates of the whole run (default: max_epoch x "
                                "(num_iters_per_epoch // accum_grad), as ESPnet counts them)")
        # Options of earlier versions: accepted by the parser only to be refused with the new name.
        for old in RENAMED:
            group.add_argument(f"--{old}", default=None, help=argparse.SUPPRESS)

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
        from espnet2_stacking.tasks.register import register_scheduler

        register_scheduler()  # before ESPnet lists the --scheduler choices
        parser = super().get_parser()
        # Layers past the active depth get no gradient: DDP must be told (docs/method.md section 9).
        parser.set_defaults(unused_parameters=True, use_tensorboard=False)
        return parser

    @classmethod
    def check_required_command_args(cls, args: argparse.Namespace):
        super().check_required_command_args(args)
        # ESPnet's main() calls this right after parsing, before spawning any worker: resolve
        # the options that expand into others here, once.
        cls.resolve_args(args)

    @classmethod
    def resolve_args(cls, args: argparse.Namespace) -> None:
        """Refuse options of earlier versions, read the dump dirs' meta.json, add their lists
        as data options and check ``student_cnn`` against them (idempotent)."""
        refuse_renamed([name for name in RENAMED if getattr(args, name, None) is not None])
        for name in RENAMED:  # keep them out of the run's config.yaml
            if hasattr(args, name):
                delattr(args, name)
        cls.stacking_kwargs(args)  # unknown keys fail here, not after the data is read
        for split in ("train", "valid"):
            dump_dir = getattr(args, f"{split}_dump_dir")
            if dump_dir is None:
                continue
            meta = read_dump_meta(dump_dir)
            if args.teacher is None:  # the dump is the truth about its teacher
                args.teacher_num_layers = meta["num_layers"]
                args.teacher_hidden_size = meta["hidden_size"]
            option = f"{split}_data_path_and_name_and_type"
            entries = list(getattr(args, option) or [])
            given = {entry[1] for entry in entries}
            wanted = [] if args.teacher is not None else [
                (f"{dump_dir}/layer_{t}.scp", target_name(t)) for t in cls.target_states(args)]
            if args.student_cnn == "teacher_frozen" and meta.get("cnn_features"):
                wanted.append((f"{dump_dir}/cnn.scp", CNN_FEATS))
            for scp, name in wanted:
                if name in given:
                    continue
                if not Path(scp).is_file():
                    raise StackingConfigError(
                        f"--{split}_dump_dir {dump_dir}: {Path(scp).name} missing (the dump "
                        f"holds layers {meta['layers']}; rerun stage 2 with the config's targets)")
                entries.append((scp, name, CROPPED_NPY))  # read by crop, float16 to the device
            setattr(args, option, entries)
        cls.check_student_cnn(args)
        cls.check_epoch_size(args)

    @classmethod
    def check_epoch_size(cls, args: argparse.Namespace) -> None:
        """Refuse an epoch that goes over the training set more than MAX_PASSES_PER_EPOCH times
        (a config sized for 960 h run on 100 h): the schedule, the stage lengths and the
        epochs all say one thing and the run does another."""
        shapes = getattr(args, "train_shape_file", None) or []
        if (args.num_iters_per_epoch is None or not shapes or args.collect_stats
                or args.batch_type not in ("unsorted", "sorted", "folded")):
            return  # batch_bins-sized batches have no fixed number of utterances
        with open(shapes[0], encoding="utf-8") as f:
            utterances = sum(1 for line in f if line.strip())
        passes = args.num_iters_per_epoch * args.batch_size / max(utterances, 1)
        if passes > MAX_PASSES_PER_EPOCH:
            one_pass = -(-utterances // args.batch_size)
            raise StackingConfigError(
                f"num_iters_per_epoch={args.num_iters_per_epoch} x batch_size={args.batch_size} "
                f"goes over the {utterances} utterances of {shapes[0]} {passes:.1f} times an epoch; "
                f"one pass is {one_pass} (set num_iters_per_epoch, or --total_updates for a budget)")

    @classmethod
    def get_default_config(cls) -> Dict:
        # --print_config shows the options of this version only
        config = super().get_default_config()
        for name in RENAMED:
            config.pop(name, None)
        return config

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        # Multi-GPU workers are spawned fresh processes: register again before building.
        from espnet2_stacking.tasks.register import register_scheduler

        register_scheduler()
        # Every rank checks (headers only, seconds): the process group does not exist yet, so
        # rank 0 could not hold the others at a barrier; this way bad input stops every rank
        # with the same message instead of leaving the others waiting at the first all-reduce.
        if not args.collect_stats and args.check_inputs:
            cls.check_inputs(args)
        # ESPnet leaves the process group up; tearing gloo's threads down at interpreter exit
        # can abort a rank ("terminate called without an active exception", exit -6) and hide
        # the error it stopped on. Close the group on the way out: together after a finished
        # run, at once after a refusal (every rank refuses the same dump check together).
        group_up = lambda: torch.distributed.is_available() and torch.distributed.is_initialized()  # noqa: E731
        try:
            super().main_worker(args)
        except BaseException:
            if group_up():
                torch.distributed.destroy_process_group()
            raise
        if group_up():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()

    @classmethod
    def stacking_kwargs(cls, args: argparse.Namespace) -> dict:
        return stacking_kwargs(args.stacking_conf)

    @classmethod
    def target_states(cls, args: argparse.Namespace) -> List[int]:
        """The teacher states the run predicts (stacking_conf.targets), sorted."""
        return sorted(cls.stacking_kwargs(args)["targets"])

    @classmethod
    def cnn_feats_lists(cls, args: argparse.Namespace) -> List[str]:
        return [entry[0] for split in ("train", "valid")
                for entry in getattr(args, f"{split}_data_path_and_name_and_type") or []
                if entry[1] == CNN_FEATS]

    @classmethod
    def cnn_teacher(cls, args: argparse.Namespace) -> Optional[str]:
        """The teacher whose CNN the student's is (student_cnn teacher_*): the online
        --teacher, else the teacher of the dump (its meta.json); None for trained."""
        if args.student_cnn == "trained":
            return None
        if args.teacher is not None:
            return args.teacher
        dump_dir = args.train_dump_dir or args.valid_dump_dir
        if dump_dir is None:
            raise StackingConfigError(
                f"student_cnn {args.student_cnn} takes the teacher's CNN: give the online "
                "--teacher SPEC, or --train_dump_dir (its meta.json names the teacher)")
        teacher = read_dump_meta(dump_dir)["teacher"]
        # a recipe dumps with the teacher's path relative to its own dir; from elsewhere (a
        # bench, another recipe) that path names nothing, and the loader's own error would not
        # say where it came from
        from espnet2_stacking.upstreams.load import names_a_path

        if names_a_path(teacher) and not Path(teacher).is_absolute() and not Path(teacher).exists():
            raise StackingConfigError(
                f"{Path(dump_dir) / 'meta.json'} names teacher '{teacher}', a path relative to "
                f"the directory the dump was made in, and {Path.cwd()} has none: the student's "
                f"CNN is that teacher's (student_cnn {args.student_cnn}). Run from that "
                "directory, or dump again with an absolute --teacher path")
        return teacher

    @classmethod
    def check_student_cnn(cls, args: argparse.Namespace) -> None:
        """student_cnn, resolved and checked in one place: dumped CNN output stands in for the
        student's CNN only when the student's CNN is that teacher's CNN, frozen."""
        lists = cls.cnn_feats_lists(args)
        if args.student_cnn != "teacher_frozen":
            if lists:
                raise StackingConfigError(
                    f"{lists[0]} is given as '{CNN_FEATS}' but student_cnn is {args.student_cnn}: "
                    "set student_cnn teacher_frozen (the student's CNN then is the teacher's, "
                    "frozen) or drop the list")
            cls.cnn_teacher(args)  # teacher_init needs a teacher to start from
            return
        teacher = cls.cnn_teacher(args)
        dumps = {Path(scp).parent for scp in lists}
        dumps |= {Path(d) for d in (args.train_dump_dir, args.valid_dump_dir) if d is not None}
        for dump_dir in sorted(dumps):
            if not (dump_dir / "meta.json").exists():
                continue  # not made by dump_teacher_feats: the user vouches for it
            dumped = read_dump_meta(dump_dir)["teacher"]
            if not same_teacher(dumped, teacher):
                raise StackingConfigError(
                    f"{dump_dir} holds the states of {dumped} ({dump_dir / 'meta.json'}), but "
                    f"the student's CNN is {teacher}'s (student_cnn teacher_frozen)")
        if not lists and args.teacher is None:
            logging.info("student_cnn teacher_frozen: the dump holds no CNN output "
                         "(dump_teacher_feats --cnn_features true adds it); the frozen CNN "
                         "runs every step")

    @classmethod
    def check_inputs(cls, args: argparse.Namespace) -> None:
        """Fail before the first update on lists that would fail mid-epoch
        (data/training_inputs.py)."""
        widths = {}
        if cls.cnn_feats_lists(args):  # the student CNN's width, built only to read it
            widths[CNN_FEATS] = frontend_choices.get_class(args.frontend)(
                **args.frontend_conf).output_size()
        for split in ("train", "valid"):
            entries = getattr(args, f"{split}_data_path_and_name_and_type") or []
            shapes = getattr(args, f"{split}_shape_file") or []
            # a dump dir records a passed check, so a restart (or another rank) skips it
            check_training_inputs_once(entries, shapes[0] if shapes else None,
                                       args.teacher_hidden_size, widths,
                                       record_dir=getattr(args, f"{split}_dump_dir"))

    @classmethod
    @typechecked
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]],
        Tuple[List[str], Dict[str, torch.Tensor]],
    ]:
        targets = [] if args.teacher is not None else [target_name(t) for t in cls.target_states(args)]
        option = f"{'train' if train else 'valid'}_data_path_and_name_and_type"
        given = {entry[1] for entry in getattr(args, option)}
        missing = [t for t in targets if t not in given]
        if missing:
            raise ValueError(
                f"no teacher targets: --{option} lacks {missing} and no --teacher is given; pass "
                f"stage 2's dump (--{'train' if train else 'valid'}_dump_dir dump/<set>) or run "
                "the teacher online with --teacher SPEC"
            )
        if CNN_FEATS in given:
            targets = targets + [CNN_FEATS]
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
        return count_total_updates(args.total_updates, args.max_epoch, args.num_iters_per_epoch,
                                   args.accum_grad)

    @classmethod
    def build_plan(cls, args: argparse.Namespace):
        conf = cls.stacking_kwargs(args)
        return plan_stacking(conf.pop("method"), conf.pop("depths"), **conf,
                             teacher_layers=args.teacher_num_layers,
                             total_updates=cls.total_updates(args))

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> DistillModel:
        # the process group is up by now (ESPnet builds the model after it)
        check_ranks_see_the_same_dump([getattr(args, "train_dump_dir", None),
                                       getattr(args, "valid_dump_dir", None)])
        teacher = None
        if args.teacher is not None:
            from espnet2_stacking.upstreams import load_upstream

            teacher = load_upstream(args.teacher, dtype=args.teacher_dtype,
                                    normalize=args.teacher_normalize)
            # The teacher is the truth about itself: record it so config.yaml is exact.
            args.teacher_num_layers = teacher.num_layers
            args.teacher_hidden_size = teacher.hidden_size
        cnn_teacher = cls.cnn_teacher(args)
        model = cls.build_student(args, cnn_teacher, teacher)
        if teacher is not None:
            # the student's CNN is this teacher's, frozen: take its output from the teacher's pass
            cnn_from_teacher = (args.student_cnn == "teacher_frozen"
                                and same_teacher(args.teacher, cnn_teacher))
            model.set_teacher(teacher, cnn_from_teacher=cnn_from_teacher)
        else:
            cls.attach_target_decoders(args, model)
        return model

    @classmethod
    def attach_target_decoders(cls, args: argparse.Namespace, model: DistillModel) -> None:
        """int8 / pq dumps hold codes: the model decodes them on its device with the dumps'
        codec files (checked here against each dump's teacher, streams and digests)."""
        from espnet2_stacking.student.target_codec import dump_decoders

        streams = {target_name(t): f"layer_{t}" for t in cls.target_states(args)}
        if cls.cnn_feats_lists(args):
            streams[CNN_FEATS] = "cnn"
        decoders = dump_decoders([args.train_dump_dir, args.valid_dump_dir], streams)
        if decoders:
            model.set_target_decoders(decoders)

    @classmethod
    def build_student(cls, args: argparse.Namespace, cnn_teacher: Optional[str] = None,
                      loaded_teacher=None) -> DistillModel:
        """The DistillModel without an online teacher; its CNN copied from ``cnn_teacher``
        (a spec; ``loaded_teacher`` when it is already loaded) when given."""
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
                    f"stacking_conf.depths={list(plan.depths)} (leave {key} out: it is derived)"
                )
            encoder_conf[key] = want
        encoder_class = encoder_choices.get_class(args.encoder)
        if encoder_class is StackingHubertEncoder and preencoder is not None:
            raise StackingConfigError(
                f"encoder hubert projects the CNN's output itself (HuBERT's feature projection): "
                f"set preencoder: null (got preencoder {args.preencoder})")
        encoder = encoder_class(input_size=input_size, **encoder_conf)
        # 4. loss and model
        loss = loss_choices.get_class(args.loss)(**args.loss_conf)
        model = DistillModel(
            frontend=frontend,
            preencoder=preencoder,
            encoder=encoder,
            plan=plan,
            teacher_hidden_size=args.teacher_hidden_size,
            loss=loss,
        )
        if cnn_teacher is not None:
            if loaded_teacher is None or not same_teacher(cnn_teacher, args.teacher or ""):
                from espnet2_stacking.upstreams import load_upstream

                loaded_teacher = load_upstream(cnn_teacher)
            copy_teacher_cnn(model, cnn_teacher, loaded_teacher)
        if args.student_cnn == "teacher_frozen":
            # it is the teacher's CNN, whose output the batches carry, the online teacher
            # gives, or the frozen copy computes (see DistillModel.forward)
            model.frontend.requires_grad_(False)
        return model

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
