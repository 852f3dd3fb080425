"""The per-file work of data preparation and teacher labelling on a cluster class: the items
go to Dask workers in chunks and come back in input order; a local class keeps local
processes; a bad config stops the entry point naming the file."""

import pytest
import yaml

from espnet2_stacking.data import audio_check
from espnet2_stacking.data.parallel_config import cluster_imap


def _square(x):
    return x * x


def test_cluster_imap_returns_every_chunk_in_input_order():
    # a Dask LocalCluster (threads) stands in for a scheduler's workers: same client code path
    chunks = list(cluster_imap(_square, list(range(23)), {"env": "local"}, nj=2, chunksize=5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
    assert [y for c in chunks for y in c] == [x * x for x in range(23)]


def test_a_cluster_class_routes_the_items_to_its_workers(monkeypatch):
    calls = []

    def fake_cluster_imap(fn, items, entry, nj, chunksize):
        calls.append((entry["env"], nj, chunksize))
        for i in range(0, len(items), chunksize):
            yield [fn(x) for x in items[i:i + chunksize]]

    monkeypatch.setattr(audio_check, "cluster_imap", fake_cluster_imap)
    slurm = {"env": "slurm", "n_workers": 2}
    got = list(audio_check.parallel_imap(_square, list(range(40)), 4, "test", cluster=slurm))
    assert got == [x * x for x in range(40)]
    assert calls == [("slurm", 4, 2)]  # 40 items / (2 workers x 8) -> chunks of 2
    # a local class (and no class) stays with local processes
    calls.clear()
    local = list(audio_check.parallel_imap(_square, list(range(5)), 1, "test", cluster={"env": "local"}))
    assert local == [x * x for x in range(5)] and calls == []


def test_a_bad_parallel_config_stops_data_prep_naming_the_file(tmp_path):
    from espnet2_stacking.bin import prepare_librispeech

    conf = tmp_path / "parallel.yaml"
    conf.write_text(yaml.safe_dump({"cpu": {"env": "slrum"}}))
    with pytest.raises(SystemExit, match=r"parallel.yaml: class 'cpu': env 'slrum' is none of"):
        prepare_librispeech.main(["--librispeech_dir", str(tmp_path), "--sets", "dev-clean",
                                  "--out_dir", str(tmp_path / "out"),
                                  "--parallel_config", str(conf)])
