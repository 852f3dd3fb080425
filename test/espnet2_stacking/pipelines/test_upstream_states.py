import json

import numpy as np
import pytest
import torch
from conftest import write_data_dir
from espnet2.fileio.npy_scp import NpyScpReader

from espnet2_stacking.asr.frontend import StackingUpstreamFrontend
from espnet2_stacking.bin.dump_upstream_states import main as dump_main
from espnet2_stacking.data.kaldi_dir import read_data_dir
from espnet2_stacking.data.utterances import load_audio
from espnet2_stacking.pipelines import upstream_states
from espnet2_stacking.pipelines.upstream_states import UpstreamStatesDumper, dump_upstream_states
from espnet2_stacking.upstreams import load_upstream

UPSTREAM = "random:hubert?layers=3&dim=16&heads=2&ffn=32&conv=16&pos_kernel=8&pos_groups=2&seed=3"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data_dir(tmp_path_factory.mktemp("us"), "test", 5)


def test_dumped_states_read_by_the_frontend_equal_the_online_features(data, tmp_path):
    out = tmp_path / "states"
    meta = dump_upstream_states(data, out, UPSTREAM, max_batch_seconds=2.0)  # several batches
    assert meta["num_states"] == 4 and meta["hidden_size"] == 16 and meta["utterances"] == 5
    rows = NpyScpReader(out / "feats.scp")
    # wav.scp's order (ESPnet's decoding reads a key file and the list side by side), though
    # written in batches by length
    keys = [line.split()[0] for line in (out / "feats.scp").read_text().splitlines()]
    assert keys == [line.split()[0] for line in (data / "wav.scp").read_text().splitlines()]
    upstream = load_upstream(UPSTREAM)
    online = StackingUpstreamFrontend(upstream=UPSTREAM)
    dumped = StackingUpstreamFrontend(upstream=UPSTREAM, input="states")
    with torch.no_grad():  # the same (non-zero) layer weights in both
        for f in (online, dumped):
            f.featurizer.weights.copy_(torch.tensor([0.3, -0.2, 0.5, 0.1]))
    frames = dict(line.split() for line in (out / "utt2num_frames").read_text().splitlines())
    for utt in read_data_dir(data):
        row = rows[utt.utt_id]
        assert row.dtype == np.float16 and row.shape == (int(frames[utt.utt_id]), 4 * 16)
        wav = torch.from_numpy(load_audio(utt, 16000))[None]
        n = torch.tensor([wav.size(1)])
        states, frame_lens = upstream.extract_features(wav, n)
        assert row.shape[0] == int(frame_lens)
        assert np.allclose(row, torch.cat(states, -1)[0].numpy(), atol=2e-3, rtol=2e-3)  # fp16
        expect, _ = online(wav, n)
        got, got_lens = dumped(torch.from_numpy(row.astype(np.float32))[None],
                               torch.tensor([row.shape[0]]))
        assert int(got_lens) == row.shape[0]
        assert torch.allclose(got, expect, atol=5e-3)


def test_dumped_states_serve_num_layers_and_layer_as_online(data, tmp_path):
    out = tmp_path / "states"
    dump_upstream_states(data, out, UPSTREAM)
    utt = read_data_dir(data)[0]
    row = torch.from_numpy(NpyScpReader(out / "feats.scp")[utt.utt_id].astype(np.float32))[None]
    wav = torch.from_numpy(load_audio(utt, 16000))[None]
    for opts in ({"num_layers": 1}, {"layer": 2}):
        online = StackingUpstreamFrontend(upstream=UPSTREAM, **opts)
        dumped = StackingUpstreamFrontend(upstream=UPSTREAM, input="states", **opts)
        expect, _ = online(wav, torch.tensor([wav.size(1)]))
        got, _ = dumped(row, torch.tensor([row.size(1)]))
        assert torch.allclose(got, expect, atol=5e-3), opts


def test_a_rerun_keeps_a_finished_dir_and_another_upstream_redoes_it(data, tmp_path):
    out = tmp_path / "states"
    dump_upstream_states(data, out, UPSTREAM)
    stamp = (out / "feats.scp").stat().st_mtime_ns
    assert dump_upstream_states(data, out, UPSTREAM)["utterances"] == 5
    assert (out / "feats.scp").stat().st_mtime_ns == stamp
    # a data dir prepared again (other utterances) is dumped again
    scp = (data / "wav.scp").read_text()
    try:
        (data / "wav.scp").write_text("".join(scp.splitlines(keepends=True)[:4]))
        (data / "utt2num_samples").write_text(
            "".join((data / "utt2num_samples").read_text().splitlines(keepends=True)[:4]))
        assert dump_upstream_states(data, out, UPSTREAM)["utterances"] == 4
    finally:
        write_data_dir(data.parent, "test", 5)
    assert dump_upstream_states(data, out, UPSTREAM)["utterances"] == 5
    other = UPSTREAM.replace("seed=3", "seed=4")
    dump_upstream_states(data, out, other)
    assert json.loads((out / "meta.json").read_text())["upstream"] == other
    assert not list(out.glob(".*tmp*"))  # nothing half-written left beside


def test_a_killed_dump_leaves_no_list_and_short_audio_is_named(data, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    rows = (data / "wav.scp").read_text().splitlines()
    (bad / "wav.scp").write_text("\n".join(rows) + "\n")
    lens = (data / "utt2num_samples").read_text().splitlines()
    first = lens[0].split()[0]
    (bad / "utt2num_samples").write_text("\n".join([f"{first} 300"] + lens[1:]) + "\n")
    with pytest.raises(ValueError, match=f"'{first}'.*300 samples"):
        dump_upstream_states(bad, tmp_path / "out", UPSTREAM)
    assert not (tmp_path / "out" / "feats.scp").exists()


def test_the_frontend_refuses_states_of_another_shape():
    frontend = StackingUpstreamFrontend(upstream=UPSTREAM, input="states")
    with pytest.raises(ValueError, match=r"\(batch, frames, 64\) = 4 states x 16"):
        frontend(torch.zeros(1, 5, 48), torch.tensor([5]))
    with pytest.raises(ValueError, match="'waveform' or 'states'"):
        StackingUpstreamFrontend(upstream=UPSTREAM, input="frames")


def test_the_entry_point_pairs_data_and_output_dirs(data, tmp_path):
    with pytest.raises(SystemExit, match="2 dirs but --out_dir 1"):
        dump_main(["--upstream", UPSTREAM, "--data_dir", str(data), str(data),
                   "--out_dir", str(tmp_path / "a")])
    dump_main(["--upstream", UPSTREAM, "--data_dir", str(data), "--out_dir", str(tmp_path / "a")])
    assert len((tmp_path / "a" / "feats.scp").read_text().splitlines()) == 5


def _subset(src, dst, keep, extra=None):
    """A data dir holding rows ``keep`` of ``src`` (and ``extra``'s rows)."""
    dst.mkdir(parents=True)
    for name in ("wav.scp", "utt2num_samples"):
        rows = [r for i, r in enumerate((src / name).read_text().splitlines()) if i in keep]
        if extra is not None:
            rows += (extra / name).read_text().splitlines()
        (dst / name).write_text("\n".join(rows) + "\n")
    return dst


def test_an_utterance_in_several_dirs_is_computed_once(data, tmp_path, monkeypatch):
    other = write_data_dir(tmp_path, "other", 2, seed=1)
    part = _subset(data, tmp_path / "part", {0, 2, 4}, extra=other)  # 3 shared, 2 new
    calls = []
    real_load = upstream_states.load_upstream
    monkeypatch.setattr(upstream_states, "load_upstream",
                        lambda *a, **k: calls.append(a) or real_load(*a, **k))
    dumper = UpstreamStatesDumper(UPSTREAM)
    full_meta = dumper.dump(data, tmp_path / "s_full")
    part_meta = dumper.dump(part, tmp_path / "s_part")
    assert len(calls) == 1  # loaded once for both dirs
    assert full_meta["reused"] == 0 and part_meta["reused"] == 3
    assert part_meta["utterances"] == 5 and part_meta["num_states"] == 4
    fresh = dump_upstream_states(part, tmp_path / "s_alone", UPSTREAM)  # no sharing
    linked, alone = (NpyScpReader(tmp_path / d / "feats.scp") for d in ("s_part", "s_alone"))
    assert list(linked.keys()) == list(alone.keys())
    for utt in alone.keys():  # other batch companions: equal up to fp16 rounding
        assert np.allclose(linked[utt], alone[utt], atol=2e-3, rtol=2e-3)
    assert fresh["frames"] == part_meta["frames"]
    # a dir stays whole when the dir it borrowed from is redone with another upstream
    before = {u: linked[u].copy() for u in linked.keys()}
    dump_upstream_states(data, tmp_path / "s_full", UPSTREAM.replace("seed=3", "seed=5"))
    again = NpyScpReader(tmp_path / "s_part" / "feats.scp")
    assert all(np.array_equal(again[u], before[u]) for u in before)
    # a new run (another process) reuses a kept dir's files without loading the upstream for
    # utterances it holds
    calls.clear()
    dumper = UpstreamStatesDumper(UPSTREAM)
    dumper.dump(part, tmp_path / "s_part")  # kept: same upstream and data
    sub = _subset(part, tmp_path / "sub", {0, 1})
    meta = dumper.dump(sub, tmp_path / "s_sub")
    assert meta["reused"] == 2 and meta["num_states"] == 4 and calls == []
