"""The distillation model: a growing student, projection heads, and the distillation loss.

    speech -> frontend (wav2vec2 CNN) -> preencoder (linear) -> stacking encoder -> h_0..h_d
    h_s --head_t--> prediction of teacher state t, for each pair (s, t) of the stacking plan

Teacher targets come either from the batch (dumped by stage 2, data names ``target_<t>``) or
from a teacher run online inside forward (frozen, eval mode, no_grad, never in state_dict()).
A frontend that is the teacher's CNN, frozen, need not run at all: its output, dumped beside
the targets (data name ``cnn_feats``), is read from the batch instead, or, with the teacher
online, taken from the teacher's own pass (``set_teacher(teacher, cnn_from_teacher=True)``).
Training progress (the update count and the training wall time) lives in float64 buffers so
that a checkpoint carries it and a resume grows at exactly the same update; they stay float64
when the model is cast (ESPnet's ``--train_dtype``: float16 counts exactly only to 2048,
bfloat16 to 256).
"""

import time
from typing import Dict, List, Optional, Tuple

import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.preencoder.abs_preencoder import AbsPreEncoder
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from typeguard import typechecked

from espnet2_stacking.stacking import StackingPlan
from espnet2_stacking.student.loss import DistillationLoss
from espnet2_stacking.student.stacking_encoder import GrowableLayers

CNN_FEATS = "cnn_feats"  # the data name of the teacher's dumped CNN output
# the progress buffers: float64 whatever dtype the rest of the model is cast to
PROGRESS_BUFFERS = ("num_updates", "train_seconds", "skipped_updates")


def target_name(teacher_state: int) -> str:
    """The data name of a dumped teacher state in the batch."""
    return f"target_{teacher_state}"


class DistillModel(AbsESPnetModel):
    """Student + heads + loss; grows its encoder by the stacking plan.

    Args:
        frontend: waveform -> CNN features (ESPnet's CNNFrontend, 320x downsampling).
        preencoder: CNN features -> encoder width (ESPnet's LinearProjection), or None.
        encoder: a stacking-aware encoder (``stacking_transformer`` or ``hubert``), built at
            the plan's first depth.
        plan: the stacking plan (growth maps, supervision pairs per depth, boundaries).
        teacher_hidden_size: width of the teacher states the heads predict.
        loss: the distillation loss.
    """

    @typechecked
    def __init__(
        self,
        frontend: AbsFrontend,
        preencoder: Optional[AbsPreEncoder],
        encoder: GrowableLayers,
        plan: StackingPlan,
        teacher_hidden_size: int,
        loss: DistillationLoss,
    ):
        super().__init__()
        self.frontend = frontend
        self.preencoder = preencoder
        self.encoder = encoder
        self.plan = plan
        self.loss = loss
        self.teacher_hidden_size = teacher_hidden_size
        # One head per teacher state: a head belongs to its pair, so it carries over growths.
        self.heads = torch.nn.ModuleDict(
            {
                str(t): torch.nn.Linear(encoder.output_size(), teacher_hidden_size)
                for t in plan.teacher_states
            }
        )
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.float64))
        self.register_buffer("train_seconds", torch.zeros((), dtype=torch.float64))
        # updates dropped by the trainer for a non-finite gradient (counted by StackingTrainer)
        self.register_buffer("skipped_updates", torch.zeros((), dtype=torch.float64))
        self._teacher = None
        self._cnn_from_teacher = False
        self._last_update_time: Optional[float] = None

    def _apply(self, fn, recurse: bool = True):
        """Move/cast as nn.Module does, but keep the progress buffers float64.

        A cast (``.to(torch.float16)``, ``.half()``, ``--train_dtype``) would otherwise round the
        update count (float16 stalls at 2048, bfloat16 at 256) and the student would never
        grow. The float64 values are taken before the cast and put back, on the device ``fn``
        moved the buffer to, so nothing is lost.
        """
        before = {name: self._buffers[name] for name in PROGRESS_BUFFERS}
        out = super()._apply(fn, recurse)
        for name, old in before.items():
            new = self._buffers[name]
            if new is not None and new.dtype != torch.float64:
                self._buffers[name] = old.detach().to(device=new.device, dtype=torch.float64)
        return out

    # ---- the teacher (online mode): held outside the module tree --------------------------
    def set_teacher(self, teacher, cnn_from_teacher: bool = False) -> None:
        """Attach a frozen teacher for online targets; it never enters state_dict().

        cnn_from_teacher: the frontend is this teacher's CNN, frozen: take its output from the
        teacher's pass instead of running the same CNN a second time (as the dumped CNN
        output stands in for it).
        """
        if teacher.hidden_size != self.teacher_hidden_size:
            raise ValueError(
                f"the teacher's width is {teacher.hidden_size} but the model was configured "
                f"with teacher_hidden_size={self.teacher_hidden_size}"
            )
        if max(self.plan.teacher_states) > teacher.num_layers:
            raise ValueError(
                f"the plan supervises teacher state {max(self.plan.teacher_states)} but the "
                f"teacher has only {teacher.num_layers} layers"
            )
        if cnn_from_teacher and teacher.cnn_channels != self.frontend.output_size():
            raise ValueError(
                f"the teacher's CNN gives {teacher.cnn_channels} channels but the "
                f"student's frontend {self.frontend.output_size()}: it is not the student's CNN"
            )
        # object.__setattr__ keeps it out of nn.Module's registry (and so out of checkpoints,
        # .parameters() and the optimizer).
        object.__setattr__(self, "_teacher", teacher)
        self._cnn_from_teacher = cnn_from_teacher

    @property
    def teacher(self):
        return self._teacher

    # ---- stored targets held as codes (int8 / pq dumps) --------------------------------
    def set_target_decoders(self, decoders: Dict[str, torch.nn.Module]) -> None:
        """Decoders of stored batch entries by data name (student/target_codec.py): codes
        become frames here, on the model's device; their tables are not in state_dict()."""
        self.target_decoders = torch.nn.ModuleDict(decoders)

    # ---- progress ----------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return self.encoder.depth

    def count_update(self) -> None:
        """Called after every optimizer step (a step post-hook): counts updates and time."""
        now = time.perf_counter()
        if self._last_update_time is not None:
            self.train_seconds += now - self._last_update_time
        self._last_update_time = now
        self.num_updates += 1

    def start_timing(self) -> None:
        """Start the wall clock of training at the start of an epoch's loop."""
        self._last_update_time = time.perf_counter()

    def due_depth(self) -> int:
        """The depth the plan prescribes after ``num_updates`` updates."""
        return self.plan.depth_at(int(self.num_updates.item()))

    def grow_once(self) -> Tuple[int, int, List[int]]:
        """Grow to the plan's next depth; returns (from, to, src)."""
        growth = self.plan.growth_from(self.depth)
        self.encoder.grow(list(growth.src), list(growth.lineage))
        return growth.from_depth, growth.to_depth, list(growth.src)

    # ---- forward -----------------------------------------------------------------------
    def encode(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor,
        cnn_feats: Optional[torch.Tensor] = None, cnn_feats_lengths: Optional[torch.Tensor] = None,
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Student hidden states h_0..h_d, each (batch, frames, dim), and frame lengths.

        cnn_feats: the frontend's output computed once before (the teacher's dumped CNN
        output); accepted only while the frontend is frozen, which is what makes it equal.
        """
        if cnn_feats is None:
            feats, feats_lengths = self.frontend(speech, speech_lengths)
        else:
            self._check_cnn_feats(cnn_feats)
            # dumped as float16 and kept so to the device: compute in the student's dtype
            dtype = next(self.encoder.parameters()).dtype
            feats, feats_lengths = cnn_feats.to(dtype), cnn_feats_lengths
        if self.preencoder is not None:
            feats, feats_lengths = self.preencoder(feats, feats_lengths)
        return self.encoder.forward_hidden_states(feats, feats_lengths)

    def _check_cnn_feats(self, cnn_feats: torch.Tensor) -> None:
        if any(p.requires_grad for p in self.frontend.parameters()):
            raise RuntimeError(
                f"the batch holds dumped CNN features ('{CNN_FEATS}') but the student's "
                "frontend is trainable: they can stand in for it only while it is the "
                "teacher's CNN, frozen (student_cnn: teacher_frozen)"
            )
        if cnn_feats.size(-1) != self.frontend.output_size():
            raise ValueError(
                f"dumped CNN features ('{CNN_FEATS}') have width {cnn_feats.size(-1)} but the "
                f"student's frontend gives {self.frontend.output_size()}"
            )

    def _targets(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor, batch: Dict[str, torch.Tensor]
    ) -> Tuple[Dict[int, torch.Tensor], torch.Tensor, Optional[torch.Tensor]]:
        """The teacher states the plan supervises, their frame lengths, and (online, with
        cnn_from_teacher) the teacher's CNN output of the same pass, else None."""
        states = self.plan.teacher_states
        if all(target_name(t) in batch for t in states):
            targets = {t: batch[target_name(t)] for t in states}
            lengths = batch[f"{target_name(states[0])}_lengths"]
            for t, v in targets.items():
                if not v.is_floating_point():
                    raise ValueError(
                        f"dumped teacher state {t} holds {v.dtype} codes but the model has no "
                        "decoder for them (the dump's codecs/ are read by DistillTask)")
                if v.size(-1) != self.teacher_hidden_size:
                    raise ValueError(
                        f"dumped teacher state {t} has width {v.size(-1)} but the model "
                        f"expects teacher_hidden_size={self.teacher_hidden_size}"
                    )
            return targets, lengths, None
        if self._teacher is None:
            missing = [target_name(t) for t in states if target_name(t) not in batch]
            raise RuntimeError(
                f"no teacher targets: the batch lacks {missing} and no online teacher is set "
                "(give --teacher for online mode, or the dumped .scp files as data)"
            )
        self._teacher.to(speech.device)
        hidden, cnn, lengths = self._teacher.extract_features_and_cnn(
            speech, speech_lengths, num_layers=max(states)
        )
        return {t: hidden[t].float() for t in states}, lengths, cnn if self._cnn_from_teacher else None

    def forward(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs
    ) -> Tuple[torch.Tensor, Dict[str, Optional[torch.Tensor]], torch.Tensor]:
        """Distillation loss of a batch.

        Args:
            speech: (batch, samples) waveforms; speech_lengths: (batch,).
            kwargs: ``target_<t>`` (batch, frames, teacher dim) and ``target_<t>_lengths``
                for dumped targets; ``cnn_feats`` (batch, frames, CNN channels) and
                ``cnn_feats_lengths`` for the dumped CNN output; ``utt_id`` from the trainer
                (unused).
        """
        decoders = getattr(self, "target_decoders", None)
        if decoders is not None:  # int8 / pq dumps: expand the codes on this device
            kwargs = {k: decoders[k](v) if k in decoders else v for k, v in kwargs.items()}
        targets, target_lengths, teacher_cnn = self._targets(speech, speech_lengths, kwargs)
        cnn_feats, cnn_lengths = kwargs.get(CNN_FEATS), kwargs.get(f"{CNN_FEATS}_lengths")
        if cnn_feats is None and teacher_cnn is not None:
            cnn_feats, cnn_lengths = teacher_cnn, target_lengths
        hidden, lengths = self.encode(speech, speech_lengths, cnn_feats, cnn_lengths)
        # Teachers can be a frame apart from the student (fairseq versions): trim both.
        frames = min(hidden[0].size(1), min(v.size(1) for v in targets.values()))
        lengths = torch.minimum(lengths, target_lengths.to(lengths.device)).clamp(max=frames)
        depth = self.depth
        preds = {
            t: self.heads[str(t)](hidden[s][:, :frames]) for s, t in self.plan.pairs[depth]
        }
        targets = {t: v[:, :frames] for t, v in targets.items()}
        loss, terms = self.loss(preds, targets, lengths)
        stats: Dict[str, Optional[torch.Tensor]] = {"loss": loss.detach()}
        for t, v in terms.items():
            stats[f"loss_t{t}"] = v.detach()
        stats["depth"] = torch.tensor(float(depth), device=loss.device)
        loss, stats, weight = force_gatherable((loss, stats, speech.size(0)), loss.device)
        return loss, stats, weight

    def collect_feats(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs
    ) -> Dict[str, torch.Tensor]:
        # The student reads raw waveforms: there are no feature statistics to collect.
        return {}
