"""The demo's head configs: --full's PR and SID heads are the demo's heads with a longer budget,
nothing else, so that the two modes compare upstreams alike."""

from pathlib import Path

import pytest
import yaml

CONF = Path(__file__).parents[2] / "egs2" / "demo" / "distill1" / "conf"
BUDGET = ("max_epoch", "keep_nbest_models")


@pytest.mark.parametrize("task", ["pr", "sid"])
def test_full_head_differs_from_the_demo_head_in_its_budget_only(task):
    demo = yaml.safe_load((CONF / f"{task}_demo.yaml").read_text())
    full = yaml.safe_load((CONF / f"{task}_full.yaml").read_text())
    # the same head, optimiser, batches and seed
    assert {k: v for k, v in demo.items() if k not in BUDGET} == {k: v for k, v in full.items() if k not in BUDGET}
    assert full["max_epoch"] > demo["max_epoch"]


def test_full_pr_head_decodes_an_average_of_checkpoints():
    full = yaml.safe_load((CONF / "pr_full.yaml").read_text())
    assert full["keep_nbest_models"] > 1
    assert "pr_decode_model=valid.loss.ave.pth" in (CONF.parent / "distill.sh").read_text()


def test_full_mode_passes_the_full_heads():
    run_sh = (CONF.parent / "run.sh").read_text()
    full_opts = run_sh.split("case \"${full}\" in", 1)[1].split(";;", 1)[0]
    assert "--pr_config conf/pr_full.yaml" in full_opts and "--sid_config conf/sid_full.yaml" in full_opts
