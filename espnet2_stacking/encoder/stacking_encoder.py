"""A transformer encoder that is allocated at its final depth and grows in place.

It is ESPnet's TransformerEncoder (same blocks, same parameter names: ``embed.*``,
``encoders.<i>.*``, ``after_norm.*``) with:
- every layer slot of the final depth allocated up front and only the first ``depth`` run, so
  no parameter is ever added (DDP and the optimizer keep working across growths);
- ``grow(src)``: slot i becomes an exact copy of old layer src[i], in place, under no_grad;
- the active depth and each slot's lineage kept in float buffers (ESPnet's model averaging
  sums integer buffers), so checkpoints and resumes carry them;
- ``forward_hidden_states``: every hidden state h_0..h_d (h_0 the transformer input after the
  input layer, h_k the output of layer k; with normalize_before, h_d is taken before
  after_norm, which ``forward`` applies to its output as ESPnet does);
- ``export_state_dict`` / ``export_config``: the active layers as a plain TransformerEncoder.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from typeguard import typechecked

from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
from espnet2.legacy.nets.pytorch_backend.nets_utils import make_pad_mask

# Input layers that keep the frame rate: the student must stay frame-aligned with the teacher.
FRAME_RATE_INPUT_LAYERS = ("wav2vec", "linear", None)
GROWTH_BUFFERS = ("active_depth", "lineage_buffer")


class StackingTransformerEncoder(TransformerEncoder):
    """ESPnet's TransformerEncoder, grown by stacking.

    Args:
        input_size: input feature size (the preencoder's output).
        output_size: model width.
        attention_heads, linear_units, dropout_rate, positional_dropout_rate,
        attention_dropout_rate, normalize_before, concat_after, qk_norm, use_sdpa: as
            TransformerEncoder.
        num_blocks: the final depth (all slots are allocated).
        initial_depth: the depth active at construction (default: num_blocks).
        input_layer: "wav2vec" (positional embedding only: the HuBERT setup), "linear" or None.
        pos_enc_layer_type: "conv" (wav2vec2/HuBERT convolutional) or "abs_pos".

    Example:
        >>> enc = StackingTransformerEncoder(16, output_size=16, attention_heads=2,
        ...     linear_units=32, num_blocks=4, initial_depth=2, pos_enc_layer_type="abs_pos")
        >>> hs, lens = enc.forward_hidden_states(torch.zeros(1, 5, 16), torch.tensor([5]))
        >>> len(hs), enc.grow([0, 0, 1, 1]), enc.depth, enc.lineage
        (3, None, 4, [0, 0, 1, 1])
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
        initial_depth = num_blocks if initial_depth is None else initial_depth
        if not 1 <= initial_depth <= num_blocks:
            raise ValueError(f"initial_depth must be in 1..num_blocks={num_blocks}, got {initial_depth}")
        self._plain_config = dict(
            output_size=output_size, attention_heads=attention_heads, linear_units=linear_units,
            dropout_rate=dropout_rate, positional_dropout_rate=positional_dropout_rate,
            attention_dropout_rate=attention_dropout_rate, input_layer=input_layer,
            pos_enc_layer_type=pos_enc_layer_type, normalize_before=normalize_before,
            concat_after=concat_after, qk_norm=qk_norm, use_sdpa=use_sdpa,
        )
        super().__init__(input_size=input_size, num_blocks=num_blocks, use_flash_attn=False,
                         **self._plain_config)
        self._plain_config["input_size"] = input_size
        self.num_blocks = num_blocks
        self.register_buffer("active_depth", torch.tensor(float(initial_depth)))
        lineage = [float(i) for i in range(initial_depth)] + [-1.0] * (num_blocks - initial_depth)
        self.register_buffer("lineage_buffer", torch.tensor(lineage))

    # ---- growth state --------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return int(self.active_depth.item())

    @property
    def lineage(self) -> List[int]:
        """The initial layer each active layer descends from."""
        return [int(v) for v in self.lineage_buffer[: self.depth].tolist()]

    @torch.no_grad()
    def grow(self, src: Sequence[int], lineage: Optional[Sequence[int]] = None) -> None:
        """Grow to len(src) layers: slot i becomes a bit-exact copy of old layer src[i].

        Sources are snapshotted before any slot is written, so overlapping copies (slot 1
        taking layer 0 while layer 1 moves to slot 2) read the old weights.
        """
        old = self.depth
        new = len(src)
        if not old < new <= self.num_blocks:
            raise ValueError(
                f"a growth must go from the active depth {old} to at most {self.num_blocks} "
                f"layers, got {new}"
            )
        if any(not 0 <= int(j) < old for j in src):
            raise ValueError(f"src {list(src)} names layers outside the active 0..{old - 1}")
        if lineage is None:
            lineage = [self.lineage[j] for j in src]
        if len(lineage) != new:
            raise ValueError(f"lineage has {len(lineage)} entries for {new} layers")
        snapshot = {
            j: {k: v.detach().clone() for k, v in self.encoders[j].state_dict().items()}
            for j in set(int(j) for j in src)
        }
        for i, j in enumerate(src):
            for name, tensor in self.encoders[i].state_dict(keep_vars=True).items():
                tensor.data.copy_(snapshot[int(j)][name])
        self.active_depth.fill_(float(new))
        self.lineage_buffer[:new] = torch.tensor([float(v) for v in lineage])
        self.lineage_buffer[new:] = -1.0

    # ---- forward -------------------------------------------------------------------------
    def forward_hidden_states(
        self, xs_pad: torch.Tensor, ilens: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Hidden states h_0..h_d, each (batch, frames, output_size), and frame lengths."""
        masks = (~make_pad_mask(ilens, maxlen=xs_pad.size(1))[:, None, :]).to(xs_pad.device)
        if self.embed is not None:
            xs_pad = self.embed(xs_pad)
        hidden = [xs_pad]
        for layer in self.encoders[: self.depth]:
            xs_pad, masks = layer(xs_pad, masks)
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
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """As TransformerEncoder.forward, over the active layers only."""
        if masks is not None:
            ilens = (~masks).sum(-1)
        hidden, olens = self.forward_hidden_states(xs_pad, ilens)
        out = self.after_norm(hidden[-1]) if self.normalize_before else hidden[-1]
        if return_all_hs:
            return (out, hidden[1:]), olens, None
        return out, olens, None

    # ---- export --------------------------------------------------------------------------
    def export_config(self) -> Dict:
        """TransformerEncoder kwargs (without input_size) for the active depth."""
        conf = {k: v for k, v in self._plain_config.items() if k != "input_size"}
        conf["num_blocks"] = self.depth
        return conf

    def export_state_dict(self) -> Dict[str, torch.Tensor]:
        """The state dict of TransformerEncoder(**export_config()) holding the active layers."""
        depth = self.depth
        out = {}
        for key, value in self.state_dict().items():
            if key in GROWTH_BUFFERS:
                continue
            if key.startswith("encoders.") and int(key.split(".")[1]) >= depth:
                continue
            out[key] = value.detach().clone()
        return out
