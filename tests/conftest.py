"""Shared fixtures: a tiny random Llama model and a real (tiny) byte-level BPE tokenizer, built offline.

Nothing here downloads: the tokenizer is trained in a second on a small built-in corpus, the model is built
from a config with a fixed seed and saved as an ordinary HF folder, so loaders see exactly what a user's
`save_pretrained` folder looks like.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `-n 2`: one thread per worker, not 2 workers x all cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "def add(a, b):\n    return a + b\n",
    'def is_even(n: int) -> bool:\n    """Return True if n is even."""\n    return n % 2 == 0\n',
    "for i in range(10):\n    print(i)\n",
    "class Problem {\n    public static long add(long a, long b) {\n        return a + b;\n    }\n}\n",
    "The quick brown fox jumps over the lazy dog. Python lists are mutable sequences.\n",
    "import math\nfrom typing import List\n\n\ndef mean(xs: List[float]) -> float:\n    return sum(xs) / len(xs)\n",
] * 20


def build_tiny_tokenizer(vocab_size: int = 384):
    """A real byte-level BPE tokenizer (HF `tokenizers`), with pad/eos and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        bos_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llama(
    vocab_size: int, seed: int = 0, layers: int = 2, hidden: int = 64, intermediate: int = 128
):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(config).eval()
    return model


@pytest.fixture(scope="session")
def tiny_llama_builder():
    """`build_tiny_llama` for tests that need another shape; a fixture, since `from conftest import` resolves to
    whichever of the suite's conftest modules was imported last."""
    return build_tiny_llama


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """An HF folder (config, safetensors, tokenizer) of a 2-layer random Llama; read-only for tests."""
    path = tmp_path_factory.mktemp("tiny-llama")
    model = build_tiny_llama(len(tiny_tokenizer))
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture()
def tiny_llama(tiny_llama_dir):
    """A fresh copy of the tiny Llama (tests may modify it)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent")
    return SHARED
