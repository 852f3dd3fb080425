import itertools
import math

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from conftest import write_data_dir

from espnet2_stacking.bin import ctc_greedy_inference
from espnet2_stacking.pipelines.ctc_greedy import CTCGreedyDecoder, best_path_ids, decode_to_dir
from espnet2_stacking.tasks.asr import StackingASRTask

UPSTREAM = "random:hubert?layers=2&dim=16&heads=2&ffn=32&conv=16&pos_kernel=8&pos_groups=2"
TOKENS = ["<blank>", "<unk>", "A", "T", "O", "N", "E", "<space>", "<sos/eos>"]


def log_probs_of(paths, vocab=5):
    """Log probabilities whose frame-wise argmax is each path (padded with 0s)."""
    frames = max(len(p) for p in paths)
    x = torch.full((len(paths), frames, vocab), -5.0)
    for b, path in enumerate(paths):
        for t, token in enumerate(path):
            x[b, t, token] = -0.1 * (t + 1)
    return x


def test_best_path_merges_repeats_drops_blanks_and_stays_in_each_length():
    x = log_probs_of([[2, 2, 0, 2, 3, 3, 4, 0], [1, 0, 0, 1, 1, 3]])
    ids, scores = best_path_ids(x, torch.tensor([8, 4]), blank=0, drop=[4])
    # a blank between two 2s keeps both; 4 (<sos/eos> here) is never a token; frames past a
    # length are padding, whatever their argmax
    assert ids == [[2, 2, 3], [1, 1]]
    assert scores[0].item() == pytest.approx(-0.1 * sum(range(1, 9)))
    assert scores[1].item() == pytest.approx(-0.1 * sum(range(1, 5)))


def _trained_looking_model(tmp_path, data_dir=None):
    """A tiny CTC-only ASR model saved as ESPnet saves one (config.yaml + a checkpoint). A
    random encoder's frames barely differ: with ``data_dir``, the CTC output layer is made to
    read their differences from the mean frame, scaled up, so that the best tokens vary."""
    (tmp_path / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    args = StackingASRTask.get_parser().parse_args([
        "--output_dir", str(tmp_path / "exp"), "--token_list", str(tmp_path / "tokens.txt"),
        "--token_type", "char", "--frontend", "stacking_upstream",
        "--frontend_conf", f"upstream={UPSTREAM}", "--normalize", "utterance_mvn",
        "--preencoder", "linear", "--preencoder_conf", "output_size=8",
        "--encoder", "rnn", "--encoder_conf", "num_layers=1", "--encoder_conf", "hidden_size=8",
        "--encoder_conf", "output_size=8", "--decoder", "none", "--model_conf", "ctc_weight=1.0"])
    torch.manual_seed(0)
    model = StackingASRTask.build_model(args)
    if data_dir is not None:
        model.eval()
        frames = torch.cat([_encode(model, path)[0] for path in _wavs(data_dir).values()])
        with torch.no_grad():
            model.ctc.ctc_lo.weight.normal_(0.0, 300.0)
            model.ctc.ctc_lo.bias.copy_(-model.ctc.ctc_lo.weight @ frames.mean(0))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    return model


def _wavs(data_dir):
    return dict(line.split() for line in (data_dir / "wav.scp").read_text().splitlines())


@torch.no_grad()
def _encode(model, path):
    x = torch.from_numpy(sf.read(path, dtype="float32")[0]).unsqueeze(0)
    return model.encode(x, torch.tensor([x.size(1)]))[0]


def _one_at_a_time(model, data_dir):
    """The greedy CTC text of each utterance, decoded alone: the reference the batched,
    reordered decoding must match."""
    out = {}
    for key, path in _wavs(data_dir).items():
        with torch.no_grad():
            best = model.ctc.argmax(_encode(model, path))[0].tolist()
        ids = [k for k, _ in itertools.groupby(best) if k not in (0, len(TOKENS) - 1)]
        out[key] = "".join(TOKENS[i] for i in ids).replace("<space>", " ")
    return out


@pytest.mark.slow
def test_batched_decoding_matches_each_utterance_alone(tmp_path):
    data = write_data_dir(tmp_path / "data", "test", 7, seed=2)
    model = _trained_looking_model(tmp_path, data)
    expected = _one_at_a_time(model, data)
    assert len(set(expected.values())) > 1  # the check can tell utterances apart

    # batches of 3 of 7 utterances, in wav.scp's (not the lengths') order: the decoder sorts
    # each batch for the RNN and puts the hypotheses back
    ctc_greedy_inference.main([
        "--asr_train_config", str(tmp_path / "config.yaml"),
        "--asr_model_file", str(tmp_path / "model.pth"),
        "--data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
        "--output_dir", str(tmp_path / "out"), "--batch_size", "3"])
    best = tmp_path / "out" / "1best_recog"
    text = dict((line.split(" ", 1) + [""])[:2] for line in
                (best / "text").read_text().splitlines())
    assert text == expected
    token_int = {line.split()[0]: line.split()[1:] for line in
                 (best / "token_int").read_text().splitlines()}
    for key, ids in token_int.items():
        assert "".join(TOKENS[int(i)] for i in ids).replace("<space>", " ") == expected[key]
    scores = [float(line.split()[1]) for line in (best / "score").read_text().splitlines()]
    assert len(scores) == 7 and all(s <= 0 and math.isfinite(s) for s in scores)

    # a key file decodes only its utterances
    keys = sorted(expected)[:2]
    (tmp_path / "keys.scp").write_text("".join(f"{k} x\n" for k in keys))
    assert decode_to_dir([(f"{data}/wav.scp", "speech", "sound")], tmp_path / "config.yaml",
                         tmp_path / "model.pth", tmp_path / "out2",
                         key_file=str(tmp_path / "keys.scp"), batch_size=16) == 2


def test_a_model_without_ctc_or_with_an_unknown_token_type_is_named(tmp_path):
    _trained_looking_model(tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["token_type"] = "whisper_en"
    (tmp_path / "odd.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=r"odd\.yaml: token_type 'whisper_en'.*decode_beam_size"):
        CTCGreedyDecoder(tmp_path / "odd.yaml", tmp_path / "model.pth")


def test_scores_are_in_the_batch_order_after_sorting(tmp_path):
    """Hypotheses and scores return to the input order, whatever the lengths' order."""
    decoder = CTCGreedyDecoder.__new__(CTCGreedyDecoder)

    class Encoder(torch.nn.Module):  # each utterance's frames say its index, one token a frame
        def encode(self, speech, lengths):
            assert lengths.tolist() == sorted(lengths.tolist(), reverse=True)
            return speech, lengths

    class CTC:
        @staticmethod
        def log_softmax(x):
            return torch.log_softmax(x, dim=-1)

    model = Encoder()
    model.ctc = CTC()
    model.register_parameter("p", torch.nn.Parameter(torch.zeros(1)))
    decoder.model, decoder.device, decoder.blank, decoder.drop = model, "cpu", 0, []
    decoder.converter = type("C", (), {"ids2tokens": staticmethod(lambda ids: [str(i) for i in ids])})
    decoder.tokenizer = type("T", (), {"tokens2text": staticmethod(" ".join)})
    lengths = torch.tensor([2, 4, 3])
    x = torch.zeros((3, 4, 5))
    for b, token in enumerate([1, 2, 3]):
        x[b, : lengths[b], token] = 1.0
    hyps = decoder(x, lengths)
    assert [h.text for h in hyps] == ["1", "2", "3"]
    frame = 1.0 - np.log(np.e + 4)  # the best token's log probability in a frame
    assert [h.score for h in hyps] == pytest.approx([frame * n for n in (2, 4, 3)], rel=1e-5)
