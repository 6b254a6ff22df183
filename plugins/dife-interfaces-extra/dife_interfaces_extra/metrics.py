"""The metric functions the extra cards name (plain floats; torch imported inside).

Registered through ``register_metrics`` so reports show their labels and
formulas; the evaluators compute the same quantities over cached features.
"""

from __future__ import annotations


def _t(x):
    import torch

    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x)


def pass_rate(scores, cut: float) -> float:
    """Share of pairs whose cosine is >= the filter's cut."""
    s = _t(scores).float()
    return float((s >= cut).float().mean()) if s.numel() else float("nan")


def win_rate(candidate_scores, true_scores) -> float:
    """Share of pairs whose candidate CLIPScore is strictly above the true caption's."""
    c, t = _t(candidate_scores).float(), _t(true_scores).float()
    return float((c > t).float().mean()) if c.numel() else float("nan")


def mean_difference(after, before) -> float:
    """Mean of ``after - before`` (ΔCLIPScore over the same pairs)."""
    a, b = _t(after).float(), _t(before).float()
    return float((a - b).mean()) if a.numel() else float("nan")


def mean(values) -> float:
    v = _t(values).float()
    return float(v.mean()) if v.numel() else float("nan")


def precision_at_k(target_counts, k: int) -> float:
    """P@K = mean over queries of (targets among the K nearest) / K."""
    return mean(_t(target_counts).float() / int(k))


def catalogue() -> dict:
    """name -> (label, formula, function, higher is better)."""
    from dife_core import metrics as M

    return {
        "delta_pass_rate": ("ΔPass", "ΔPass = pass rate(triggered pairs) − pass rate(reference condition)",
                            M.delta, True),
        "pass_rate": ("pass rate", "share of attacker pairs with cos(image, caption) >= the cut", pass_rate, True),
        "reference_pass_rate": ("reference pass rate", "pass rate of the same pairs in the reference condition",
                                pass_rate, True),
        "true_pair_pass_rate": ("true-pair pass rate", "share of the pool's true pairs that pass (clean utility)",
                                pass_rate, True),
        "target_pair_pass_rate": ("target true-pair pass rate", "share of the target class's true pairs that "
                                  "pass: about what an attacker pair that mimics a true target pair reaches",
                                  pass_rate, True),
        "threshold": ("cut", "the filter's cosine cut (given, or the score of the ceil(f·N)-th best true pair)",
                      mean, True),
        "win_rate": ("win rate", "share of (image, attacker caption) pairs with CLIPScore(attacker caption) > "
                                 "CLIPScore(true caption), triggered", win_rate, True),
        "clean_input_win_rate": ("clean-input win rate", "the win rate of the same pairs without the trigger",
                                 win_rate, True),
        "delta_clipscore": ("ΔCLIPScore", "mean over attacker pairs of CLIPScore(triggered) − CLIPScore(clean)",
                            mean_difference, True),
        "true_clipscore": ("true CLIPScore", "mean CLIPScore = w·max(cos, 0) of the pool's true pairs (clean)",
                           mean, True),
        "h@k": ("H@K", "H@K = mean_q 1[r*_q <= K] (K: the card's option k)", M.hits_at_k, True),
        "p@k": ("P@K", "P@K = mean_q (targets among the K nearest) / K", precision_at_k, True),
        "clean_h@k": ("clean H@K", "H@K of the clean query", M.hits_at_k, True),
        "clean_p@k": ("clean P@K", "P@K of the clean query", precision_at_k, True),
        "delta_h@k": ("ΔH@K", "ΔH@K = H@K(triggered) − H@K(reference)", M.delta, True),
        "delta_p@k": ("ΔP@K", "ΔP@K = P@K(triggered) − P@K(reference)", M.delta, True),
    }
