"""The architecture matrix of docs/quantization.md: quantize (RTN, GPTQ, AQLM) -> export -> reload -> generate on tiny
random models of every architecture family codequant claims, built from configs; and one clear error where an
architecture cannot be supported.

Each cell runs `quantize_to_dir` (the `codequant quantize` path) on a 2-block model saved as an HF folder with the
tiny tokenizer, then checks that every block linear was replaced by the method's quantized linear, that the
dequantized export and the native checkpoint reload to the same logits (and not the fp model's), and that the
engine (or `hf_generate` where the engine cannot drive the model's cache) generates tokens, equal to `hf_generate`'s.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codequant.errors import CodequantError
from codequant.quant.arch import block_linears, find_decoder_layers
from codequant.quant.base import QuantizedLinear
from codequant.quant.run import QuantRun, build_config, quantize_to_dir

HIDDEN, INTER = 64, 128
CALIB = torch.randint(3, 384, (8, 16), generator=torch.Generator().manual_seed(1))
PROMPTS = ["def add(a, b):", "for i in range(10):\n    print(i)"]
# The recurrent models generate through model.generate: the engine drives attention KV caches only and refuses them
# (`engine_unsupported`; `evaluate` falls back to the hf backend). RWKV keeps its state outside the cache; Mamba's
# recurrent cache layers would read the engine's whole [rows, length] attention mask as the new token's.
HF_ONLY = {"mamba", "rwkv"}


def _special(tok) -> dict[str, int]:
    return {
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
        "bos_token_id": tok.bos_token_id,
    }


def _config(arch: str, tok, **overrides):
    """A 2-block config of `arch` with every input size divisible by the group sizes used here (16, AQLM 4)."""
    import transformers as tf

    v, ids = len(tok), _special(tok)
    attn = {
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 256,
        **ids,
    }
    builders = {
        "qwen2": lambda: tf.Qwen2Config(
            vocab_size=v, num_key_value_heads=2, tie_word_embeddings=True, **attn
        ),
        "gemma3": lambda: tf.Gemma3TextConfig(
            vocab_size=v,
            num_key_value_heads=2,
            head_dim=16,
            sliding_window=4,
            layer_types=["sliding_attention", "full_attention"],
            **attn,
        ),
        "gpt_neox": lambda: tf.GPTNeoXConfig(vocab_size=v, rotary_pct=0.5, tie_word_embeddings=False, **attn),
        "phi3": lambda: tf.Phi3Config(
            vocab_size=v,
            num_key_value_heads=2,
            original_max_position_embeddings=256,
            tie_word_embeddings=False,
            **attn,
        ),
        "mamba": lambda: tf.MambaConfig(
            vocab_size=v,
            hidden_size=HIDDEN,
            num_hidden_layers=2,
            state_size=8,
            expand=2,
            conv_kernel=4,
            time_step_rank=16,
            tie_word_embeddings=False,
            **ids,
        ),
        "rwkv": lambda: tf.RwkvConfig(
            vocab_size=v,
            hidden_size=HIDDEN,
            attention_hidden_size=HIDDEN,
            intermediate_size=INTER,
            num_hidden_layers=2,
            context_length=256,
            rescale_every=0,
            **ids,
        ),
        "gpt2": lambda: tf.GPT2Config(
            vocab_size=v, n_embd=HIDDEN, n_layer=2, n_head=4, n_positions=256, **ids
        ),
        "gpt_bigcode": lambda: tf.GPTBigCodeConfig(
            vocab_size=v, n_embd=HIDDEN, n_layer=2, n_head=4, n_positions=256, multi_query=True, **ids
        ),
    }
    config = builders[arch]()
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def _save(config, tok, folder: Path) -> Path:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


ARCHS = ["qwen2", "gemma3", "gpt_neox", "phi3", "mamba", "rwkv", "gpt2", "gpt_bigcode"]
METHODS = {
    "rtn": lambda: build_config("rtn", bits=4, group_size=16),
    "gptq": lambda: build_config("gptq", bits=4, group_size=16),
    "aqlm": lambda: build_config(
        "aqlm",
        num_codebooks=1,
        codebook_bits=8,
        group_size=4,
        options={"max_rounds": 1, "kmeans_iters": 2, "tune_epochs": 1},
    ),
}
# Relative logit error (||q - fp||^2 / ||fp||^2) each method stays under on every architecture here; measured at
# most 0.033 (RTN and GPTQ, 4 bits g16) and 0.19 (AQLM 1x8 g4, 2 bits) on these random models. A linear quantized
# from a wrong weight (e.g. a Conv1D read untransposed) gives errors near 1 and more.
MAX_LOGIT_ERROR = {"rtn": 0.1, "gptq": 0.1, "aqlm": 0.5}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per test: on 64-wide layers thread handoffs cost more than the math, and on a busy 2-core
    machine two threads made a cell 10-40x slower. (The engine takes every core again when it generates.)"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fp_dirs(tmp_path_factory, tiny_tokenizer) -> dict[str, Path]:
    """Each architecture's fp model as an HF folder (read-only for the tests)."""
    root = tmp_path_factory.mktemp("archs")
    return {arch: _save(_config(arch, tiny_tokenizer), tiny_tokenizer, root / arch) for arch in ARCHS}


def _logits(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=tokens).logits


def _greedy(model, tok, prompt: str, n: int) -> list[int]:
    """The reference: n greedy tokens from full forwards without any cache, stopping at EOS."""
    from codequant.generation.engine import eos_token_ids

    eos, ids = eos_token_ids(model, tok), tok(prompt).input_ids
    new: list[int] = []
    for _ in range(n):
        token = int(_logits(model, torch.tensor([ids + new]))[0, -1].argmax())
        if token in eos:
            break
        new.append(token)
    return new


def _generate(arch: str, model, tok) -> list[list[int]]:
    """Greedy tokens from the backend an evaluation of `arch` uses (the engine; `hf_generate` for the recurrent
    models, see HF_ONLY); they must equal the cache-free reference."""
    from codequant.generation.engine import Request, SamplingParams, generate
    from codequant.generation.hf import hf_generate

    backend = hf_generate if arch in HF_ONLY else generate
    reqs = [Request(p, key=i) for i, p in enumerate(PROMPTS)]
    tokens = [
        c.token_ids for c in backend(model, tok, reqs, SamplingParams(max_new_tokens=4), progress=False)
    ]
    assert tokens == [_greedy(model, tok, p, 4) for p in PROMPTS]
    return tokens


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("arch", ARCHS)
def test_quantize_export_reload_generate(arch, method, fp_dirs, tiny_tokenizer, tmp_path):
    from codequant.models import load

    fp = load(str(fp_dirs[arch])).model
    expected = {name for layer in find_decoder_layers(fp)[1] for name in block_linears(layer)}
    out = tmp_path / "q"
    result = quantize_to_dir(
        str(fp_dirs[arch]),
        METHODS[method](),
        out,
        QuantRun(calibration=CALIB, formats=("dequantized", "codequant")),
        progress=False,
    )
    assert result["complete"] and len(result["layers"]) == 2 * len(expected)

    native = load(str(out / "codequant")).model  # the codequant checkpoint: quantized modules again
    for layer in find_decoder_layers(native)[1]:
        quant = {n: m for n, m in layer.named_modules() if isinstance(m, QuantizedLinear)}
        assert set(quant) == expected and {m.kind for m in quant.values()} == {method}
        assert not block_linears(layer)  # no fp linear (nn.Linear or Conv1D) left inside a block
    dequantized = load(str(out)).model  # the plain HF folder
    assert not any(isinstance(m, QuantizedLinear) for m in dequantized.modules())
    tokens = CALIB[:2, :12]
    ref = _logits(native, tokens)
    assert torch.allclose(_logits(dequantized, tokens), ref, atol=1e-5, rtol=1e-5)
    fp_logits = _logits(fp, tokens)
    error = float(((ref - fp_logits) ** 2).sum() / (fp_logits**2).sum())
    assert 1e-8 < error < MAX_LOGIT_ERROR[method]  # quantization changed the model, and only a little
    completions = _generate(arch, native, tiny_tokenizer)
    assert all(len(c) > 0 for c in completions)


def test_rwkv_rescaling_is_refused_by_name(tiny_tokenizer, tmp_path):
    """RWKV's rescale_every divides linear weights in place and halves hidden states between blocks: refused up front,
    for every method, with what to change."""
    folder = _save(_config("rwkv", tiny_tokenizer, rescale_every=6), tiny_tokenizer, tmp_path / "rwkv6")
    for method, config in METHODS.items():
        with pytest.raises(CodequantError, match=r"rescale_every=6.*set \"rescale_every\": 0"):
            quantize_to_dir(
                str(folder), config(), tmp_path / method, QuantRun(calibration=CALIB), progress=False
            )
        assert not (tmp_path / method).exists()


def test_the_walk_refuses_hidden_states_changed_between_blocks(tiny_tokenizer):
    """Even past check_architecture, the walk's own check finds a model that transforms hidden states between its
    blocks (RWKV halving them after every block with rescale_every=1)."""
    from transformers import AutoModelForCausalLM

    from codequant.quant.capture import capture_layer_kwargs

    model = AutoModelForCausalLM.from_config(_config("rwkv", tiny_tokenizer, rescale_every=1)).eval()
    _, layers = find_decoder_layers(model)
    with pytest.raises(CodequantError, match="transforms the hidden states between its blocks"):
        capture_layer_kwargs(model, layers, CALIB[:1])


def test_mamba_group_size_must_divide_the_time_step_rank(tiny_tokenizer, tmp_path):
    """Mamba's dt_proj has time_step_rank inputs (hidden/16 by default): a group size that does not divide it is
    refused by name, before any work."""
    folder = _save(_config("mamba", tiny_tokenizer, time_step_rank=4), tiny_tokenizer, tmp_path / "mamba")
    with pytest.raises(
        CodequantError, match=r"does not divide the 4 inputs of backbone\.layers\.0\.mixer\.dt_proj"
    ):
        quantize_to_dir(
            str(folder), METHODS["rtn"](), tmp_path / "q", QuantRun(calibration=CALIB), progress=False
        )


def test_aqlm_format_refuses_conv1d_architectures(fp_dirs, tmp_path):
    """transformers' aqlm loader replaces only nn.Linear: GPT-2's Conv1D blocks cannot be written in that format. Asked
    for by name it is an error before any work; by default it is left out of the formats."""
    config = METHODS["aqlm"]()
    with pytest.raises(CodequantError, match=r"aqlm format cannot hold GPT2LMHeadModel.*Conv1D"):
        quantize_to_dir(
            str(fp_dirs["gpt2"]),
            config,
            tmp_path / "a",
            QuantRun(calibration=CALIB, formats=("aqlm",)),
            progress=False,
        )
    assert not (tmp_path / "a").exists()
    result = quantize_to_dir(
        str(fp_dirs["gpt2"]), config, tmp_path / "b", QuantRun(calibration=CALIB), progress=False
    )
    assert set(result["exports"]) == {"dequantized", "codequant"}


def test_decoder_blocks_are_found_by_what_they_are(fp_dirs):
    """The block list is the module list of num_hidden_layers blocks, wherever the architecture keeps it."""
    from transformers import AutoModelForCausalLM

    where = {
        "qwen2": "model.layers",
        "gemma3": "model.layers",
        "gpt_neox": "gpt_neox.layers",
        "phi3": "model.layers",
        "mamba": "backbone.layers",
        "rwkv": "rwkv.blocks",
        "gpt2": "transformer.h",
        "gpt_bigcode": "transformer.h",
    }
    for arch, name in where.items():
        model = AutoModelForCausalLM.from_pretrained(fp_dirs[arch])
        assert find_decoder_layers(model)[0] == name, arch
    model.config.num_hidden_layers = 3
    with pytest.raises(CodequantError, match="no nn.ModuleList holds its num_hidden_layers=3 blocks"):
        find_decoder_layers(model)


@pytest.mark.parametrize("arch", sorted(HF_ONLY))
def test_engine_refuses_recurrent_models_and_evaluation_falls_back_to_hf(
    arch, fp_dirs, tiny_tokenizer, tmp_path
):
    """The engine would crash on RWKV and decode wrong tokens on Mamba: it says why, and `evaluate` with the
    default engine backend generates with `model.generate` instead (its summary says so)."""
    from codequant.evaluation import EvalSettings, evaluate
    from codequant.generation.batch import engine_unsupported
    from codequant.generation.engine import Request, SamplingParams, generate
    from codequant.models import load

    model = load(str(fp_dirs[arch])).model
    assert engine_unsupported(model)
    with pytest.raises(CodequantError, match="backend hf"):
        generate(
            model, tiny_tokenizer, [Request("x", key=0)], SamplingParams(max_new_tokens=2), progress=False
        )
    summary = evaluate(
        str(fp_dirs[arch]),
        "humaneval",
        EvalSettings(limit=1, max_new_tokens=4, prompt_style="base"),
        out_dir=tmp_path / "run",
        progress=False,
    )
    assert summary["run"]["backend"] == "hf" and summary["completions"] == 1


def test_attention_models_keep_the_engine(fp_dirs):
    from codequant.generation.batch import engine_unsupported
    from codequant.models import load

    for arch in ("qwen2", "gemma3", "gpt2"):
        assert engine_unsupported(load(str(fp_dirs[arch])).model) is None
