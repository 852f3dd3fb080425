"""A pq dump through bin/dump_teacher_feats and a short distillation from it through
bin/distill_train; bad dumps refused by name before the first update."""

import json
import shutil

import faiss
import numpy as np
import pytest
from conftest import TEACHER, run_distill_train_in_process, train_args, write_config, write_data_dir

from espnet2_stacking.bin.dump_teacher_feats import main as dump_main

# k-means threads spin-wait for each other: on a busy 2-core machine one thread is 5x faster
faiss.omp_set_num_threads(1)
PQ = ["--codec", "pq", "--num_codebooks", "4", "--shard_size", "3kB", "--codebook_frames", "2000"]


@pytest.fixture(scope="module")
def pq_corpus(tmp_path_factory):
    """data/{train,dev}; dump/{train,dev} in pq (one codec set, trained on train) by the CLI."""
    root = tmp_path_factory.mktemp("pq")
    write_data_dir(root / "data", "train", 12)
    write_data_dir(root / "data", "dev", 4, seed=1)
    dump_main(["--data_dir", str(root / "data/train"), str(root / "data/dev"), "--out_dir",
               str(root / "dump/train"), str(root / "dump/dev"), "--teacher", TEACHER,
               "--layers", "2,4", *PQ])
    return root


def test_pq_dump_stores_codes_in_shards_with_one_codec_set(pq_corpus):
    train, dev = pq_corpus / "dump/train", pq_corpus / "dump/dev"
    meta = json.loads((train / "meta.json").read_text())
    assert meta["codec"] == "pq" and meta["num_codebooks"] == 4 and meta["stored_dtype"] == "uint8"
    assert json.loads((dev / "meta.json").read_text())["codec_digests"] == meta["codec_digests"]
    shards = sorted((train / "layer_4").glob("shard_*.npy"))
    assert 1 < len(shards) < 12  # a few files, not one per utterance
    codes = np.concatenate([np.load(p) for p in shards])
    assert codes.dtype == np.uint8 and codes.shape[1] == 4
    summary = json.loads((train / "summary.json").read_text())
    # 4 bytes a frame per layer against 64 in fp16 (32 wide)
    assert summary["bytes_per_frame"] == 8 and summary["projected_bytes"]["fp16"] == 16 * summary["projected_bytes"]["pq"]


@pytest.mark.slow
def test_a_short_distillation_from_pq_codes_then_bad_dumps_are_refused_by_name(pq_corpus, tmp_path):
    config = write_config(tmp_path / "c.yaml", num_iters_per_epoch=2, max_epoch=2)
    res = run_distill_train_in_process(train_args(pq_corpus, config, tmp_path / "exp"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "(target_decoders)" in res.stderr and "codec=pq" in res.stderr  # the model decodes
    stats = [json.loads(x) for x in (tmp_path / "exp/stacking.jsonl").read_text().splitlines()]
    assert stats[-1]["summary"]["updates"] == 4

    def refused(break_it, match):
        root = tmp_path / f"bad{len(list(tmp_path.glob('bad*')))}"
        shutil.copytree(pq_corpus, root)
        for scp in root.rglob("*.scp"):
            scp.write_text(scp.read_text().replace(f"{pq_corpus}/", f"{root}/"))
        break_it(root / "dump/train")
        out = root / "exp"
        res = run_distill_train_in_process(train_args(root, config, out))
        assert res.returncode != 0 and not (out / "checkpoint.pth").exists()
        assert match in res.stderr, res.stderr[-2000:]

    def other_layer(d):
        shutil.copyfile(d / "codecs/layer_2.npz", d / "codecs/layer_4.npz")

    def truncated(d):
        victim = sorted((d / "layer_4").glob("shard_*.npy"))[1]
        victim.write_bytes(victim.read_bytes()[:-5])

    def overwritten(d):
        a, b = sorted((d / "layer_2").glob("shard_*.npy"))[:2]
        data = np.load(a)
        data[0, 0] ^= 1
        np.save(a, data)

    def index_mismatch(d):
        lines = (d / "layer_2.scp").read_text().splitlines()
        utt, value = lines[0].split()
        path, start, stop = value.rsplit(":", 2)
        lines[0] = f"{utt} {path}:{int(start) + 1}:{stop}"
        (d / "layer_2.scp").write_text("\n".join(lines) + "\n")

    refused(other_layer, "layer_4.npz: codec parameters of another teacher, layer or codec: "
                         "stream is 'layer_2', expected 'layer_4'")
    refused(truncated, "bytes but its record says")
    refused(overwritten, "content differs from its record's digest (overwritten)")
    refused(index_mismatch, "layer_2.scp: utterance")
