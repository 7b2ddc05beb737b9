"""Distillation loss: KL(teacher || student) on the teacher's top-k tokens plus one bucket for the rest.

Full-vocabulary teacher logits do not fit on disk for a real calibration set (SmolLM2: 49k vocab x 65k tokens
x 4 bytes = 13 GB), so the teacher is stored as its k most likely tokens with their full-softmax log-probs.
The KL is then computed exactly over the coarsened distribution {top-1, ..., top-k, everything else}: a true
divergence (zero iff the student matches the teacher on those k+1 events), which tends to the full KL as k grows.
"""

from __future__ import annotations

import torch


def topk_kl(
    student_logits: torch.Tensor, teacher_ids: torch.Tensor, teacher_logprobs: torch.Tensor
) -> torch.Tensor:
    """Mean KL per token.

    student_logits: [..., V]; teacher_ids: [..., k] (int); teacher_logprobs: [..., k] (log-softmax over the full
    vocabulary, so they sum to at most 1 in probability).
    """
    s_logp_all = torch.log_softmax(student_logits.float(), dim=-1)
    s_logp = s_logp_all.gather(-1, teacher_ids.long())
    t_logp = teacher_logprobs.float()
    t_p = t_logp.exp()
    kl_top = (t_p * (t_logp - s_logp)).sum(-1)
    # The "rest" bucket: mass outside the teacher's top-k, for teacher and student.
    t_rest = (1.0 - t_p.sum(-1)).clamp_min(1e-12)
    s_rest = (1.0 - s_logp.exp().sum(-1)).clamp_min(1e-12)
    kl_rest = t_rest * (t_rest.log() - s_rest.log())
    return (kl_top + kl_rest).mean()
