import json
import socket

import pytest
import torch
import torch.multiprocessing as mp

from espnet2_stacking.training.stacking_trainer import StackingTrainer, check_ranks_agree, read_stacking_log


def _rank(rank, port, results):
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                         rank=rank, world_size=2)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 3)
    for case in ("same", "one weight differs"):
        if case == "one weight differs" and rank == 1:
            with torch.no_grad():
                model.weight[0, 0] += 1e-6
        try:
            check_ranks_agree(model, "in the test")
            results[(rank, case)] = "agree"
        except RuntimeError as e:
            results[(rank, case)] = str(e)
    torch.distributed.destroy_process_group()


@pytest.mark.slow  # spawns processes
def test_ranks_check_detects_a_one_weight_difference():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_rank, args=(port, results), nprocs=2, join=True)  # one spawn for both cases: 7 s each
    assert [results[(r, "same")] for r in (0, 1)] == ["agree", "agree"]
    assert all("different weights in the test" in results[(r, "one weight differs")] for r in (0, 1))


def test_resume_drops_growths_the_checkpoint_does_not_hold(tmp_path):
    log = tmp_path / "stacking.jsonl"
    rows = [{"update": 4, "epoch": 2, "from": 1, "to": 2, "src": [0, 0], "stage_seconds": 1.0},
            {"update": 8, "epoch": 3, "from": 2, "to": 4, "src": [0, 0, 1, 1], "stage_seconds": 1.0},
            {"summary": {}}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    StackingTrainer._drop_unreached_growths(log, num_updates=6)  # the checkpoint is at update 6
    assert read_stacking_log(log) == rows[:1]
