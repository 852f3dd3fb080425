"""A hubert student distilled through the real entry point (distill_train, tiny config),
exported, and its exports loaded by transformers, torchaudio and ESPnet's ASR task: every
hidden state within 1e-4 of the student's own on real (espeak-ng) speech."""

import json
import shutil
import subprocess

import pytest
import soundfile as sf
import torch
import yaml
from conftest import run_distill_train_in_process, train_args, write_config

from espnet2_stacking.bin.export_student import main as export_main
from espnet2_stacking.data.demo_corpus import SOX_OPTIONS
from espnet2_stacking.pipelines.export import export_student, load_distill_model
from espnet2_stacking.upstreams import load_upstream

pytestmark = pytest.mark.slow  # a distillation run, four model loads
TOL = 1e-4
HUBERT_STUDENT = dict(
    preencoder=None, preencoder_conf={}, encoder="hubert",
    encoder_conf={"output_size": 16, "attention_heads": 2, "linear_units": 32,
                  "pos_conv_kernel": 4, "pos_conv_groups": 2, "dropout_rate": 0.0,
                  "attention_dropout_rate": 0.0, "projection_dropout_rate": 0.0},
)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """One real utterance: espeak-ng speech at 16 kHz (as the demo corpus makes it)."""
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("espeak-ng and sox are needed for real speech")
    path = tmp_path_factory.mktemp("speech") / "utt.wav"
    wav = subprocess.run(["espeak-ng", "-v", "en", "--stdout", "the old dog slept by the door"],
                         capture_output=True, check=True).stdout
    subprocess.run(["sox", *SOX_OPTIONS, str(path)], input=wav, capture_output=True, check=True)
    x, rate = sf.read(path, dtype="float32")
    assert rate == 16000 and x.ndim == 1 and len(x) > 16000
    return torch.from_numpy(x)[None]


@pytest.fixture(scope="module")
def hubert_run(tiny_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("hubert_run")
    config = write_config(root / "c.yaml", **HUBERT_STUDENT)
    res = run_distill_train_in_process(train_args(tiny_corpus, config, root / "exp"))
    assert res.returncode == 0, res.stderr[-3000:]
    export_main(["--distill_dir", str(root / "exp"), "--out_dir", str(root / "student"),
                 "--random_out_dir", str(root / "random")])
    return root


def student_states(run, speech):
    model, _ = load_distill_model(run / "exp/config.yaml", run / "exp/latest.pth")
    with torch.no_grad():
        states, _ = model.encode(speech, torch.tensor([speech.size(1)]))
    return states


def close(ours, theirs):
    return len(ours) == len(theirs) and all(
        a.shape == b.shape and (a - b).abs().max() <= TOL for a, b in zip(ours, theirs))


def test_hf_export_is_a_transformers_hubert_with_the_students_states(hubert_run, speech):
    import transformers

    hf = hubert_run / "student/hf"
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in hf.iterdir()}
    assert json.loads((hf / "config.json").read_text())["architectures"] == ["HubertModel"]
    model = transformers.HubertModel.from_pretrained(hf, local_files_only=True).eval()
    with torch.no_grad():
        out = model(speech, output_hidden_states=True)
    ours = student_states(hubert_run, speech)
    assert len(ours) == 5  # grown 1 -> 2 -> 4: h_0..h_4
    assert close(ours, out.hidden_states)


def test_torchaudio_export_builds_from_its_config_with_the_students_states(hubert_run, speech):
    from torchaudio.models import wav2vec2_model

    out = hubert_run / "student"
    model = wav2vec2_model(**json.loads((out / "torchaudio_config.json").read_text())).eval()
    model.load_state_dict(torch.load(out / "model.pth", weights_only=True), strict=True)
    ours = student_states(hubert_run, speech)
    with torch.no_grad():
        layers, _ = model.extract_features(speech)  # outputs of layers 1..4
    assert close(ours[1:], layers)
    # as a teacher (--teacher, stage 5's upstream): every state, h_0 included
    for spec in (out / "model.pth", out / "hf"):
        teacher = load_upstream(str(spec))
        assert teacher.num_layers == 4
        with torch.no_grad():
            states, _ = teacher.extract_features(speech, torch.tensor([speech.size(1)]), num_layers=4)
        assert close(ours, states), spec


def test_espnet_asr_fine_tunes_it_as_its_torchaudiohubert_encoder(hubert_run, speech, tmp_path):
    """espnet_asr_encoder.yaml merged into an ASR config: ESPnet's own encoder, our weights by
    init_param, the last state (what the ASR head reads) equal."""
    from espnet2.tasks.asr import ASRTask
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    fragment = yaml.safe_load((hubert_run / "student/espnet_asr_encoder.yaml").read_text())
    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\na\n<sos/eos>\n")
    config = dict(fragment, token_list=str(tmp_path / "tokens.txt"), model_conf={"ctc_weight": 1.0},
                  decoder="rnn")
    (tmp_path / "asr.yaml").write_text(yaml.safe_dump(config))
    args = ASRTask.get_parser().parse_args(["--config", str(tmp_path / "asr.yaml"),
                                            "--output_dir", str(tmp_path / "out")])
    model = ASRTask.build_model(args)
    for spec in args.init_param:
        load_pretrained_model(spec, model, ignore_init_mismatch=False, map_location="cpu")
    model.eval()
    with torch.no_grad():
        encoded, _ = model.encode(speech, torch.tensor([speech.size(1)]))
    assert close(student_states(hubert_run, speech)[-1:], [encoded])


def test_model_card_and_history(hubert_run):
    out = hubert_run / "student"
    card = (out / "README.md").read_text()
    for fact in ("HuBERT", "4 x 16", "random:hubert", "interleaved, depths [1, 2, 4]",
                 "12 utterances", "final validation loss | 1.681 (epoch 4)", "updates", "HubertModel.from_pretrained"):
        assert fact in card, fact
    info = json.loads((out / "stacking.json").read_text())
    assert info["encoder"] == "hubert" and info["formats"] == ["torchaudio", "hf"]
    random_info = json.loads((hubert_run / "random/stacking.json").read_text())
    assert random_info["init"] == "random" and random_info["lineage"] == [0, 1, 2, 3]
    assert "not recorded" in (hubert_run / "random/README.md").read_text()


def test_formats_an_architecture_cannot_carry_are_refused(hubert_run, trained_run, tmp_path):
    with pytest.raises(ValueError, match=r"cannot be exported as \['espnet_ssl'\]: it exports as "
                                         r"\['torchaudio', 'hf'\]"):
        export_student(hubert_run / "exp/config.yaml", hubert_run / "exp/latest.pth",
                       tmp_path / "a", formats=["espnet_ssl"])
    with pytest.raises(SystemExit, match=r"stacking_transformer student cannot be exported as "
                                         r"\['hf'\]: it exports as \['espnet_ssl'\]"):
        export_main(["--distill_dir", str(trained_run), "--out_dir", str(tmp_path / "b"),
                     "--formats", "hf"])
    assert not any(tmp_path.iterdir())  # nothing written, not even a temporary dir
    export_student(hubert_run / "exp/config.yaml", hubert_run / "exp/latest.pth",
                   tmp_path / "c", formats=["hf"])
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["README.md", "hf", "stacking.json"]
    # the espnet student's own format, with its model card
    export_student(trained_run / "config.yaml", trained_run / "latest.pth", tmp_path / "d")
    card = (tmp_path / "d/README.md").read_text()
    assert "ESPnet TransformerEncoder" in card and "frontend: espnet_ssl" in card


def test_checkpoints_whose_keys_do_not_match_are_refused(hubert_run, tmp_path):
    state = torch.load(hubert_run / "exp/latest.pth", weights_only=True)
    state.pop("encoder.transformer.layers.0.attention.q_proj.weight")
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(RuntimeError, match=r"missing \['encoder.transformer.layers.0.attention.q_proj"):
        export_student(hubert_run / "exp/config.yaml", tmp_path / "broken.pth", tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["broken.pth"]
    # an exported torchaudio checkpoint with a key missing: the teacher loader names it
    shutil.copytree(hubert_run / "student", tmp_path / "student")
    exported = torch.load(tmp_path / "student/model.pth", weights_only=True)
    exported.pop("encoder.transformer.layer_norm.bias")
    torch.save(exported, tmp_path / "student/model.pth")
    with pytest.raises(ValueError, match=r"model.pth: .*missing encoder.transformer.layer_norm.bias"):
        load_upstream(str(tmp_path / "student/model.pth"))
