"""Dumped (frames, dim) arrays that the data loader reads by crop, in their stored dtype.

ESPnet's ``npy`` data type loads a whole file and its dataset casts every float array to
float32: at full size (HuBERT Base, crops of 15.6 s from utterances up to 35 s) that is twice
the bytes of the stored float16, for frames the crop then drops, in every loader worker's shared
memory. The ``cropped_npy`` type (registered by ``espnet2_stacking.tasks.register``) gives a
:class:`LazyFrames` instead: the header is read at once (shape, dtype), the rows only when the
collate slices the crop, memory-mapped, and they stay float16 until the model moves them to the
device.

ESPnet's dataset accepts an ndarray or a dict per data name and casts the ndarrays it finds;
a dict holding a non-array passes through untouched, so the reader returns
``{"frames": LazyFrames}`` (see :func:`frames_of`).

A list line may also name rows of a larger file, ``<utt> <shard.npy>:<start>:<stop>``: the
teacher dump's sharded layout (a few large files per layer instead of one per utterance, see
:mod:`espnet2_stacking.data.frame_shards`); only the crop's rows of the shard are read.
"""

from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np

from espnet2_stacking.data.kaldi_dir import read_scp

# The data type name, e.g. dump/train/layer_4.scp,target_4,cropped_npy. ESPnet picks a loader by
# re.match against its type names in order, so a name starting with "npy" would get "npy"'s.
CROPPED_NPY = "cropped_npy"


def parse_rows(value: str) -> Tuple[str, Optional[int], Optional[int]]:
    """A list value: ``path`` (the whole file) or ``path:start:stop`` (rows of a shard)."""
    parts = value.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return parts[0], int(parts[1]), int(parts[2])
    return value, None, None


class LazyFrames:
    """A dumped array, or rows [start, stop) of one, read only when sliced (memory-mapped)."""

    def __init__(self, path: Union[str, Path], start: Optional[int] = None,
                 stop: Optional[int] = None):
        self.path = str(path)
        header = np.load(self.path, mmap_mode="r")
        self.start = 0 if start is None else start
        self.stop = header.shape[0] if stop is None else stop
        if not 0 <= self.start <= self.stop <= header.shape[0]:
            raise ValueError(f"{self.path}: rows {self.start}:{self.stop} are outside its "
                             f"{header.shape[0]} rows (an index that does not match its shard)")
        self.shape = (self.stop - self.start,) + tuple(header.shape[1:])
        self.dtype = header.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        rows = np.load(self.path, mmap_mode="r")[self.start:self.stop]
        return np.array(rows[index])

    def __repr__(self) -> str:
        return (f"LazyFrames({self.path}[{self.start}:{self.stop}], shape={self.shape}, "
                f"dtype={self.dtype})")


class NpyFramesReader:
    """``<utt> <path.npy>`` or ``<utt> <shard.npy>:<start>:<stop>`` lines -> {"frames":
    LazyFrames} per utterance (an ESPnet loader)."""

    def __init__(self, path: Union[str, Path]):
        self.table: Dict[str, str] = read_scp(Path(path))

    def __getitem__(self, key: str) -> dict:
        return {"frames": LazyFrames(*parse_rows(self.table[key]))}

    def __contains__(self, key) -> bool:
        return key in self.table

    def __len__(self) -> int:
        return len(self.table)

    def __iter__(self):
        return iter(self.table)

    def keys(self):
        return self.table.keys()


def frames_of(value) -> Union[np.ndarray, LazyFrames]:
    """The array of a batch item's value: an ndarray (type npy) or a LazyFrames (cropped_npy)."""
    return value["frames"] if isinstance(value, dict) else value
