"""HuBERT's own encoder, allocated at its final depth and grown by stacking.

Built from torchaudio's wav2vec 2.0 components (the blocks our teachers run on), with
torchaudio's parameter names: ``feature_projection.*`` (LayerNorm + Linear from the CNN's
channels to the model width), ``transformer.pos_conv_embed.*``, ``transformer.layer_norm.*``
and ``transformer.layers.<i>.*`` (post-LN layers: attention, GELU feed-forward). So the
active layers are exactly ``torchaudio.models.wav2vec2_model(...).encoder``, and, renamed,
``transformers.HubertModel``'s encoder: the student exports to both, and can be a teacher.

Hidden states follow HuBERT (s3prl, Hugging Face, torchaudio): with x the projected CNN
output, padded frames zeroed,

    h_0 = LayerNorm(x + pos_conv(x)),   h_k = output of layer k (post-LN, no final norm).

Growth (``grow``), the growth buffers and their checks are the same code as
StackingTransformerEncoder's (``GrowableLayers``).
"""

from typing import Dict, List, Optional, Tuple

import torch
from espnet2.legacy.nets.pytorch_backend.nets_utils import make_pad_mask
from torchaudio.models.wav2vec2 import components
from typeguard import typechecked

from espnet2_stacking.student.stacking_encoder import GrowableLayers


class StackingHubertEncoder(GrowableLayers, components.Encoder):
    """HuBERT's encoder (torchaudio's components), grown by stacking.

    Args:
        input_size: the CNN's channels (the frontend's output; no preencoder: the feature
            projection is HuBERT's own, inside this encoder).
        output_size: model width.
        attention_heads: number of attention heads.
        linear_units: feed-forward width.
        num_blocks: the final depth: every slot is allocated at construction.
        initial_depth: the depth active at construction (None: num_blocks).
        dropout_rate: dropout after attention, feed-forward and the positional embedding.
        attention_dropout_rate: dropout on the attention weights.
        activation_dropout_rate: dropout inside the feed-forward (after GELU).
        projection_dropout_rate: dropout after the feature projection.
        pos_conv_kernel, pos_conv_groups: the convolutional positional embedding
            (HuBERT: 128, 16).
        layer_drop_rate: in training, each active layer is skipped with this probability (its
            hidden state then repeats the previous one, so there are always d + 1 states).

    Example:
        >>> enc = StackingHubertEncoder(8, output_size=16, attention_heads=2, linear_units=32,
        ...     num_blocks=4, initial_depth=2, pos_conv_kernel=4, pos_conv_groups=2)
        >>> hs, lens = enc.forward_hidden_states(torch.zeros(1, 5, 8), torch.tensor([5]))
        >>> len(hs), tuple(hs[-1].shape)
        (3, (1, 5, 16))
        >>> enc.grow([0, 0, 1, 1])
        >>> enc.depth, enc.lineage
        (4, [0, 0, 1, 1])
    """

    layer_slots_prefix = "transformer.layers."

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
        attention_dropout_rate: float = 0.1,
        activation_dropout_rate: float = 0.0,
        projection_dropout_rate: float = 0.1,
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
        layer_drop_rate: float = 0.0,
    ):
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be at least 1, got {num_blocks}")
        initial_depth = num_blocks if initial_depth is None else initial_depth
        if not 1 <= initial_depth <= num_blocks:
            raise ValueError(
                f"initial_depth must be in 1..num_blocks={num_blocks}, got {initial_depth}")
        if not 0.0 <= layer_drop_rate < 1.0:
            raise ValueError(f"layer_drop_rate must be in [0, 1), got {layer_drop_rate}")
        if output_size % attention_heads or output_size % pos_conv_groups:
            raise ValueError(
                f"output_size {output_size} must be divisible by attention_heads "
                f"({attention_heads}) and pos_conv_groups ({pos_conv_groups})")
        # torchaudio's builder of HuBERT's encoder, post-LN; layer drop is ours (per slot).
        built = components._get_encoder(
            in_features=input_size, embed_dim=output_size, dropout_input=projection_dropout_rate,
            pos_conv_kernel=pos_conv_kernel, pos_conv_groups=pos_conv_groups,
            num_layers=num_blocks, num_heads=attention_heads,
            attention_dropout=attention_dropout_rate, ff_interm_features=linear_units,
            ff_interm_dropout=activation_dropout_rate, dropout=dropout_rate,
            layer_norm_first=False, layer_drop=0.0)
        super().__init__(built.feature_projection, built.transformer)
        # HuBERT's (fairseq's BERT) initialisation of the transformer's linear layers
        self.transformer.layers.apply(components._init_transformer_params)
        self.input_size = input_size
        self._output_size = output_size
        self.layer_drop_rate = layer_drop_rate
        # torchaudio.models.wav2vec2_model's keyword arguments for the encoder part
        self._torchaudio_config = dict(
            encoder_embed_dim=output_size,
            encoder_projection_dropout=projection_dropout_rate,
            encoder_pos_conv_kernel=pos_conv_kernel,
            encoder_pos_conv_groups=pos_conv_groups,
            encoder_num_heads=attention_heads,
            encoder_attention_dropout=attention_dropout_rate,
            encoder_ff_interm_features=linear_units,
            encoder_ff_interm_dropout=activation_dropout_rate,
            encoder_dropout=dropout_rate,
            encoder_layer_norm_first=False,
            encoder_layer_drop=layer_drop_rate,
        )
        self._init_growth(num_blocks, initial_depth)

    def layer_slots(self) -> torch.nn.ModuleList:
        return self.transformer.layers

    def output_size(self) -> int:
        return self._output_size

    # ---- forward -------------------------------------------------------------------------
    def forward_hidden_states(
        self, xs_pad: torch.Tensor, ilens: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Run the active layers and return every hidden state.

        Args:
            xs_pad: (batch, frames, input_size): the CNN's output.
            ilens: (batch,) valid frames per utterance.

        Returns:
            [h_0, ..., h_d], each (batch, frames, output_size); output lengths (batch,).
        """
        if xs_pad.dim() != 3 or xs_pad.size(-1) != self.input_size:
            raise ValueError(
                f"expected CNN features (batch, frames, {self.input_size}), got "
                f"{tuple(xs_pad.shape)}")
        pad = make_pad_mask(ilens, maxlen=xs_pad.size(1)).to(xs_pad.device)
        x = self.feature_projection(xs_pad)
        # padded frames must not leak into valid ones through the positional convolution
        x = x.masked_fill(pad.unsqueeze(-1), 0.0)
        transformer = self.transformer
        x = transformer.dropout(transformer.layer_norm(x + transformer.pos_conv_embed(x)))
        hidden = [x]
        batch, frames = pad.shape
        # boolean: True where a query may attend (torchaudio passes it to SDPA as is)
        attention_mask = (~pad)[:, None, None, :].expand(batch, 1, frames, frames)
        keep = None
        if self.training and self.layer_drop_rate > 0:
            keep = (torch.rand(self._depth) >= self.layer_drop_rate).tolist()
        for k in range(self._depth):
            if keep is None or keep[k]:
                x, _ = transformer.layers[k](x, attention_mask)
            hidden.append(x)
        return hidden, (~pad).sum(1)

    def forward(self, xs_pad: torch.Tensor, ilens: torch.Tensor, prev_states=None
                ) -> Tuple[torch.Tensor, torch.Tensor, None]:
        """ESPnet's encoder contract: the last hidden state, its lengths, None."""
        hidden, olens = self.forward_hidden_states(xs_pad, ilens)
        return hidden[-1], olens, None

    # ---- export --------------------------------------------------------------------------
    def torchaudio_config(self) -> Dict:
        """torchaudio.models.wav2vec2_model kwargs of the encoder at the active depth (the
        exporter adds the CNN's)."""
        return {**self._torchaudio_config, "encoder_num_layers": self._depth}

    def export_state_dict(self) -> Dict[str, torch.Tensor]:
        """Detached copies of torchaudio's Encoder state dict at the active depth."""
        return self.active_layer_state_dict()
