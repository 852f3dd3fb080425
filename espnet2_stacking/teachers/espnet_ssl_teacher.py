"""A teacher trained with ESPnet's SSL task (config.yaml + .pth, as espnet2.bin.ssl_train writes)."""

from pathlib import Path
from typing import List, Sequence, Tuple

import torch

from espnet2_stacking.teachers.abs_teacher import AbsTeacher


class ESPnetSSLTeacher(AbsTeacher):
    """h_0 = the encoder's input layer output (positional embedding); h_k = layer k's output."""

    def __init__(self, model_file: Path, config_file: Path, dtype: str = "float32",
                 normalize: str = "none"):
        super().__init__(dtype=dtype, normalize=normalize)
        from espnet2.tasks.ssl import SSLTask

        model, _ = SSLTask.build_model_from_file(config_file, model_file, device="cpu")
        # build_model_from_file loads with strict=False: check the weights really matched.
        state = torch.load(model_file, map_location="cpu", weights_only=True)
        wanted = {k for k in model.state_dict() if not k.startswith("losses.")}
        missing = sorted(wanted - set(state))
        if missing:
            raise KeyError(f"{model_file}: missing keys for {config_file}: {missing[:5]}")
        encoder = model.encoder
        if not (hasattr(encoder, "encoders") and hasattr(encoder, "embed")):
            raise ValueError(
                f"{config_file}: encoder {type(encoder).__name__} is not supported as a teacher "
                "(a transformer encoder is)"
            )
        self.model = model.to(self.dtype)
        self.name = str(model_file)
        self.num_layers = len(encoder.encoders)
        self.hidden_size = encoder.output_size()
        self.layer_norm_first = bool(getattr(encoder, "normalize_before", False))
        self.freeze()

    def _modules(self) -> Sequence[torch.nn.Module]:
        return [self.model]

    def __repr__(self):
        return f"{self.__class__.__name__}({self.name}: {self.num_layers} layers x {self.hidden_size})"

    def _hidden_states(self, wavs, lengths, num_layers) -> Tuple[List[torch.Tensor], torch.Tensor]:
        from espnet2.legacy.nets.pytorch_backend.nets_utils import make_pad_mask

        model = self.model
        x, frames = model.frontend(wavs, lengths)
        if model.normalize is not None:
            x, frames = model.normalize(x, frames)
        if model.preencoder is not None:
            x, frames = model.preencoder(x, frames)
        encoder = model.encoder
        masks = (~make_pad_mask(frames, maxlen=x.size(1))[:, None, :]).to(x.device)
        if encoder.embed is not None:
            x = encoder.embed(x)
        states = [x]
        for layer in encoder.encoders[:num_layers]:
            x, masks = layer(x, masks)
            states.append(x)
        return states, frames
