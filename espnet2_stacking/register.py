"""Make the plugin's components known to ESPnet.

ESPnet has no plugin registry: its tasks read module-level dicts and ClassChoices when they
build their parsers and models. Every entry point of this package calls :func:`register` first,
never as a side effect of importing the package. Spawned multi-GPU workers import only the
module that defines the task class, so the plugin's task classes (e.g.
:class:`espnet2_stacking.tasks.asr.StackingASRTask`) call it again where they build parsers and
models.
"""

_done = False


def register() -> None:
    """Add the plugin's scheduler and ASR frontend to ESPnet's tables (idempotent).

    - ``warmuplineardecaylr`` in every task's ``--scheduler`` choices;
    - ``stacking_upstream`` in ``espnet2.tasks.asr.frontend_choices`` (``--frontend``).
    """
    global _done
    if _done:
        return
    from espnet2.tasks import abs_task
    from espnet2.tasks import asr as asr_task

    from espnet2_stacking.asr.frontend import StackingUpstreamFrontend
    from espnet2_stacking.schedulers.warmup_linear_decay_lr import WarmupLinearDecayLR

    abs_task.scheduler_classes.setdefault("warmuplineardecaylr", WarmupLinearDecayLR)
    # ClassChoices looks names up lower-case; setdefault keeps a second call harmless.
    asr_task.frontend_choices.classes.setdefault("stacking_upstream", StackingUpstreamFrontend)
    _done = True
