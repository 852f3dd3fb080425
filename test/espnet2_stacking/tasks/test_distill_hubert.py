"""DistillTask with the hubert student (encoder: hubert)."""

import pytest
from conftest import write_config

from espnet2_stacking.stacking import StackingConfigError
from espnet2_stacking.student.hubert_encoder import StackingHubertEncoder
from espnet2_stacking.tasks.distill import DistillTask

HUBERT = dict(encoder="hubert", encoder_conf={"output_size": 16, "attention_heads": 2,
                                              "linear_units": 32, "pos_conv_kernel": 4,
                                              "pos_conv_groups": 2})


def parse(path):
    return DistillTask.get_parser().parse_args(["--config", str(path), "--output_dir", "x"])


def test_hubert_student_builds_at_the_plans_first_depth(tmp_path):
    args = parse(write_config(tmp_path / "c.yaml", preencoder=None, preencoder_conf={}, **HUBERT))
    model = DistillTask.build_student(args)
    assert isinstance(model.encoder, StackingHubertEncoder)
    assert model.preencoder is None and model.encoder.num_blocks == 4 and model.depth == 1
    assert model.encoder.input_size == model.frontend.output_size()


def test_a_preencoder_before_hubert_is_refused(tmp_path):
    """HuBERT's feature projection is the encoder's own: a second projection before it would
    be a model no HuBERT loader can hold."""
    args = parse(write_config(tmp_path / "c.yaml", **HUBERT))  # the tiny config's linear preencoder
    with pytest.raises(StackingConfigError, match="set preencoder: null"):
        DistillTask.build_student(args)
