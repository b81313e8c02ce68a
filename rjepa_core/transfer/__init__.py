"""Cross-LLM latent adapters and weight transfer (SPEC F13): serve and train a new student through a
checkpoint trained on another one.

    adapter.py    LatentAdapter (W_in: new width -> reference width, W_out back) and AdaptedRJEPA
    paired.py     paired-latent baselines: the same chains through both students, ridge / orthogonal Procrustes
    fitting.py    the F13 fit (R-JEPA frozen, W_in trained), its collapse guard, and the whole adapter fit
    jobs.py       store -> fit -> store, as the `calibration_adapter` asset and `rjepa replay` run it
    store.py      adapters/<reference>__to__<target>/<version>/<run_id>/ + LATEST.json, atomic writes
    warmstart.py  a checkpoint for the new student warm-started from the reference one, vs from scratch
    replay.py     the comparison report (own checkpoint / reference through the adapter / warm start)

Not to be confused with `rjepa_core.jepa.calibration`, the 0-1 scale of one checkpoint's JEPA-loss (F10).
"""
