"""REINFORCE for a canvas policy on a bank, and the reference points a policy is judged against.

Reward of picking canvas c for sketch s (method.md, "RL canvas selector"):
    R = lambda_F * R_comp + (1 - lambda_F) * R_acc
    R_acc = 1 / rank(true photo | s at c) - lambda_tri * L_triplet(s at c)
    R_comp = -(GFLOPs(c) - min GFLOPs) / (max GFLOPs - min GFLOPs)
The student is frozen, so the table R[s, c] is read from the bank; training never runs the student. The
gradient is -log pi(c|s) * (R - b) with b a leave-one-out batch mean or a moving average, plus an optional
entropy bonus. Model selection uses the greedy policy's mean reward on the validation bank.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..eval.metrics import metrics_from_ranks
from .bank import Bank
from .config import SelectConfig
from .cascade import CascadePolicy
from .policy import CanvasPolicy, RasterPolicy, Selector


@dataclass(frozen=True)
class Inputs:
    """A bank as one policy reads it: the whole batch, and the policy's GFLOPs for each sketch."""

    batch: tuple[torch.Tensor, ...]
    gflops: torch.Tensor

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t[idx] for t in self.batch)


def policy_inputs(policy: CanvasPolicy, bank: Bank) -> Inputs:
    if tuple(bank.canvases) != tuple(policy.config.canvases):
        raise ValueError(f"the bank has canvases {bank.canvases}, the policy chooses among {policy.config.canvases}")
    if isinstance(policy, RasterPolicy):
        if bank.rasters.shape[-1] != policy.config.raster_canvas:
            raise ValueError(f"the bank holds {bank.rasters.shape[-1]} px canvases, the policy reads "
                             f"{policy.config.raster_canvas} px")
        feats = [policy.ink(r.numpy()) for r in bank.rasters]
    else:
        feats = [policy.features(s) for s in bank.stroke_sketches()]
    return Inputs(policy.collate(feats), torch.tensor([policy.flops(f) / 1e9 for f in feats], dtype=torch.float64))


def rewards(bank: Bank, lambda_flops: float, lambda_triplet: float = 0.0) -> torch.Tensor:
    """The N x K reward table R[s, c]."""
    g = bank.student_gflops.double()
    comp = -(g - g.min()) / (g.max() - g.min())
    acc = 1.0 / bank.ranks.double() - lambda_triplet * bank.triplet.double()
    return lambda_flops * comp[None] + (1.0 - lambda_flops) * acc


@torch.inference_mode()
def greedy_actions(policy: CanvasPolicy, inputs: Inputs) -> torch.Tensor:
    policy.eval()
    return policy(*inputs.batch).argmax(1)


@dataclass(frozen=True)
class Decisions:
    """What a selector did on a bank, per sketch: the canvas whose retrieval counts (an index into the bank's
    canvases), the student's GFLOPs at every canvas it computed, and the selector's own GFLOPs."""

    final: torch.Tensor
    student_gflops: torch.Tensor
    selector_gflops: torch.Tensor


def at_canvas(bank: Bank, actions: torch.Tensor, selector_gflops: torch.Tensor | float = 0.0) -> Decisions:
    """One canvas per sketch, computed once (a policy's choice, or a fixed canvas)."""
    return Decisions(actions, bank.student_gflops.double()[actions],
                     torch.as_tensor(selector_gflops, dtype=torch.float64).expand(len(actions)))


def decide(selector: Selector, bank: Bank) -> Decisions:
    """A selector's greedy decisions on every sketch of ``bank``; a cascade pays for every canvas up to its stop
    and for each head it ran."""
    if isinstance(selector, CascadePolicy):
        stop = selector.stops(bank.top_scores)
        heads = (stop + 1).clamp_max(len(bank.canvases) - 1)
        return Decisions(stop, bank.student_gflops.double().cumsum(0)[stop],
                         heads.double() * selector.stage_flops() / 1e9)
    inputs = policy_inputs(selector, bank)
    return at_canvas(bank, greedy_actions(selector, inputs), inputs.gflops)


def outcome(bank: Bank, decisions: Decisions) -> dict:
    """acc@K and mean GFLOPs per sketch (the student at every canvas computed + the selector) of a selector's
    decisions."""
    ranks = bank.ranks.gather(1, decisions.final[:, None])[:, 0]
    out = metrics_from_ranks(ranks.numpy())
    out["student_gflops"] = float(decisions.student_gflops.mean())
    out["selector_gflops"] = float(decisions.selector_gflops.mean())
    out["gflops"] = out["student_gflops"] + out["selector_gflops"]
    out["canvas_share"] = canvas_share(bank, decisions.final)
    return out


def canvas_share(bank: Bank, actions: torch.Tensor) -> dict[int, float]:
    counts = torch.bincount(actions, minlength=len(bank.canvases)).double() / len(actions)
    return {c: float(p) for c, p in zip(bank.canvases, counts)}


def fixed(bank: Bank, canvas: int) -> dict:
    """Every sketch at one canvas, no selector (SketchyNetV1 at that canvas)."""
    return outcome(bank, at_canvas(bank, torch.full((len(bank),), bank.canvases.index(canvas))))


def oracle_actions(bank: Bank) -> torch.Tensor:
    """Per sketch, the cheapest canvas whose rank of the true photo is as good as at the largest canvas."""
    good = bank.ranks <= bank.ranks[:, -1:]
    return good.long().argmax(1)  # first True; the last column is always True


def oracle_acc1_at(bank: Bank, gflops: float) -> float:
    """The best acc@1 any per-sketch choice reaches at a mean student cost of at most ``gflops``.

    Exact: every retrieved sketch counts the same, so the sketches whose cheapest rank-1 canvas costs least over
    the smallest canvas are taken first until the budget is spent.
    """
    g = bank.student_gflops.double()
    extra = torch.where(bank.ranks == 1, g[None], torch.inf).amin(1) - g[0]
    extra = extra[extra.isfinite()].sort().values
    budget = (gflops - float(g[0])) * len(bank) + 1e-9
    return 100.0 * int((extra.cumsum(0) <= budget).sum()) / len(bank)


def mixture(bank: Bank, share: dict[int, float]) -> dict:
    """Expected outcome of a random policy that picks canvas c with probability share[c], whatever the sketch."""
    points = [fixed(bank, c) for c in bank.canvases]
    p = [share.get(c, 0.0) for c in bank.canvases]
    out = {k: sum(pk * m[k] for pk, m in zip(p, points)) for k in ("acc1", "acc5", "acc10", "mean_rank", "gflops")}
    out.update(student_gflops=out["gflops"], selector_gflops=0.0, queries=len(bank),
               canvas_share=dict(zip(bank.canvases, p)))
    return out


def random_at(bank: Bank, gflops: float) -> dict:
    """The best random policy (blind to the sketch) whose mean student cost is ``gflops``: the best mixture of two
    fixed canvases that costs that much (the upper hull of the fixed points), or the best single canvas that costs
    no more when ``gflops`` is outside their range."""
    g = bank.student_gflops.double().tolist()
    best = max((mixture(bank, {c: 1.0}) for c, gc in zip(bank.canvases, g) if gc <= gflops + 1e-12),
               key=lambda m: m["acc1"], default=mixture(bank, {bank.canvases[0]: 1.0}))
    for i, j in ((i, j) for i in range(len(g)) for j in range(i + 1, len(g))):
        if g[i] <= gflops <= g[j] and g[j] > g[i]:
            w = (gflops - g[i]) / (g[j] - g[i])
            mix = mixture(bank, {bank.canvases[i]: 1 - w, bank.canvases[j]: w})
            if mix["acc1"] > best["acc1"]:
                best = mix
    return best


def train_policy(policy: CanvasPolicy, train: Bank, val: Bank, cfg: SelectConfig,
                 log: Callable[[dict], None] | None = None) -> dict:
    """REINFORCE on ``train``; keeps (and leaves loaded) the weights with the best greedy reward on ``val``.

    Returns the best epoch's record; ``log`` is called with every epoch's record.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    x_train, x_val = policy_inputs(policy, train), policy_inputs(policy, val)
    r_train = rewards(train, cfg.lambda_flops, cfg.lambda_triplet).float()
    r_val = rewards(val, cfg.lambda_flops, cfg.lambda_triplet)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema: float | None = None
    best, best_state = None, None
    for epoch in range(cfg.epochs):
        policy.train()
        totals = {"reward": 0.0, "entropy": 0.0}
        order = torch.randperm(len(train), generator=gen)
        for idx in order.split(cfg.batch_size):
            logp = torch.log_softmax(policy(*x_train.take(idx)), dim=1)
            probs = logp.exp()
            action = torch.multinomial(probs.detach(), 1, generator=gen)[:, 0]
            r = r_train[idx, action]
            if cfg.baseline == "batch":  # leave-one-out mean: unbiased, and no parameters
                base = (r.sum() - r) / max(1, len(r) - 1)
            else:  # moving average of the earlier batches' rewards (the first batch is its own baseline)
                mean = float(r.mean())
                base = torch.full_like(r, mean if ema is None else ema)
                ema = mean if ema is None else cfg.ema_decay * ema + (1 - cfg.ema_decay) * mean
            entropy = -(probs * logp).sum(1)
            loss = -(logp.gather(1, action[:, None])[:, 0] * (r - base)).mean() - cfg.entropy * entropy.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            totals["reward"] += float(r.sum()) / len(train)
            totals["entropy"] += float(entropy.detach().sum()) / len(train)
        actions = greedy_actions(policy, x_val)
        val_out = outcome(val, at_canvas(val, actions, x_val.gflops))
        record = {"epoch": epoch, "train_reward": totals["reward"], "train_entropy": totals["entropy"],
                  "val_reward": float(r_val[torch.arange(len(val)), actions].mean()),
                  **{f"val_{k}": val_out[k] for k in ("acc1", "acc5", "acc10", "gflops")},
                  "val_canvas_share": val_out["canvas_share"]}
        if log is not None:
            log(record)
        if best is None or record["val_reward"] > best["val_reward"]:
            best, best_state = record, {k: v.clone() for k, v in policy.state_dict().items()}
    policy.load_state_dict(best_state)
    return best


def references(bank: Bank, student_gflops: float | None = None) -> dict:
    """Every fixed canvas and the oracle on ``bank``: the points any selector is measured against; given a mean
    student cost, also the best random policy at that cost (``random``)."""
    ref = {"fixed": {c: fixed(bank, c) for c in bank.canvases},
           "oracle": outcome(bank, at_canvas(bank, oracle_actions(bank)))}
    if student_gflops is not None:
        ref["random"] = random_at(bank, student_gflops)
    return ref


def headroom(bank: Bank, learned: dict, ref: dict | None = None) -> dict:
    """A selector's result (acc@1, GFLOPs in all and the student's share) against the reference points at its cost.

    At its mean student cost: the best random policy (no look at the sketch) is the floor, the best per-sketch
    choice (``oracle_acc1_at``) the ceiling, and ``captured`` is the selector's share of the gap in acc@1;
    ``best_fixed`` is the most accurate fixed canvas that costs no more than the selector in all. ``learned`` may be
    a mean over policy seeds, so that every column of a row describes the same thing. ``ref``: the bank's
    ``references`` at the selector's student cost, where the caller has them already.
    """
    ref = ref or references(bank, learned["student_gflops"])
    points, oracle, random = ref["fixed"], ref["oracle"], ref["random"]
    ceiling = oracle_acc1_at(bank, learned["student_gflops"])
    gap = ceiling - random["acc1"]
    cheaper = [c for c in bank.canvases if points[c]["gflops"] <= learned["gflops"] + 1e-12]
    best_fixed = max(cheaper, key=lambda c: points[c]["acc1"]) if cheaper else None
    largest = points[bank.canvases[-1]]["acc1"]
    return {"random_acc1": random["acc1"], "oracle_acc1_at_same_cost": ceiling,
            "captured": (learned["acc1"] - random["acc1"]) / gap if gap > 0 else None,
            "best_fixed_canvas": best_fixed,
            "vs_best_fixed": learned["acc1"] - points[best_fixed]["acc1"] if best_fixed else None,
            "acc1_vs_largest": learned["acc1"] - largest, "oracle_acc1_vs_largest": oracle["acc1"] - largest}


def report(selector: Selector, bank: Bank) -> dict:
    """The selector on ``bank`` beside every fixed canvas, the oracle, the best random policy at its cost, and its
    ``headroom``."""
    learned = outcome(bank, decide(selector, bank))
    ref = references(bank, learned["student_gflops"])
    return {"policy": learned, "fixed": ref["fixed"], "oracle": ref["oracle"], "random": ref["random"],
            "selector_params_m": selector.params / 1e6, "headroom": headroom(bank, learned, ref)}
