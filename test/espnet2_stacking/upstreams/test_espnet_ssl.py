"""ESPnet SSL models (config.yaml + .pth) against the ESPnet model's own encoder."""

import shutil

import pytest
import torch
import yaml

ssl = pytest.importorskip("espnet2.tasks.ssl")

from espnet2_stacking.upstreams import load_upstream  # noqa: E402


def write_ssl_model(out_dir, seed=0, **frontend_over):
    """A tiny SSL-task model as espnet2's ssl_train leaves it: config.yaml + a .pth."""
    args = ssl.SSLTask.get_parser().parse_args(["--output_dir", str(out_dir), "--token_list", "unused"])
    args.token_list = [str(i) for i in range(8)] + ["<unk>"]
    args.frontend_conf = {"norm_mode": "group_norm", "conv_mode": "standard", "bias": False,
                          "shapes": [[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2, **frontend_over}
    args.normalize = "utterance_mvn"
    args.preencoder_conf = {"output_size": 32}
    args.encoder_conf = {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 2,
                         "input_layer": "wav2vec", "pos_enc_layer_type": "conv", "dropout_rate": 0.0,
                         "positional_dropout_rate": 0.0, "attention_dropout_rate": 0.0}
    args.loss = [{"name": "hubert", "conf": {"num_classes": 8, "final_dim": 16}}]
    torch.manual_seed(seed)
    model = ssl.SSLTask.build_model(args)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out_dir / "valid.loss.best.pth")
    (out_dir / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    return out_dir / "valid.loss.best.pth"


@pytest.fixture(scope="module")
def ssl_model(tmp_path_factory):
    return write_ssl_model(tmp_path_factory.mktemp("ssl") / "exp")


def espnet_reference(model, wav):
    """ESPnet's own states: the input of block 1 (a pre-hook), the per-block outputs and the
    final output of inference_encode."""
    captured = {}

    def keep_input(module, inputs):
        captured["h0"] = inputs[0]

    hook = model.encoder.encoders[0].register_forward_pre_hook(keep_input)
    with torch.no_grad():
        final, per_layer, lengths = model.inference_encode(wav, torch.tensor([wav.size(1)]))
    hook.remove()
    return [captured["h0"]] + list(per_layer), final, lengths


def test_states_are_the_espnet_encoders(ssl_model):
    teacher = load_upstream(str(ssl_model))
    assert (teacher.num_layers, teacher.hidden_size, teacher.layer_norm_first) == (2, 32, True)
    model = teacher._module
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    for n in (16000, 11200):
        wav = torch.randn(1, n, generator=g)
        ours, frames = teacher.extract_features(wav, torch.tensor([n]))
        theirs, final, lengths = espnet_reference(model, wav)
        assert frames.tolist() == lengths.tolist() == [1 + (n - 400) // 320]
        assert len(ours) == len(theirs) == 3
        for k, (a, b) in enumerate(zip(ours, theirs)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=lambda m: f"state {k}: {m}")
        # pre-LN: the encoder's after_norm is applied to its output, not to our h_L
        with torch.no_grad():
            torch.testing.assert_close(model.encoder.after_norm(ours[-1]), final, atol=1e-5, rtol=0)


def test_padding_does_not_change_valid_frames(ssl_model):
    teacher = load_upstream(str(ssl_model))
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(16000, generator=g), torch.randn(11200, generator=g)
    batch = torch.full((2, 16000), 3.0)
    batch[0], batch[1, :11200] = a, b
    states, frames = teacher.extract_features(batch, torch.tensor([16000, 11200]))
    alone, _ = teacher.extract_features(b[None], torch.tensor([11200]))
    assert frames.tolist() == [49, 34]
    for x, y in zip(states, alone):
        torch.testing.assert_close(x[1:, :34], y, atol=1e-5, rtol=0)


def test_missing_or_unexpected_weights_are_errors(ssl_model, tmp_path):
    state = torch.load(ssl_model, weights_only=True)
    for name, change, match in [
        ("missing", lambda s: s.pop("encoder.encoders.1.feed_forward.w_1.weight"),
         "missing encoder.encoders.1.feed_forward.w_1.weight"),
        ("unexpected", lambda s: s.update({"decoder.weight": torch.zeros(1)}), "unexpected decoder.weight"),
    ]:
        out = tmp_path / name
        out.mkdir()
        shutil.copy(ssl_model.parent / "config.yaml", out / "config.yaml")
        broken = dict(state)
        change(broken)
        torch.save(broken, out / "model.pth")
        with pytest.raises(ValueError, match=f"{out / 'model.pth'}: the weights do not fit.*{match}"):
            load_upstream(str(out / "model.pth"))


def test_config_must_be_beside_the_model_and_at_16k(ssl_model, tmp_path):
    lonely = tmp_path / "lonely" / "model.pth"
    lonely.parent.mkdir()
    shutil.copy(ssl_model, lonely)
    with pytest.raises(FileNotFoundError, match="needs its config.yaml"):
        load_upstream(str(lonely))
    eight_k = write_ssl_model(tmp_path / "8k", fs="8k")
    with pytest.raises(ValueError, match="fs=8000.*16000 Hz"):
        load_upstream(str(eight_k))


def test_a_student_cnn_initialised_from_it_computes_its_cnn(ssl_model, tmp_path):
    """student_cnn teacher_init with an ESPnet SSL teacher (the demo's kind): the student's frontend
    is the teacher's CNN, output for output; a CNN of another shape is refused."""
    from conftest import write_config

    from espnet2_stacking.tasks.distill import DistillTask

    argv = ["--config", str(write_config(tmp_path / "c.yaml", stacking={"targets": [1, 2]})),
            "--output_dir", str(tmp_path / "x"),
            "--student_cnn", "teacher_init", "--teacher", str(ssl_model)]
    model = DistillTask.build_model(DistillTask.get_parser().parse_args(argv)).eval()
    espnet = load_upstream(str(ssl_model))._module
    wav = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([8000, 6000])
    with torch.no_grad():
        ours, ours_lengths = model.frontend(wav, lengths)
        theirs, their_lengths = espnet.frontend(wav, lengths)
    assert torch.equal(ours, theirs) and torch.equal(ours_lengths, their_lengths)

    wider = write_ssl_model(tmp_path / "wider", shapes=[[24, 10, 5]] + [[24, 3, 2]] * 4 + [[24, 2, 2]] * 2)
    argv[-1] = str(wider)
    with pytest.raises(ValueError, match="does not fit the student's frontend"):
        DistillTask.build_model(DistillTask.get_parser().parse_args(argv))
