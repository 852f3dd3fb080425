"""Make the plugin's components known to ESPnet.

ESPnet has no plugin registry: its tasks read module-level dicts and ClassChoices when they
build their parsers and models. Every entry point of this package registers what it needs
first, never as a side effect of importing the package. Spawned multi-GPU workers import only
the module that defines the task class, so the plugin's task classes (e.g.
:class:`espnet2_stacking.tasks.asr.StackingASRTask`) register again where they build parsers
and models.

Distillation needs only the scheduler; importing ESPnet's ASR task for the frontend costs
seconds at every process start, so only the ASR side pays it.
"""

_done = set()


def register_scheduler() -> None:
    """``warmuplineardecaylr`` in every task's ``--scheduler`` choices and the ``cropped_npy``
    data type (dumped targets read by crop) in ESPnet's data loaders (idempotent)."""
    if "scheduler" in _done:
        return
    from espnet2.tasks import abs_task
    from espnet2.train import dataset

    from espnet2_stacking.data.cropped_npy import CROPPED_NPY, NpyFramesReader
    from espnet2_stacking.training.warmup_linear_decay_lr import WarmupLinearDecayLR

    abs_task.scheduler_classes.setdefault("warmuplineardecaylr", WarmupLinearDecayLR)
    dataset.DATA_TYPES.setdefault(CROPPED_NPY, dict(
        func=NpyFramesReader, kwargs=[],
        help="Dumped (frames, dim) .npy files read by crop, memory-mapped, in their stored dtype"
             "\n\n   utterance_id_a /some/where/a.npy\n   ..."))
    _done.add("scheduler")


def register() -> None:
    """Everything: the scheduler, and ``stacking_upstream`` in
    ``espnet2.tasks.asr.frontend_choices`` (``--frontend``) (idempotent)."""
    register_scheduler()
    if "asr_frontend" in _done:
        return
    from espnet2.tasks import asr as asr_task

    from espnet2_stacking.asr.frontend import StackingUpstreamFrontend

    # ClassChoices looks names up lower-case; setdefault keeps a second call harmless.
    asr_task.frontend_choices.classes.setdefault("stacking_upstream", StackingUpstreamFrontend)
    _done.add("asr_frontend")


def register_classification() -> None:
    """``register`` plus ``stacking_upstream`` in ``espnet2.tasks.cls.frontend_choices``
    (speaker identification through ESPnet's classification task) (idempotent)."""
    register()
    if "cls_frontend" in _done:
        return
    from espnet2.tasks import cls as cls_task

    from espnet2_stacking.asr.frontend import StackingUpstreamFrontend

    cls_task.frontend_choices.classes.setdefault("stacking_upstream", StackingUpstreamFrontend)
    _done.add("cls_frontend")
