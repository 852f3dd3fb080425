"""HuBERT, wav2vec 2.0 and WavLM teachers on torchaudio's Wav2Vec2Model.

All three share the architecture: CNN feature extractor, feature projection, a transformer
with a convolutional positional embedding (WavLM adds a relative position bias computed in
its first layer and passed on). The hidden states follow fairseq and Hugging Face:
- post-LN (Base models): h_0 = LayerNorm(x + pos_conv(x)); h_k = output of layer k;
- pre-LN (Large models): h_0 = x + pos_conv(x) and every h_k is the raw output of layer k, the
  residual stream, whose scale grows with depth; the encoder's final LayerNorm is not applied
  (as transformers 5 returns them; fairseq's and transformers 4's last state include it). Use
  ``normalize="layer_norm"`` for targets of comparable scale.
Padding: a group-norm CNN (HuBERT / wav2vec 2.0 Base) normalises over the padded length too,
as in fairseq, Hugging Face and s3prl, so a padded utterance's states differ slightly from
its states alone; the dump batches by length to keep padding small. Layer-norm CNNs (Large
models) and the transformer (masked) are padding-exact.
"""

from typing import Dict, List, Sequence, Tuple

import torch
from torchaudio.models import Wav2Vec2Model, wav2vec2_model, wavlm_model

from espnet2_stacking.teachers.abs_teacher import AbsTeacher


class TorchaudioTeacher(AbsTeacher):
    """A teacher held as a torchaudio Wav2Vec2Model (built by one of the loaders)."""

    def __init__(self, model: Wav2Vec2Model, layer_norm_first: bool, dtype: str = "float32",
                 normalize: str = "none", name: str = "teacher"):
        super().__init__(dtype=dtype, normalize=normalize)
        self.model = model.to(self.dtype)
        self.name = name
        self.layer_norm_first = layer_norm_first
        self.num_layers = len(model.encoder.transformer.layers)
        self.hidden_size = model.encoder.transformer.pos_conv_embed.embed_dim
        # WavLM's attention takes a key padding mask and refuses an additive attention mask
        self.is_wavlm = type(model.encoder.transformer.layers[0].attention).__name__ == "WavLMSelfAttention"
        self.freeze()

    def _modules(self) -> Sequence[torch.nn.Module]:
        return [self.model]

    def __repr__(self):
        return (f"{self.__class__.__name__}({self.name}: {self.num_layers} layers x "
                f"{self.hidden_size}, {self.dtype}, pre-LN={self.layer_norm_first})")

    def _hidden_states(self, wavs, lengths, num_layers) -> Tuple[List[torch.Tensor], torch.Tensor]:
        feats, frames = self.model.feature_extractor(wavs, lengths)
        x, attention_mask = self.model.encoder._preprocess(feats, frames)
        transformer = self.model.encoder.transformer
        x = x + transformer.pos_conv_embed(x)
        if not self.layer_norm_first:
            x = transformer.layer_norm(x)
        states = [x]
        position_bias = None
        pad = torch.arange(x.size(1), device=x.device)[None, :] >= frames[:, None]
        mask = None if self.is_wavlm else attention_mask
        for layer in transformer.layers[:num_layers]:
            x, position_bias = layer(x, mask, position_bias=position_bias, key_padding_mask=pad)
            states.append(x)
        return states, frames


def build_torchaudio_model(arch: str, config: Dict) -> Wav2Vec2Model:
    """torchaudio's builder for ``arch`` (hubert and wav2vec2 share one) from its kwargs."""
    builder = wavlm_model if arch == "wavlm" else wav2vec2_model
    return builder(aux_num_out=None, **config)
