#!/usr/bin/env python3
"""Staged distillation with stacking (recipe stage 3).

Example:
    python -m espnet2_stacking.bin.distill_train --print_config > conf/distill.yaml
    python -m espnet2_stacking.bin.distill_train --config conf/distill.yaml \
        --train_data_path_and_name_and_type data/train/wav.scp,speech,sound \
        --train_data_path_and_name_and_type dump/train/layer_12.scp,target_12,npy \
        --train_shape_file data/train/utt2num_samples ... --output_dir exp/distill
"""

from espnet2_stacking.tasks.register import register_scheduler

register_scheduler()

from espnet2_stacking.tasks.distill import DistillTask  # noqa: E402


def get_parser():
    return DistillTask.get_parser()


def main(cmd=None):
    DistillTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
