#!/usr/bin/env python3
"""Train a SentencePiece model on the transcripts of a Kaldi text file (stage 5, bpe tokens).

Example:
    python -m espnet2_stacking.bin.spm_train --text data/train/text --vocab_size 300 \
        --model_prefix data/token_list/bpe_unigram300/bpe    # -> bpe.model, bpe.vocab

The pip wheel of ESPnet ships no spm_train script; this is the same SentencePiece call
(unigram, full character coverage), with the utterance ids left out of the training text.
"""

import argparse
import logging
import tempfile
from pathlib import Path
from typing import List, Optional


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--text", type=Path, required=True, help="Kaldi text: <utt> <words...>")
    parser.add_argument("--vocab_size", type=int, required=True)
    parser.add_argument("--model_prefix", type=Path, required=True)
    parser.add_argument("--model_type", default="unigram", choices=("unigram", "bpe"))
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    import sentencepiece as spm

    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    args = get_parser().parse_args(cmd)
    if not args.text.is_file():
        raise SystemExit(f"spm_train: {args.text} not found")
    args.model_prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt") as f:
        with args.text.open(encoding="utf-8") as src:
            for line in src:
                parts = line.strip().split(maxsplit=1)
                if len(parts) == 2:
                    f.write(parts[1] + "\n")
        f.flush()
        spm.SentencePieceTrainer.train(
            input=f.name, vocab_size=args.vocab_size, model_type=args.model_type,
            model_prefix=str(args.model_prefix), character_coverage=1.0,
            input_sentence_size=100_000_000,
        )
    print(f"spm_train: {args.model_prefix}.model")


if __name__ == "__main__":
    main()
