"""Dumped targets read by crop (data type cropped_npy): ESPnet's dataset passes them through
uncast, the collate reads only the cropped rows, and they stay float16 until the device."""

import numpy as np
import torch
from conftest import TEACHER, write_data_dir
from espnet2.train.dataset import ESPnetDataset

from espnet2_stacking.data.cropped_npy import LazyFrames, NpyFramesReader
from espnet2_stacking.pipelines.teacher_dump import dump_teacher_states
from espnet2_stacking.student.collate import DistillCollateFn
from espnet2_stacking.tasks.register import register_scheduler


def test_espnet_dataset_gives_lazy_frames_and_the_collate_a_float16_crop(tmp_path):
    register_scheduler()  # the cropped_npy data type, as DistillTask does
    data = write_data_dir(tmp_path / "data", "train", 8)
    dump_teacher_states(data, tmp_path / "dump", TEACHER, [2], nj=1)
    scp = tmp_path / "dump" / "layer_2.scp"
    dataset = ESPnetDataset([(str(data / "wav.scp"), "speech", "sound"), (str(scp), "target_2", "cropped_npy")])
    reader = NpyFramesReader(scp)
    # an utterance that is not the first of its shard: its rows start inside the file
    uttid, item = dataset[next(u for u in sorted(reader.keys()) if reader[u]["frames"].start > 0)]
    lazy = item["target_2"]["frames"]
    assert isinstance(lazy, LazyFrames) and lazy.dtype == np.float16  # not cast to float32
    full = np.load(lazy.path)[lazy.start:lazy.stop]  # its rows of the shard
    assert lazy.shape == full.shape and np.array_equal(lazy[3:7], full[3:7])

    torch.manual_seed(0)
    crop = DistillCollateFn(["target_2"], crop_mode="random", max_samples=4000)([(uttid, item)])[1]
    frames = crop["target_2_lengths"][0].item()
    assert crop["target_2"].dtype == torch.float16 and frames == 12  # num_frames(4000)
    # the same crop as from the whole array, loaded as ESPnet's npy type would load it
    torch.manual_seed(0)
    whole = DistillCollateFn(["target_2"], crop_mode="random", max_samples=4000)(
        [(uttid, {"speech": item["speech"], "target_2": full.astype(np.float32)})])[1]
    assert torch.equal(crop["target_2"].float(), whole["target_2"]) and torch.equal(crop["speech"], whole["speech"])
