#!/usr/bin/env python3
"""Greedy CTC decoding (the recipe's default, ctc_greedy_inference) against ESPnet's CTC prefix
search at beam 1 (asr_inference's Speech2Text), on trained heads of a recipe run: the time of
each (its decoding loop, the model loaded once), their ratio, and the error rate of each.

Example (after the demo, from the repository root):
    cd egs2/demo/distill1 && ../../../tools/venv/bin/python ../../../bench/decode_speed.py \\
        --run_dirs exp/pr_teacher exp/asr_teacher --test_set test --name demo_decode_speed

Each head's test set is decoded --repeats times by each method, the two alternating, in one
process; a time is the median of its repeats. Writes bench/results/<name>.json (next to this
script) and prints a table.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from espnet2_stacking.asr.scoring import read_text, score
from espnet2_stacking.data.atomic import atomic_write_text
from espnet2_stacking.pipelines.ctc_greedy import CTCGreedyDecoder
from espnet2_stacking.tasks.register import register

RESULTS = Path(__file__).resolve().parent / "results"


def get_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run_dirs", nargs="+", type=Path, required=True,
                   help="trained ASR or PR runs (config.yaml, the checkpoint, decode_<set>/ "
                        "from stage 6: its speech input is read from the stage's decode log)")
    p.add_argument("--test_set", default="test")
    p.add_argument("--datadir", type=Path, default=Path("data"))
    p.add_argument("--model", default="valid.loss.ave.pth")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--name", default="decode_speed")
    return p


def speech_input(run_dir: Path, test_set: str) -> str:
    """The path,name,type stage 6 decoded this run's test set from (its first job's log)."""
    log = run_dir / f"decode_{test_set}" / "logdir" / "decode.1.log"
    words = log.read_text(encoding="utf-8").splitlines()[1].split()
    return words[words.index("--data_path_and_name_and_type") + 1].replace("\\,", ",")


def references(datadir: Path, test_set: str, config: dict):
    """The test set's transcripts in the run's units, and the unit its error rate counts: PR
    (token_type word over phones) its PER, ASR its CER (the demo's headline)."""
    if config["token_type"] == "word":
        return read_text(datadir / test_set / "text_phn"), "word"
    return read_text(datadir / test_set / "text"), "char"


def error_rate(hyps: dict, refs: dict, unit: str) -> float:
    return 100.0 * score(refs, hyps, unit).error_rate


def decode_greedy(decoder, loader) -> dict:
    out = {}
    for keys, batch in loader:
        for key, hyp in zip(keys, decoder(batch["speech"], batch["speech_lengths"])):
            out[key] = hyp.text
    return out


def decode_prefix_search(speech2text, loader) -> dict:
    out = {}
    for keys, batch in loader:
        for key, nbest in zip(keys, speech2text.batch_decode(**batch)):
            out[key] = nbest[0][0] or ""
    return out


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    register()
    from espnet2.bin.asr_inference import Speech2Text

    torch.set_num_threads(1)  # as one job of the recipe's pool
    rows = []
    for run_dir in args.run_dirs:
        config_file, model_file = run_dir / "config.yaml", run_dir / args.model
        greedy = CTCGreedyDecoder(config_file, model_file)
        search = Speech2Text(asr_train_config=config_file, asr_model_file=model_file,
                             ctc_weight=1.0, lm_weight=0.0, beam_size=1, nbest=1, device="cpu")
        data = [tuple(speech_input(run_dir, args.test_set).split(","))]
        refs, unit = references(args.datadir, args.test_set, vars(greedy.args))

        times = {"greedy": [], "prefix_search": []}
        for _ in range(args.repeats):
            hyp_greedy, t = timed(decode_greedy, greedy, greedy.batches(data, args.batch_size))
            times["greedy"].append(t)
            hyp_search, t = timed(decode_prefix_search, search, greedy.batches(data, args.batch_size))
            times["prefix_search"].append(t)
        row = {"run_dir": str(run_dir), "utterances": len(refs), "unit": unit,
               "greedy_s": round(statistics.median(times["greedy"]), 2),
               "prefix_search_s": round(statistics.median(times["prefix_search"]), 2),
               "greedy_error_rate": round(error_rate(hyp_greedy, refs, unit), 2),
               "prefix_search_error_rate": round(error_rate(hyp_search, refs, unit), 2),
               "same_hypotheses": sum(hyp_greedy[u] == hyp_search.get(u) for u in hyp_greedy),
               "times": times}
        row["speedup"] = round(row["prefix_search_s"] / row["greedy_s"], 1)
        rows.append(row)
        print(f"{run_dir}: {len(refs)} utterances, greedy {row['greedy_s']} s "
              f"({row['greedy_error_rate']} %), prefix search at beam 1 "
              f"{row['prefix_search_s']} s ({row['prefix_search_error_rate']} %): "
              f"{row['speedup']}x, {row['same_hypotheses']} hypotheses the same", flush=True)
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / f"{args.name}.json",
                      json.dumps({"argv": sys.argv[1:], "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
