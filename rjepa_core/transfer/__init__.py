"""Cross-LLM latent adapters and weight transfer (SPEC F13): serve and train a new student through a
checkpoint trained on another one.

    adapter.py    LatentAdapter (W_in: new width -> reference width, W_out back) and AdaptedRJEPA
    fitting.py    paired-latent baselines (ridge, orthogonal Procrustes) and the F13 fit (R-JEPA frozen)
    store.py      adapters/<reference>__to__<target>/<version>/<run_id>/ + LATEST.json, atomic writes
    warmstart.py  a checkpoint for the new student warm-started from the reference one, vs from scratch
    replay.py     the comparison report (own checkpoint / reference through the adapter / warm start)

Not to be confused with `rjepa_core.jepa.calibration`, the 0-1 scale of one checkpoint's JEPA-loss (F10).
"""
