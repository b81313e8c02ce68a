"""A tiny, randomly initialised student LLM for tests (real transformer, real tokenizer, < 3 s).

    >>> from rjepa_core.llm.testing import build_tiny_llm
    >>> from rjepa_core.llm.adapter import StudentLLM
    >>> from rjepa_core.llm.registry import LLMSpec
    >>> path = build_tiny_llm("/tmp/tiny-llm")
    >>> llm = StudentLLM.load(LLMSpec(llm_tag="tiny", source=str(path)), device="cpu")
    >>> llm.hidden_size
    64

The tokenizer is a GPT-2-style byte-level BPE trained on a few lines of arithmetic step text, so
offsets, leading-space tokens and unicode behave like a real model's.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "Step 1: 3 + 4 = 7\nStep 2: 7 * 2 = 14\nAnswer: 14",
    "Step 1: Tom has 12 apples and eats 5, so 12 - 5 = 7.\nStep 2: He buys 9 more: 7 + 9 = 16.\nAnswer: 16",
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72",
    "We add the numbers. Therefore the total is 25. So the answer is 25. Finally we check: 25 = 25.",
    "Solve the problem step by step. Write each step on its own line starting with Step 1:, Step 2:.",
    "Problem: What is 8 + 6 - 3? Compute 8 + 6 = 14, then 14 - 3 = 11. The answer is 11.",
    "A train travels 60 km per hour for 3 hours: 60 * 3 = 180 km. Thus the distance is 180.",
    "The price is 2.5 dollars; 4 items cost 4 * 2.5 = 10 dollars. Hence the cost is 10 €.",
    "Résumé: naïve café — 5 × 3 = 15, π ≈ 3.14, √16 = 4. Étape 2: 15 ÷ 3 = 5.",
    "user assistant system Solve step by step. Problem Answer Step",
]


def train_byte_bpe(vocab_size: int = 512, trim_offsets: bool = True, corpus: list[str] | None = None):
    """A trained byte-level BPE `tokenizers.Tokenizer` (GPT-2 style) on a small arithmetic corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=trim_offsets)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((corpus or _CORPUS) * 4, trainer=trainer)
    return tok


def tiny_tokenizer(vocab_size: int = 512, trim_offsets: bool = True):
    """The tiny model's tokenizer as a `PreTrainedTokenizerFast` with a chat template."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=train_byte_bpe(vocab_size, trim_offsets=trim_offsets),
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llm(
    path: str | Path, hidden_size: int = 64, num_layers: int = 4, vocab_size: int = 512, seed: int = 0
) -> Path:
    """Save a random LlamaForCausalLM + byte-level BPE tokenizer (with chat template) to `path`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tokenizer = tiny_tokenizer(vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def overfit_student(llm_dir, prompt_of, target, steps: int = 80):
    """(StudentLLM, prompt): a fresh copy of the tiny student (saved at `llm_dir`) trained to write `target` (a
    text, or token ids) after `prompt_of(llm)`: a student that writes a known chain, so what it samples can be
    compared with teacher-forced extraction of the same text."""
    import torch

    from rjepa_core.llm.adapter import StudentLLM
    from rjepa_core.llm.registry import LLMSpec

    llm = StudentLLM.load(LLMSpec(llm_tag="tiny", source=str(llm_dir), batch_size=4, hidden_size=64), device="cpu")
    prompt = prompt_of(llm)
    tok = llm.tokenizer
    p_ids = tok(prompt)["input_ids"]
    t_ids = tok(prompt + target)["input_ids"][len(p_ids) :] if isinstance(target, str) else list(target)
    ids = torch.tensor([p_ids + t_ids + [tok.eos_token_id]])
    torch.manual_seed(0)
    opt = torch.optim.Adam(llm.model.parameters(), lr=3e-3)
    llm.model.train()
    for _ in range(steps):
        loss = llm.model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    llm.model.eval()
    return llm, prompt
