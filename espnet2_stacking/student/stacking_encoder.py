"""A transformer encoder that is allocated at its final depth and grows in place.

It is ESPnet's TransformerEncoder (same blocks, same parameter names: ``embed.*``,
``encoders.<i>.*``, ``after_norm.*``) with:

- every layer slot of the final depth allocated up front and only the first ``depth`` run, so
  no parameter is ever added or replaced (DDP and the optimizer keep working across growths);
- ``grow(src)``: slot i becomes a bit-exact copy of old layer src[i], in place, under no_grad;
- the active depth and each slot's lineage kept in float buffers (ESPnet's model averaging
  sums integer buffers), so checkpoints and resumes carry them;
- ``forward_hidden_states``: every hidden state h_0..h_d;
- ``export_state_dict`` / ``export_config``: the active layers as a plain TransformerEncoder,
  which ESPnet's SSL task and its ``espnet_ssl`` frontend load with strict key matching.

Growth itself (``grow``, the growth buffers, their checks on load) is ``GrowableLayers``, shared
with the hubert student (hubert_encoder.py).

Hidden states follow s3prl/HF/torchaudio and ESPnet's ``return_all_hs``: h_0 is the transformer
input (the output of ``embed``: for input_layer "wav2vec", ESPnet's convolutional positional
embedding, which has no residual connection, then LayerNorm if normalize_before, then dropout);
h_k is the output of layer k. With normalize_before (pre-LN), ``after_norm`` applies to the
output of ``forward`` only, as in ESPnet: h_d is the last layer's raw output and
``forward(...)[0] == after_norm(h_d)``. With post-LN, ``forward(...)[0] == h_d``.
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
from espnet2.legacy.nets.pytorch_backend.nets_utils import make_pad_mask
from typeguard import typechecked

# Input layers that keep the frame rate: the student must stay frame-aligned with the teacher.
FRAME_RATE_INPUT_LAYERS = ("wav2vec", "linear", None)
POS_ENC_LAYER_TYPES = ("conv", "abs_pos")
GROWTH_BUFFERS = ("active_depth", "lineage_buffer")


class GrowableLayers:
    """Growth by stacking over preallocated layer slots, shared by the student encoders.

    A subclass (a torch.nn.Module) calls ``_init_growth`` once its layers exist and says
    where its layer slots are (``layer_slots``); growth, the growth buffers, their checks on
    load and the lineage are the same code for every architecture.
    """

    num_blocks: int
    layer_slots_prefix: str  # where the slots are in the state dict, e.g. "encoders."

    def layer_slots(self) -> torch.nn.ModuleList:
        """Every layer slot of the final depth, in order."""
        raise NotImplementedError

    def _init_growth(self, num_blocks: int, initial_depth: int) -> None:
        self.num_blocks = num_blocks
        self.register_buffer("active_depth", torch.tensor(float(initial_depth)))
        lineage = list(range(initial_depth)) + [-1] * (num_blocks - initial_depth)
        self.register_buffer("lineage_buffer", torch.tensor(lineage, dtype=torch.float32))
        # A Python copy of active_depth: reading the buffer each forward would synchronise
        # with the GPU. grow() and _load_from_state_dict() keep the two equal.
        self._depth = initial_depth

    def active_layer_state_dict(self) -> Dict[str, torch.Tensor]:
        """Detached copies of the state dict without the growth buffers and the inactive
        slots: the weights of the same architecture built at the active depth."""
        prefix = self.layer_slots_prefix
        out = {}
        for key, value in self.state_dict().items():
            if key in GROWTH_BUFFERS:
                continue
            if key.startswith(prefix) and int(key[len(prefix):].split(".")[0]) >= self._depth:
                continue
            out[key] = value.detach().clone()
        return out

    # ---- growth state --------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """The number of active layers."""
        return self._depth

    @property
    def lineage(self) -> List[int]:
        """For each active layer, the index of the initial layer it descends from."""
        return [int(v) for v in self.lineage_buffer[: self._depth].tolist()]

    @typechecked
    def grow(self, src: Sequence[int], lineage: Optional[Sequence[int]] = None) -> None:
        """Grow to ``len(src)`` layers: slot i becomes a bit-exact copy of old layer src[i].

        Call it between updates (after the optimizer step and zero_grad); then move the
        optimizer state with ``transfer_optimizer_state``.

        Args:
            src: for each new layer, the index of the old (active) layer it copies.
            lineage: each new layer's lineage; default: that of its source.
        """
        old, new = self._depth, len(src)
        if not old < new <= self.num_blocks:
            raise ValueError(
                f"a growth must go from the active depth {old} to more layers, at most "
                f"num_blocks={self.num_blocks}; src {list(src)} has {new}"
            )
        bad = [j for j in src if not 0 <= j < old]
        if bad:
            raise ValueError(
                f"src {list(src)} names layers {bad} outside the active layers 0..{old - 1}"
            )
        if lineage is None:
            current = self.lineage
            lineage = [current[j] for j in src]
        if len(lineage) != new or any(v < 0 for v in lineage):
            raise ValueError(
                f"lineage {list(lineage)} must give a non-negative index for each of the "
                f"{new} layers"
            )
        with torch.no_grad():
            # Read every source before writing any slot: with src = [0, 0, 1, 1, 2, 2],
            # slot 2 is overwritten by layer 1 before layer 2 is read for slots 4 and 5.
            snapshot = {
                j: {k: v.detach().clone() for k, v in self.layer_slots()[j].state_dict().items()}
                for j in {src[i] for i in range(new) if src[i] != i}
            }
            for i, j in enumerate(src):
                if i == j:
                    continue
                for name, tensor in self.layer_slots()[i].state_dict(keep_vars=True).items():
                    tensor.data.copy_(snapshot[j][name])
            self.active_depth.fill_(float(new))
            self.lineage_buffer.fill_(-1.0)
            self.lineage_buffer[:new] = torch.tensor(lineage, dtype=torch.float32)
        self._depth = new

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs):
        # Check the growth buffers before they overwrite ours, then refresh the cached depth.
        depth_key, lineage_key = prefix + "active_depth", prefix + "lineage_buffer"
        if depth_key in state_dict and lineage_key in state_dict:
            self._check_growth_state(state_dict[depth_key], state_dict[lineage_key])
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)
        self._check_growth_state(self.active_depth, self.lineage_buffer)
        self._depth = int(self.active_depth.item())

    def _check_growth_state(self, depth: torch.Tensor, lineage: torch.Tensor) -> None:
        value = float(depth)
        if not value.is_integer() or not 1 <= value <= self.num_blocks:
            raise ValueError(
                f"active_depth {value} is not a depth in 1..{self.num_blocks}: was the "
                "checkpoint averaged over snapshots taken at different depths?"
            )
        values = lineage.tolist()
        if len(values) != self.num_blocks:
            raise ValueError(
                f"lineage_buffer has {len(values)} slots, this encoder num_blocks="
                f"{self.num_blocks}"
            )
        active, rest = values[: int(value)], values[int(value):]
        if any(not v.is_integer() or v < 0 for v in active) or any(v != -1 for v in rest):
            raise ValueError(
                f"lineage_buffer {values} does not fit active_depth {int(value)} (non-negative "
                "integers for active slots, -1 for the others): was the checkpoint averaged "
                "over snapshots of different lineages?"
            )


class StackingTransformerEncoder(GrowableLayers, TransformerEncoder):
    """ESPnet's TransformerEncoder, grown by stacking.

    Args:
        input_size: input feature size (the preencoder's output).
        output_size: model width.
        attention_heads: number of attention heads.
        linear_units: feed-forward width.
        num_blocks: the final depth: every slot is allocated at construction.
        initial_depth: the depth active at construction (None: num_blocks).
        dropout_rate, positional_dropout_rate, attention_dropout_rate: as TransformerEncoder.
        input_layer: "wav2vec" (positional embedding only: the HuBERT setup), "linear" or None.
        pos_enc_layer_type: "conv" (wav2vec2/HuBERT convolutional) or "abs_pos" (sinusoidal).
        normalize_before: pre-LN layers and a final ``after_norm``; False is HuBERT's post-LN.
        concat_after, qk_norm, use_sdpa: as TransformerEncoder.
        layer_drop_rate: in training, each active layer is skipped with this probability (its
            hidden state then repeats the previous one, so there are always d + 1 states).

    Example:
        >>> enc = StackingTransformerEncoder(16, output_size=16, attention_heads=2,
        ...     linear_units=32, num_blocks=4, initial_depth=2)
        >>> hs, lens = enc.forward_hidden_states(torch.zeros(1, 5, 16), torch.tensor([5]))
        >>> len(hs), tuple(hs[-1].shape), lens.tolist()
        (3, (1, 5, 16), [5])
        >>> enc.grow([0, 0, 1, 1])
        >>> enc.depth, enc.lineage
        (4, [0, 0, 1, 1])
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int = 384,
        attention_heads: int = 6,
        linear_units: int = 1536,
        num_blocks: int = 12,
        initial_depth: Optional[int] = None,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.1,
        input_layer: Optional[str] = "wav2vec",
        pos_enc_layer_type: str = "conv",
        normalize_before: bool = False,
        concat_after: bool = False,
        layer_drop_rate: float = 0.0,
        qk_norm: bool = False,
        use_sdpa: bool = False,
    ):
        if input_layer not in FRAME_RATE_INPUT_LAYERS:
            raise ValueError(
                f"input_layer '{input_layer}' changes the frame rate; the student must keep the "
                f"teacher's: use one of {FRAME_RATE_INPUT_LAYERS}"
            )
        if input_layer == "wav2vec" and input_size != output_size:
            raise ValueError(
                f"input_layer 'wav2vec' adds positions only: input_size ({input_size}) must "
                f"equal output_size ({output_size}); set the preencoder's output_size"
            )
        if pos_enc_layer_type not in POS_ENC_LAYER_TYPES:
            raise ValueError(
                f"pos_enc_layer_type must be one of {POS_ENC_LAYER_TYPES}, got "
                f"'{pos_enc_layer_type}'"
            )
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be at least 1, got {num_blocks}")
        initial_depth = num_blocks if initial_depth is None else initial_depth
        if not 1 <= initial_depth <= num_blocks:
            raise ValueError(
                f"initial_depth must be in 1..num_blocks={num_blocks}, got {initial_depth}"
            )
        if not 0.0 <= layer_drop_rate < 1.0:
            raise ValueError(f"layer_drop_rate must be in [0, 1), got {layer_drop_rate}")
        # Everything TransformerEncoder needs to rebuild this encoder's computation, except
        # input_size and num_blocks (the SSL task passes the first, the export sets the second).
        # Flash attention is off: it would make the student's numerics depend on the machine.
        self._plain_config = dict(
            output_size=output_size,
            attention_heads=attention_heads,
            linear_units=linear_units,
            dropout_rate=dropout_rate,
            positional_dropout_rate=positional_dropout_rate,
            attention_dropout_rate=attention_dropout_rate,
            input_layer=input_layer,
            pos_enc_layer_type=pos_enc_layer_type,
            normalize_before=normalize_before,
            concat_after=concat_after,
            layer_drop_rate=layer_drop_rate,
            qk_norm=qk_norm,
            use_flash_attn=False,
            use_sdpa=use_sdpa,
        )
        super().__init__(input_size=input_size, num_blocks=num_blocks, **self._plain_config)
        self.layer_drop_rate = layer_drop_rate
        self._init_growth(num_blocks, initial_depth)

    layer_slots_prefix = "encoders."

    def layer_slots(self) -> torch.nn.ModuleList:
        return self.encoders

    # ---- forward -------------------------------------------------------------------------
    def forward_hidden_states(
        self, xs_pad: torch.Tensor, ilens: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Run the active layers and return every hidden state.

        Args:
            xs_pad: (batch, frames, input_size).
            ilens: (batch,) valid frames per utterance.

        Returns:
            [h_0, ..., h_d], each (batch, frames, output_size), without after_norm;
            output lengths (batch,).
        """
        masks = ~make_pad_mask(ilens, maxlen=xs_pad.size(1))[:, None, :].to(xs_pad.device)
        return self._hidden_states(xs_pad, masks)

    def _hidden_states(
        self, xs_pad: torch.Tensor, masks: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        if xs_pad.dim() != 3 or masks.shape != (xs_pad.size(0), 1, xs_pad.size(1)):
            raise ValueError(
                f"expected xs_pad (batch, frames, dim) and a mask per frame, got "
                f"{tuple(xs_pad.shape)} and {tuple(masks.shape)}"
            )
        if self.embed is not None:
            xs_pad = self.embed(xs_pad)
        hidden = [xs_pad]
        keep = None
        if self.training and self.layer_drop_rate > 0:
            keep = (torch.rand(self._depth) >= self.layer_drop_rate).tolist()
        for k in range(self._depth):
            if keep is None or keep[k]:
                xs_pad, masks = self.encoders[k](xs_pad, masks)
            hidden.append(xs_pad)
        return hidden, masks.squeeze(1).sum(1)

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor = None,
        masks: torch.Tensor = None,
        ctc=None,
        return_all_hs: bool = False,
    ) -> Tuple[
        Union[torch.Tensor, Tuple[torch.Tensor, List[torch.Tensor]]],
        torch.Tensor,
        Optional[torch.Tensor],
    ]:
        """TransformerEncoder.forward over the active layers (intermediate CTC unsupported).

        Args:
            xs_pad: (batch, frames, input_size).
            ilens: (batch,) valid frames per utterance.
            prev_states: unused (ESPnet's encoder contract).
            masks: optional (batch, frames) padding mask, True at padded frames; replaces
                the one made from ilens (ESPnet's SSL model passes it).
            ctc: unused: the encoder has no intermediate-CTC layers.
            return_all_hs: as ESPnet: the first output becomes (output, [h_1, ..., h_d]).

        Returns:
            output (batch, frames, output_size) (after after_norm for pre-LN), output lengths
            (batch,), None.
        """
        if masks is None:
            masks = ~make_pad_mask(ilens, maxlen=xs_pad.size(1))[:, None, :].to(xs_pad.device)
        else:
            masks = ~masks[:, None, :]
        hidden, olens = self._hidden_states(xs_pad, masks)
        out = self.after_norm(hidden[-1]) if self.normalize_before else hidden[-1]
        if return_all_hs:
            return (out, hidden[1:]), olens, None
        return out, olens, None

    # ---- export --------------------------------------------------------------------------
    def export_config(self) -> Dict:
        """TransformerEncoder kwargs, without input_size, for the active depth.

        ``TransformerEncoder(input_size, **export_config())`` computes what this encoder
        computes once loaded with ``export_state_dict()``; the SSL task passes input_size.
        """
        return {**self._plain_config, "num_blocks": self._depth}

    def export_state_dict(self) -> Dict[str, torch.Tensor]:
        """Detached copies of exactly TransformerEncoder(**export_config())'s state dict."""
        return self.active_layer_state_dict()
