"""Greedy CTC decoding of an ESPnet ASR model's CTC branch (recipe stage 6 at beam 1).

SUPERB decodes its CTC heads greedily: the most likely token of every frame, repeats merged,
blanks dropped. ESPnet's ``asr_inference`` has no such mode: at ``--beam_size 1`` it still runs
its CTC prefix search, whose scorer goes over every frame again for every output token
(README "Decoding": the time it costs on the demo). This decodes a whole batch with a few
tensor operations, through ESPnet's own model, data iterator, token list and tokenizer, and
writes ``asr_inference``'s layout (``<output_dir>/1best_recog/{text,token,token_int,score}``),
so that the recipe merges and scores both alike.
"""

import logging
import time
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from espnet2.fileio.datadir_writer import DatadirWriter
from espnet2.text.build_tokenizer import build_tokenizer
from espnet2.text.token_id_converter import TokenIDConverter
from typeguard import typechecked

from espnet2_stacking.tasks.asr import StackingASRTask

logger = logging.getLogger(__name__)


class Hypothesis(NamedTuple):
    text: str
    tokens: List[str]
    token_ids: List[int]
    score: float  # log probability of the best path (the frames' argmax tokens)


def best_path_ids(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int,
                  drop: Sequence[int] = ()) -> Tuple[List[List[int]], torch.Tensor]:
    """The greedy CTC output of each utterance of a batch, and its best path's log probability.

    ``log_probs`` (batch, frames, vocabulary); ``lengths`` the valid frames of each utterance.
    A frame's token is kept where it differs from the frame before and is neither ``blank`` nor
    one of ``drop`` (e.g. <sos/eos>, which a CTC branch can score but never means a token).
    """
    best, ids = log_probs.max(dim=-1)
    frames = torch.arange(ids.size(1), device=ids.device)
    valid = frames.unsqueeze(0) < lengths.to(ids.device).unsqueeze(1)
    previous = torch.nn.functional.pad(ids[:, :-1], (1, 0), value=-1)
    keep = valid & (ids != previous) & (ids != blank)
    for d in drop:
        keep &= ids != d
    scores = (best * valid).sum(dim=1)
    return [row[k].tolist() for row, k in zip(ids.cpu(), keep.cpu())], scores.cpu()


class CTCGreedyDecoder:
    """An ASR model trained by ESPnet's ASR task (``StackingASRTask``), decoded by its CTC
    branch alone, greedily."""

    @typechecked
    def __init__(self, asr_train_config: Path, asr_model_file: Path, device: str = "cpu",
                 dtype: str = "float32"):
        model, args = StackingASRTask.build_model_from_file(asr_train_config, asr_model_file,
                                                            device)
        if getattr(model, "ctc", None) is None:
            raise ValueError(f"{asr_model_file}: the model has no CTC branch to decode greedily "
                             "(decode it with ESPnet's beam search: --decode_beam_size 2 or more)")
        self.model = model.to(dtype=getattr(torch, dtype)).eval()
        self.args, self.device = args, device
        self.converter = TokenIDConverter(token_list=model.token_list)
        token_type = args.token_type
        if token_type == "bpe":
            if not args.bpemodel:
                raise ValueError(f"{asr_train_config}: token_type bpe without a bpemodel")
            self.tokenizer = build_tokenizer(token_type="bpe", bpemodel=args.bpemodel)
        elif token_type in ("char", "word", "phn"):
            self.tokenizer = build_tokenizer(token_type=token_type)
        else:
            raise ValueError(f"{asr_train_config}: token_type '{token_type}' is not decoded here "
                             "(char, word, phn, bpe); use --decode_beam_size 2 or more "
                             "(ESPnet's asr_inference)")
        self.blank = model.blank_id
        self.drop = sorted({model.sos, model.eos} - {self.blank})

    def batches(self, data_path_and_name_and_type: Sequence[Tuple[str, str, str]],
                batch_size: int = 16, key_file: Optional[str] = None, num_workers: int = 0):
        """ESPnet's inference iterator over the data, as the model's training prepared it:
        (keys, batch) pairs."""
        return StackingASRTask.build_streaming_iterator(
            list(data_path_and_name_and_type), dtype="float32", batch_size=batch_size,
            key_file=key_file, num_workers=num_workers,
            preprocess_fn=StackingASRTask.build_preprocess_fn(self.args, False),
            collate_fn=StackingASRTask.build_collate_fn(self.args, False),
            allow_variable_data_keys=False, inference=True)

    @torch.no_grad()
    def __call__(self, speech: torch.Tensor, speech_lengths: torch.Tensor) -> List[Hypothesis]:
        # longest first: ESPnet's RNN encoders pack their batch, which needs that order
        order = torch.argsort(speech_lengths, descending=True, stable=True)
        speech = speech[order].to(self.device)
        if speech.is_floating_point():
            speech = speech.to(next(self.model.parameters()).dtype)
        encoded, encoded_lengths = self.model.encode(speech,
                                                     speech_lengths[order].to(self.device))
        log_probs = self.model.ctc.log_softmax(encoded).float()
        sorted_ids, sorted_scores = best_path_ids(log_probs, encoded_lengths, self.blank,
                                                  self.drop)
        back = torch.argsort(order)  # each utterance's place in the sorted batch
        hyps = []
        for token_ids, score in zip([sorted_ids[i] for i in back.tolist()],
                                    sorted_scores[back].tolist()):
            tokens = self.converter.ids2tokens(token_ids)
            hyps.append(Hypothesis(self.tokenizer.tokens2text(tokens), tokens, token_ids, score))
        return hyps


@typechecked
def decode_to_dir(data_path_and_name_and_type: Sequence[Tuple[str, str, str]],
                  asr_train_config: Path, asr_model_file: Path, output_dir: Path,
                  key_file: Optional[str] = None, batch_size: int = 16, device: str = "cpu",
                  dtype: str = "float32", num_workers: int = 0) -> int:
    """Decode every utterance of the data (or of ``key_file``) into ``output_dir`` in
    asr_inference's layout; returns how many were decoded."""
    decoder = CTCGreedyDecoder(asr_train_config, asr_model_file, device, dtype)
    start, done = time.perf_counter(), 0
    with DatadirWriter(output_dir) as writer:
        best = writer["1best_recog"]
        for keys, batch in decoder.batches(data_path_and_name_and_type, batch_size, key_file,
                                           num_workers):
            for key, hyp in zip(keys, decoder(batch["speech"], batch["speech_lengths"])):
                best["token"][key] = " ".join(hyp.tokens)
                best["token_int"][key] = " ".join(map(str, hyp.token_ids))
                best["score"][key] = f"{hyp.score:.4f}"
                best["text"][key] = hyp.text
            done += len(keys)
    logger.info(f"{output_dir}: {done} utterances decoded greedily in "
                f"{time.perf_counter() - start:.1f} s (model load included)")
    return done
