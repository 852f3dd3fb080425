"""Decode stored teacher targets on the training device (int8 and pq dumps).

The loader hands the model what the dump stores (data/target_codecs.py): float16 frames pass
through; int8 frames are scaled back; pq codes become frames by an embedding lookup of the
(M, 256, D) tables (``F.embedding_bag`` sums the M rows of a frame without materialising them).
Nothing expands to float before the batch is on the model's device. The tables and means are
non-persistent buffers: they move with the model but never enter its checkpoints, which stay
those of the student alone.
"""

import json
from pathlib import Path
from typing import Dict, Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from espnet2_stacking.data import target_codecs as codecs


class TargetDecoder(torch.nn.Module):
    """Stored frames (batch, frames, stored width) -> (batch, frames, dim) float32."""

    def __init__(self, codec: str, params: Dict[str, np.ndarray], source: str = ""):
        super().__init__()
        header = codecs.header_of(params)
        self.codec, self.dim, self.source = codec, header["dim"], source
        self.register_buffer("mean", torch.from_numpy(params["mean"]), persistent=False)
        if codec == "pq":
            tables = torch.from_numpy(codecs.decode_tables(params))
            self.num_codebooks, self.num_centroids = tables.shape[:2]
            self.register_buffer("tables", tables.reshape(-1, self.dim), persistent=False)
            self.register_buffer("offsets", torch.arange(self.num_codebooks) * self.num_centroids,
                                 persistent=False)
        self.stored_dtype = {"int8": torch.int8, "pq": torch.uint8}[codec]

    def extra_repr(self) -> str:
        return f"codec={self.codec}, dim={self.dim}, source={self.source}"

    def forward(self, stored: torch.Tensor) -> torch.Tensor:
        if stored.is_floating_point():  # an fp16 dump (e.g. the validation set's reference)
            return stored
        if stored.dtype != self.stored_dtype:
            raise ValueError(f"{self.source}: {self.codec} targets must be {self.stored_dtype}, "
                             f"the batch holds {stored.dtype}")
        lead = stored.shape[:-1]
        if self.codec == "int8":
            values, scale = stored[..., :self.dim], stored[..., self.dim:].contiguous()
            return values.float() * scale.view(torch.float16).float() + self.mean
        if stored.size(-1) != self.num_codebooks:
            raise ValueError(f"{self.source}: pq targets of {stored.size(-1)} codes a frame, "
                             f"the codebooks hold {self.num_codebooks}")
        index = (stored.long() + self.offsets).reshape(-1, self.num_codebooks)
        frames = F.embedding_bag(index, self.tables, mode="sum")
        return frames.reshape(*lead, self.dim) + self.mean


def dump_decoders(dump_dirs: Iterable[Optional[str]], streams: Dict[str, str]) -> Dict[str, TargetDecoder]:
    """Decoders for the data names of int8 / pq dumps.

    dump_dirs: the run's dump dirs (train, valid; None skipped); streams: data name -> stream
    (``target_4`` -> ``layer_4``). Every dump that stores codes must use one codec file per
    stream (the dev dump is encoded with the train dump's codecs): a dump whose file differs
    is refused, naming both files."""
    decoders: Dict[str, TargetDecoder] = {}
    seen: Dict[str, tuple] = {}
    for dump in dump_dirs:
        if dump is None or not (Path(dump) / "meta.json").is_file():
            continue
        meta = json.loads((Path(dump) / "meta.json").read_text())
        codec = meta.get("codec", "fp16")
        if codec == "fp16":
            continue
        for name, stream in streams.items():
            path = codecs.codec_path(dump, stream)
            digest = (meta.get("codec_digests") or {}).get(stream)
            expect = {"teacher": meta["teacher"], "normalize": meta["normalize"],
                      "stream": stream, "codec": codec, "num_codebooks": meta["num_codebooks"]}
            params = codecs.load_codec(path, expect, digest)
            if stream in seen:
                if seen[stream][1] != digest:
                    raise ValueError(f"{path} and {seen[stream][0]} are different {stream} "
                                     "codecs: the dumps of one run must share one (dump the "
                                     "dev set with --codecs_from the train dump)")
                continue
            seen[stream] = (path, digest)
            decoders[name] = TargetDecoder(codec, params, source=str(path))
    return decoders
