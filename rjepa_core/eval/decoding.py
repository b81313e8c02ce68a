"""How well the latent decoder reads latents, and what R-JEPA's predictions say when decoded (SPEC F12).

    >>> from rjepa_core.jepa.decoder import load_decoder, step_pairs
    >>> report = decoding_report(load_decoder(folder), val_pairs, train_pairs, tokenizer)   # doctest: +SKIP
    >>> report["exact_match"], report["baselines"]["shuffled_latent"]["token_accuracy"]     # doctest: +SKIP

Two baselines keep the numbers honest: the same decoder fed **shuffled** latents (what it writes from
the text prior alone; a decoder that ignored its input would score the same) and the **nearest
training step** (the text of the training latent closest by cosine: what retrieval gives without
any decoder). Predictions: every step of a held-out chain is masked in turn, R-JEPA predicts it
from the other steps (and the question latent), and the prediction, mapped to the student's hidden
space, is decoded; the decoded step is "arithmetically right" when every equality it states checks
out (`validators.steps.check_step`) and it states at least one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rjepa_core.jepa.decoder import StepPair, TrainedDecoder, decoder_metrics, same_numbers, token_accuracy
from rjepa_core.validators.steps import check_step


def _texts(pairs: Sequence[StepPair], tokenizer: Any) -> list[str]:
    return [tokenizer.decode(p.token_ids, skip_special_tokens=True).strip() for p in pairs]


def _unit(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def nearest_train_text(val: Sequence[StepPair], train: Sequence[StepPair], tokenizer: Any) -> list[str]:
    """The text of the training step whose latent is closest (cosine) to each held-out latent."""
    T = _unit(np.stack([p.latent for p in train]).astype(np.float32))
    texts = _texts(train, tokenizer)
    out = []
    for start in range(0, len(val), 512):
        V = _unit(np.stack([p.latent for p in val[start : start + 512]]).astype(np.float32))
        out += [texts[i] for i in (V @ T.T).argmax(1)]
    return out


def arithmetically_right(text: str) -> bool | None:
    """True/False when the text states checkable arithmetic, None when it states none."""
    check = check_step(text)
    return None if check.checked == 0 else check.ok


def _rate(flags: Sequence[bool | None]) -> tuple[float, int]:
    known = [f for f in flags if f is not None]
    return (float(np.mean(known)) if known else float("nan")), len(known)


def decoding_report(
    trained: TrainedDecoder, val: Sequence[StepPair], train: Sequence[StepPair], tokenizer: Any, seed: int = 0
) -> dict[str, Any]:
    """Held-out metrics of the decoder with its two baselines (see the module docstring)."""
    report = decoder_metrics(trained, val, tokenizer)
    if not val:
        return report
    perm = np.random.default_rng(seed).permutation(len(val))
    shuffled = [StepPair(val[int(j)].latent, p.token_ids) for p, j in zip(val, perm, strict=True)]
    acc, _ = token_accuracy(trained.decoder, trained.vocab, shuffled)
    decoded = trained.decode(np.stack([p.latent for p in shuffled]), tokenizer)
    true = _texts(val, tokenizer)
    nearest = nearest_train_text(val, train, tokenizer) if train else []
    report["baselines"] = {
        "shuffled_latent": {
            "token_accuracy": acc,
            "exact_match": float(np.mean([d == t for d, t in zip(decoded, true, strict=True)])),
            "numeric_accuracy": float(np.mean([same_numbers(d, t) for d, t in zip(decoded, true, strict=True)])),
        },
        **(
            {
                "nearest_train_step": {
                    "exact_match": float(np.mean([d == t for d, t in zip(nearest, true, strict=True)])),
                    "numeric_accuracy": float(
                        np.mean([same_numbers(d, t) for d, t in zip(nearest, true, strict=True)])
                    ),
                }
            }
            if nearest
            else {}
        ),
    }
    return report


def prediction_report(
    trained: TrainedDecoder, model: Any, seqs: Sequence[Any], tokenizer: Any, max_chains: int = 400
) -> dict[str, Any]:
    """Decode R-JEPA's prediction of every step of held-out chains (each masked in turn) and check it.

    seqs: LatentSequences with tensors (held-out, valid chains); chains of one step are predicted from
    the question latent alone when the model has a question token, else skipped.
    """
    from rjepa_core.jepa.scoring import predict_masked

    preds, pairs = [], []
    for s in list(seqs)[:max_chains]:
        H = np.asarray(s.H, dtype=np.float32)
        q = s.Q if getattr(model.cfg, "question_token", False) else None
        if H.shape[0] < 2 and q is None:
            continue
        for j, (a, b) in enumerate(s.step_spans):
            _, ph = predict_masked(model, H, [j], s.domain, q)  # step j masked: the others are the context
            preds.append(ph[0])
            pairs.append(StepPair(H[j], list(s.token_ids[a:b]), s.problem_id, s.cot_id, j))
    if not preds:
        return {"n": 0}
    true = _texts(pairs, tokenizer)
    from_pred = trained.decode(np.stack(preds), tokenizer)
    from_true = trained.decode(np.stack([p.latent for p in pairs]), tokenizer)
    pred_right, n_checkable = _rate([arithmetically_right(t) for t in from_pred])
    true_right, n_true = _rate([arithmetically_right(t) for t in from_true])
    gold_right, n_gold = _rate([arithmetically_right(t) for t in true])
    return {
        "n": len(preds),
        "exact_match": float(np.mean([d == t for d, t in zip(from_pred, true, strict=True)])),
        "numeric_accuracy": float(np.mean([same_numbers(d, t) for d, t in zip(from_pred, true, strict=True)])),
        "arithmetically_right": pred_right,
        "n_checkable": n_checkable,
        "decoded_true_latent_arithmetically_right": true_right,
        "decoded_true_latent_n_checkable": n_true,
        "true_text_arithmetically_right": gold_right,
        "true_text_n_checkable": n_gold,
        "examples": [
            {"true": t, "decoded_prediction": d, "decoded_true_latent": e}
            for t, d, e in list(zip(true, from_pred, from_true, strict=True))[:8]
        ],
    }
