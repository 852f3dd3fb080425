import json

import pytest
import torch
from espnet2.asr.frontend.espnet_ssl import ESPnetSSLFrontend

from espnet2_stacking.bin.export_student import main as export_main
from espnet2_stacking.pipelines.export import export_student, load_distill_model
from espnet2_stacking.upstreams import load_upstream


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """Both students through the command line's main (in this process: the recipe test runs it
    as stage 4 runs it)."""
    out = tmp_path_factory.mktemp("student") / "student"
    export_main(["--distill_dir", str(trained_run), "--out_dir", str(out),
                 "--random_out_dir", str(out.with_name("random"))])
    return out


def test_stock_espnet_frontend_gives_our_students_hidden_states(trained_run, exported):
    """No plugin code on the loading side: ESPnet's own espnet_ssl frontend."""
    frontend = ESPnetSSLFrontend(fs=16000, frontend_conf={"path_or_url": str(exported / "model.pth")},
                                 multilayer_feature=True, mask_feats=False).eval()
    model, _ = load_distill_model(trained_run / "config.yaml", trained_run / "latest.pth")
    x = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    lens = torch.tensor([16000, 12000])
    with torch.no_grad():
        _, layers, stock_lens = frontend.upstream.inference_encode(x, lens, False, True)
        ours, our_lens = model.encode(x, lens)
    assert len(layers) == 4 == model.depth
    assert torch.equal(stock_lens, our_lens)
    for a, b in zip(layers, ours[1:]):
        assert torch.allclose(a, b, atol=1e-6)
    # and through the ASR path: the weighted sum over the layers runs
    feats, flens = frontend(x, lens)
    assert feats.shape == (2, int(flens.max()), 16)


def test_export_is_a_teacher_too_and_records_its_history(trained_run, exported):
    teacher = load_upstream(str(exported / "model.pth"))
    assert teacher.num_layers == 4 and teacher.hidden_size == 16
    info = json.loads((exported / "stacking.json").read_text())
    assert info["depth"] == 4 and info["lineage"] == [0, 0, 0, 0]
    # RESULTS.md's parameter count of a student comes from here, without loading it
    student_parts = (teacher._module.frontend, teacher._module.preencoder, teacher._module.encoder)
    assert info["parameters"] == sum(p.numel() for m in student_parts if m is not None for p in m.parameters())
    assert [r["to"] for r in info["stacking_log"] if "to" in r] == [2, 4]


def test_a_checkpoint_that_does_not_match_its_config_is_refused(trained_run, tmp_path):
    state = torch.load(trained_run / "latest.pth", weights_only=True)
    state.pop("heads.2.weight")
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(RuntimeError, match="broken.pth does not match"):
        export_student(trained_run / "config.yaml", tmp_path / "broken.pth", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


def test_random_student_has_the_shape_and_none_of_the_training(trained_run, exported):
    out = exported.with_name("random")  # --random_out_dir: the same process as the student
    info = json.loads((out / "stacking.json").read_text())
    assert info["init"] == "random" and info["depth"] == 4 and info["lineage"] == [0, 1, 2, 3]
    assert "stacking_log" not in info
    random_state = torch.load(out / "model.pth", weights_only=True)
    trained, _ = load_distill_model(trained_run / "config.yaml", trained_run / "latest.pth")
    trained_state = trained.state_dict()
    # same shapes everywhere, different values: nothing was copied from the trained run,
    # and the layers are not copies of each other (no growth happened)
    for key, value in random_state.items():
        if key.startswith("encoder.encoders."):
            assert value.shape == trained_state[key].shape
    w = [random_state[f"encoder.encoders.{i}.feed_forward.w_1.weight"] for i in range(4)]
    assert not torch.equal(w[0], trained_state["encoder.encoders.0.feed_forward.w_1.weight"])
    assert not any(torch.equal(w[0], w[i]) for i in (1, 2, 3))
    assert load_upstream(str(out / "model.pth")).num_layers == 4


def test_random_init_alone_and_its_conflict_with_random_out_dir(trained_run, tmp_path):
    from espnet2_stacking.bin.export_student import main

    main(["--distill_dir", str(trained_run), "--out_dir", str(tmp_path / "r"), "--random_init"])
    assert json.loads((tmp_path / "r/stacking.json").read_text())["init"] == "random"
    with pytest.raises(SystemExit, match="--random_init exports only"):
        main(["--distill_dir", str(trained_run), "--out_dir", str(tmp_path / "a"), "--random_init",
              "--random_out_dir", str(tmp_path / "b")])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
