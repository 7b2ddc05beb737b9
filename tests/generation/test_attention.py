"""Live-window decode attention: the plan is the cheapest grouping, attention over the windows equals full-width
SDPA, the model's implementation is swapped only inside the block, and the engine's tokens do not change."""

from __future__ import annotations

import itertools

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from codequant.generation import attention as A
from codequant.generation.attention import LiveWindows, engine_attention, live_window_attention
from codequant.generation.engine import Request, SamplingParams, generate


def _mask(first: list[int], width: int) -> torch.Tensor:
    mask = torch.ones((len(first), width), dtype=torch.long)
    for r, f in enumerate(first):
        mask[r, :f] = 0
    return mask


def _cost(groups, first, width, group_cost):
    return sum(group_cost + (b - a) * (width - c) for a, b, c in groups)


def test_plan_groups_rows_by_their_earliest_live_column():
    plan = LiveWindows.plan(_mask([0, 2, 30, 31, 30], 40), group_cost=4)
    assert plan.groups == ((0, 2, 0), (2, 5, 30))
    assert LiveWindows.plan(_mask([0, 0, 0], 16)) is None  # nothing to skip
    assert (
        LiveWindows.plan(_mask([0, 1, 0], 16), group_cost=24) is None
    )  # skipping one column is not worth a call
    assert LiveWindows.plan(_mask([3, 5], 16), group_cost=100).groups == (
        (0, 2, 3),
    )  # one group, still narrower


def test_plan_is_optimal_against_every_partition():
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        rows, width = 6, 50
        first = torch.randint(0, 45, (rows,), generator=gen).tolist()
        plan = LiveWindows.plan(_mask(first, width), group_cost=10)
        got = _cost(plan.groups, first, width, 10) if plan else 10 + rows * width
        cuts = [c for k in range(rows) for c in itertools.combinations(range(1, rows), k)]
        bounds = [(0, *c, rows) for c in cuts]
        best = min(
            sum(10 + (b - a) * (width - min(first[a:b])) for a, b in itertools.pairwise(bs)) for bs in bounds
        )
        assert got == best
        if plan:
            assert [g[0] for g in plan.groups][0] == 0 and plan.groups[-1][1] == rows
            assert all(g[1] == h[0] for g, h in itertools.pairwise(plan.groups))


class _Module:
    num_key_value_groups = 3
    is_causal = True


def test_window_attention_equals_full_width_sdpa():
    gen = torch.Generator().manual_seed(1)
    rows, heads, kv, width, dim = 7, 6, 2, 40, 16
    q = torch.randn(rows, heads, 1, dim, generator=gen)
    k, v = (torch.randn(rows, kv, width, dim, generator=gen) for _ in range(2))
    first = [0, 3, 20, 25, 25, 33, 39]
    mask = _mask(first, width).bool()[:, None, None, :]
    mask[2, ..., 30] = False  # a rejected draft column inside a live window
    module = _Module()
    module.num_key_value_groups = heads // kv
    full, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=dim**-0.5)
    plan = LiveWindows.plan(_mask(first, width), group_cost=2)
    assert len(plan.groups) > 1
    ours, _ = engine_attention(module, q, k, v, mask, scaling=dim**-0.5, live_windows=plan)
    assert ours.shape == full.shape
    torch.testing.assert_close(ours, full, rtol=1e-5, atol=1e-6)
    wrong = LiveWindows(tuple((a, b, c + 1) for a, b, c in plan.groups))  # one live column dropped per group
    bad, _ = engine_attention(module, q, k, v, mask, scaling=dim**-0.5, live_windows=wrong)
    assert not torch.allclose(bad, full, rtol=1e-4, atol=1e-5)


def test_implementation_is_swapped_only_inside_the_block(tiny_llama):
    assert tiny_llama.config._attn_implementation == "sdpa"
    with live_window_attention(tiny_llama) as on:
        assert on and tiny_llama.config._attn_implementation == A.NAME
    assert tiny_llama.config._attn_implementation == "sdpa"
    tiny_llama.config._attn_implementation_internal = "eager"
    with live_window_attention(tiny_llama) as on:
        assert not on and tiny_llama.config._attn_implementation == "eager"


def test_engine_uses_the_windows_and_keeps_its_tokens(tiny_llama, tiny_tokenizer, monkeypatch):
    prompts = ["def add(a, b):\n    return", "import", "for i in range(3):\n    print(i)\n" * 6, "x ="]
    reqs = [Request(p, key=i) for i, p in enumerate(prompts * 3)]
    params = SamplingParams(max_new_tokens=20)
    plans = []
    real = LiveWindows.plan
    monkeypatch.setattr(
        LiveWindows, "plan", classmethod(lambda cls, mask, *a: plans.append(real(mask, *a)) or plans[-1])
    )
    fast = generate(tiny_llama, tiny_tokenizer, reqs, params, batch_size=4, progress=False)
    assert any(p is not None and (len(p.groups) > 1 or p.groups[0][2] > 0) for p in plans)
    import codequant.generation.engine as E

    monkeypatch.setattr(E, "live_window_attention", _off)  # full-width SDPA on every step
    plain = generate(tiny_llama, tiny_tokenizer, reqs, params, batch_size=4, progress=False)
    assert [c.token_ids for c in fast] == [c.token_ids for c in plain]


class _off:  # noqa: N801 - stands in for the context manager
    def __init__(self, model):
        pass

    def __enter__(self):
        return False

    def __exit__(self, *exc):
        return False
