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
"""

from pathlib import Path
from typing import Dict, Union

import numpy as np

from espnet2_stacking.data.kaldi_dir import read_scp

# The data type name, e.g. dump/train/layer_4.scp,target_4,cropped_npy. ESPnet picks a loader by
# re.match against its type names in order, so a name starting with "npy" would get "npy"'s.
CROPPED_NPY = "cropped_npy"


class LazyFrames:
    """A dumped array whose rows are read only when sliced (memory-mapped)."""

    def __init__(self, path: Union[str, Path]):
        self.path = str(path)
        header = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype = header.shape, header.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        return np.array(np.load(self.path, mmap_mode="r")[index])

    def __repr__(self) -> str:
        return f"LazyFrames({self.path}, shape={self.shape}, dtype={self.dtype})"


class NpyFramesReader:
    """``<utt> <path.npy>`` lines -> {"frames": LazyFrames} per utterance (an ESPnet loader)."""

    def __init__(self, path: Union[str, Path]):
        self.table: Dict[str, str] = read_scp(Path(path))

    def __getitem__(self, key: str) -> dict:
        return {"frames": LazyFrames(self.table[key])}

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
