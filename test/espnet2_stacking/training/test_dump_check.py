"""Distributed distillation refuses to start when a rank reads another dump than rank 0 (a
stale node-local copy): two gloo ranks on this machine, each in its own "node" dir."""

import json
import subprocess
import sys

import pytest

RANK = """
import sys
import torch
from espnet2_stacking.training.dump_check import check_ranks_see_the_same_dump

rank, init = int(sys.argv[1]), sys.argv[2]
torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
check_ranks_see_the_same_dump(["same", None])  # identical copies: passes
print("same: ok", flush=True)
try:
    check_ranks_see_the_same_dump(["same", "stale"])
except Exception as e:
    print(f"refused: {type(e).__name__}: {e}", flush=True)
    # as DistillTask.main_worker does: close gloo's threads, or exit may abort the rank (-6)
    torch.distributed.destroy_process_group()
    sys.exit(3)
"""


@pytest.mark.slow  # two interpreters importing torch
def test_a_rank_with_another_dump_is_refused_naming_it(tmp_path):
    for node in ("node0", "node1"):
        for d in ("same", "stale"):
            (tmp_path / node / d).mkdir(parents=True)
            (tmp_path / node / d / "meta.json").write_text(json.dumps({"teacher": "t", "layers": [2]}))
            (tmp_path / node / d / "layer_2.scp").write_text("u1 /dump/layer_2/shard_0.npy:0:5\n")
    # node1's copy of "stale" lacks an utterance
    (tmp_path / "node1/stale/layer_2.scp").write_text("")
    init = f"file://{tmp_path / 'rendezvous'}"
    procs = [subprocess.Popen([sys.executable, "-c", RANK, str(r), init], cwd=tmp_path / f"node{r}",
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in (0, 1)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert "same: ok" in out, out[-2000:]
        assert p.returncode == 3, out[-2000:]  # every rank stops, not only the odd one
        assert ("refused: StackingConfigError: rank 1 on " in out
                and "reads another dump than rank 0" in out and "stale/layer_2.scp differ" in out
                and "meta.json" not in out.split("refused:")[1]), out[-2000:]
