"""The latent decoder: it must read its input latent, save/load exactly, and report honest metrics."""

from __future__ import annotations

import numpy as np
import pytest

from rjepa_core.jepa.decoder import (
    DecoderConfig,
    DecoderVocab,
    StepPair,
    load_decoder,
    same_numbers,
    step_pairs,
    train_decoder,
)

# Six steps that share their first three tokens and differ only after: a decoder that ignored its latent
# could write at most one of them (the same text for every latent); one that reads it writes all six.
TEXTS = [[110, 111, 112, 120 + i, 130 + i] for i in range(6)]
SMALL = DecoderConfig(
    d_model=32, n_layers=1, n_heads=2, steps=300, batch_size=6, val_every=50, patience=100, latent_noise=0.0,
    dropout=0.0, warmup_steps=10, max_tokens=8,
)  # fmt: skip


@pytest.fixture(scope="module")
def memorised():
    Z = np.random.default_rng(0).standard_normal((6, 24)).astype(np.float32)
    pairs = [StepPair(Z[i], TEXTS[i]) for i in range(6)]
    return Z, pairs, train_decoder(pairs, pairs, SMALL)


def test_decoder_writes_each_latents_own_text(memorised):
    Z, _, dec = memorised
    assert dec.generate_ids(Z) == TEXTS
    # the same latents in another order give the texts in that order: the text follows the latent
    order = [3, 0, 5, 1, 4, 2]
    assert dec.generate_ids(Z[order]) == [TEXTS[i] for i in order]
    assert dec.history[-1]["val_token_acc"] == 1.0


def test_decoder_round_trips_through_its_folder(memorised, tmp_path):
    Z, _, dec = memorised
    folder = dec.save(tmp_path / "decoder", llm_tag="tiny", pooling="mean")
    again = load_decoder(folder)
    assert again.generate_ids(Z) == TEXTS
    assert again.meta["llm_tag"] == "tiny" and again.vocab.student_ids == dec.vocab.student_ids
    dec.save(tmp_path / "decoder")  # replacing it leaves one whole folder, no temp siblings
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoder"]


def test_decoder_refuses_wrong_width_and_nan(memorised, tmp_path):
    _, _, dec = memorised
    with pytest.raises(ValueError, match=r"\(n, 24\)"):
        dec.generate_ids(np.zeros((2, 10), np.float32))
    with pytest.raises(ValueError, match="finite"):
        dec.generate_ids(np.full((1, 24), np.nan, np.float32))
    with pytest.raises(FileNotFoundError, match="latent_decoder"):
        load_decoder(tmp_path / "missing")


def test_vocab_maps_unseen_tokens_to_unk_and_back():
    vocab = DecoderVocab.build([[7, 9, 9], [11]])
    assert len(vocab) == 4 + 3
    assert vocab.decode(vocab.encode([9, 7, 11])) == [9, 7, 11]
    assert vocab.decode(vocab.encode([9, 5000, 11])) == [9, 11]  # unknown → UNK, dropped on decode
    assert vocab.decode([vocab.encode([9])[0], 2, vocab.encode([7])[0]]) == [9]  # stops at EOS


def test_numeric_accuracy_compares_the_stated_numbers():
    assert same_numbers("3 + 4 = 7", "3+4=7")
    assert same_numbers("1,200 / 2 = 600", "1200 / 2 = 600.0")
    assert not same_numbers("3 + 4 = 8", "3 + 4 = 7")
    assert not same_numbers("4 + 3 = 7", "3 + 4 = 7")  # order matters


def test_step_pairs_take_each_steps_own_tokens(tiny_student):
    from rjepa_core.schemas import LatentSequence

    steps = ["3 + 4 = 7", "7 * 2 = 14"]
    [ex] = tiny_student.extract([("What is (3 + 4) * 2?", steps)], layer_idx=-2)
    seq = LatentSequence(
        cot_id="c", problem_id="p", llm_tag="tiny", layer_idx=-2, hidden_size=64, num_steps=2,
        step_spans=ex.step_spans, token_ids=ex.token_ids, H=ex.H,
    )  # fmt: skip
    pairs = step_pairs([seq])
    assert [tiny_student.tokenizer.decode(p.token_ids).strip() for p in pairs] == steps
    np.testing.assert_array_equal(pairs[1].latent, ex.H[1].astype(np.float32))
    with pytest.raises(ValueError, match="with_tensors"):
        step_pairs([seq.model_copy(update={"H": None})])
