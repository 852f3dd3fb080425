"""Sharded storage: shards cut by stored bytes, each file checked against its record."""

import numpy as np
import pytest

from espnet2_stacking.data import frame_shards as shards
from espnet2_stacking.data.cropped_npy import LazyFrames, NpyFramesReader


def test_shards_are_cut_by_stored_bytes_in_order():
    utts = [("a", 10), ("b", 30), ("c", 5), ("d", 40)]
    assert shards.plan_shards(utts, 2, 40) == [["a", "b"], ["c", "d"]]
    assert shards.plan_shards(utts, 2, 0) == [["a"], ["b"], ["c"], ["d"]]  # one file each


@pytest.fixture()
def dump(tmp_path):
    """Two shards of uint8 codes (4 a frame) and their list."""
    rng = np.random.default_rng(0)
    plan = [[("u1", 5), ("u2", 7)], [("u3", 4)]]
    for k, utts in enumerate(plan):
        shards.write_shard(tmp_path, f"shard_{k:05d}", utts, {"layer_2": [
            rng.integers(0, 200, (n, 4)).astype(np.uint8) for _, n in utts]})
    names = ["shard_00000", "shard_00001"]
    records = [shards.read_record(tmp_path, n) for n in names]
    (tmp_path / "layer_2.scp").write_text(shards.list_lines(tmp_path, "layer_2", names, records, 100))
    return tmp_path


def check(dump, centroids=256):
    table = dict(line.split() for line in (dump / "layer_2.scp").read_text().splitlines())
    return shards.check_sharded_list(dump / "layer_2.scp", table, dump, centroids)


def test_a_list_reads_each_utterance_rows_of_its_shard(dump):
    assert check(dump) == {"u1": 5, "u2": 7, "u3": 4}
    frames = NpyFramesReader(dump / "layer_2.scp")["u2"]["frames"]
    assert isinstance(frames, LazyFrames) and frames.shape == (7, 4)
    assert np.array_equal(frames[2:4], np.load(dump / "layer_2/shard_00000.npy")[7:9])
    with pytest.raises(ValueError, match=r"shard_00000.npy: rows 10:13 are outside its 12 rows"):
        LazyFrames(dump / "layer_2/shard_00000.npy", 10, 13)


def test_truncated_overwritten_and_out_of_range_shards_are_named(dump):
    shard = dump / "layer_2/shard_00001.npy"
    data = shard.read_bytes()
    shard.write_bytes(data[:-3])
    with pytest.raises(ValueError, match=r"shard_00001.npy: \d+ bytes but its record says"):
        check(dump)
    shard.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, one code changed
    with pytest.raises(ValueError, match=r"shard_00001.npy: content differs from its record's digest"):
        check(dump)
    shard.write_bytes(data)
    with pytest.raises(ValueError, match=r"shard_00000.npy: code 19\d at row \d+ is out of range .*128"):
        check(dump, centroids=128)


def test_an_index_that_does_not_match_its_shard_is_named(dump):
    scp = dump / "layer_2.scp"
    good = scp.read_text()
    scp.write_text(good.replace("shard_00000.npy:5:12", "shard_00000.npy:4:11"))
    with pytest.raises(ValueError, match=r"utterance 'u2' has rows 4:11 .* record gives 5:12"):
        check(dump)
    scp.write_text(good.replace("u3 ", "u9 "))
    with pytest.raises(ValueError, match=r"utterance 'u9' is not in shard .*shard_00001.npy"):
        check(dump)
