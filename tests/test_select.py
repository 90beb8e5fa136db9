"""SketchyNetV2's canvas selector: policy shapes and costs, REINFORCE on a toy bank with a known best canvas, the
vector policy on a real ChairV2 stroke sketch, bank round-trips, the oracle, and `sketchdown select` end to end."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import sketchdown

from sketchdown import cli
from sketchdown.data import io
from sketchdown.data.datasets import RetrievalSet, load_set
from sketchdown.data.render import prepare, render_strokes
from sketchdown.data.sketch import Sketch
from sketchdown.eval.flops import count_flops
from sketchdown.models.embed import create_model
from sketchdown.retrieval.encoder import as_sketch
from sketchdown.select.bank import Bank, build_bank, cached_bank
from sketchdown.select.cascade import CascadeConfig, CascadePolicy, fit_cascade
from sketchdown.select.probe import Probe
from sketchdown.select.policy import PolicyConfig, RasterPolicy, VectorPolicy, load_policy, save_policy, stroke_sequence
from sketchdown.select.reinforce import (SelectConfig, at_canvas, decide, fixed, mixture, oracle_acc1_at,
                                         oracle_actions, outcome, policy_inputs, random_at, rewards, train_policy)

CANVASES = (32, 64, 128, 256)
GFLOPS = torch.tensor([0.012, 0.049, 0.196, 0.782])
KEY = "/test/9910-02-carbon_1"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def chair(chair_pickle) -> Sketch:
    return io.read_sketchx_pickle(chair_pickle)[KEY]


def toy_bank(ranks: torch.Tensor, seed: int = 0) -> Bank:
    """A bank with the given rank table, random rasters and embeddings (the policy input carries no signal)."""
    n, k = ranks.shape
    g = torch.Generator().manual_seed(seed)
    rasters = torch.randint(0, 256, (n, 32, 32), generator=g, dtype=torch.uint8)
    rasters[:, 0, 0] = 0  # never blank
    return Bank(name="toy", key="toy", canvases=CANVASES[:k], targets=torch.zeros(n, dtype=torch.long),
                ranks=ranks.long(), triplet=torch.zeros(n, k), top_scores=torch.zeros(n, k, 10), gallery=20,
                student_gflops=GFLOPS[:k], student_params_m=2.22, rasters=rasters)


def test_banks_stack_and_select_every_per_sketch_row():
    """Cross-fitting stacks fold banks and out-of-fold choosing selects sketches: every per-sketch table (and the
    strokes) moves together, and a stack with a bank without strokes has none."""
    a, b = toy_bank(torch.tensor([[1, 2], [3, 4]]), seed=0), toy_bank(torch.tensor([[5, 6], [7, 8], [9, 1]]), seed=1)
    a.points, a.frames = [np.full((2, 3), i, dtype=np.float32) for i in range(2)], torch.tensor([[1., 1.], [2., 2.]])
    b.points, b.frames = [np.full((3, 3), 10 + i, dtype=np.float32) for i in range(3)], torch.rand(3, 2)
    both = Bank.concat([a, b], "both")
    assert len(both) == 5 and both.ranks[:, 0].tolist() == [1, 3, 5, 7, 9] and both.key not in (a.key, b.key)
    assert torch.equal(both.rasters, torch.cat([a.rasters, b.rasters])) and both.frames.shape == (5, 2)
    picked = both.subset(torch.tensor([False, True, False, True, True]), "picked")
    assert picked.ranks[:, 1].tolist() == [4, 8, 1] and torch.equal(picked.rasters, both.rasters[[1, 3, 4]])
    assert [p[0, 0] for p in picked.points] == [1, 11, 12] and torch.equal(picked.frames, both.frames[[1, 3, 4]])
    assert picked.key != both.key and picked.student_gflops is both.student_gflops
    b.points = b.frames = None
    mixed = Bank.concat([a, b], "mixed")
    assert mixed.points is None and mixed.frames is None
    assert len(mixed.subset(torch.ones(5, dtype=torch.bool), "all")) == 5


def test_policies_give_one_logit_per_canvas_and_count_their_cost(chair):
    raster = RasterPolicy(PolicyConfig(kind="raster"))
    image = Sketch(raster=render_strokes(chair, 256))
    batch = raster.collate([raster.features(image), raster.features(chair)])  # image and strokes alike
    assert batch[0].shape == (2, 1, 32, 32) and raster(*batch).shape == (2, 4)
    assert raster.choose(image) in CANVASES
    assert raster.flops(batch[0][0]) == count_flops(raster, 32, channels=1) > 0
    assert raster.params < 10_000  # a tiny fraction of the student's 2.2M

    vector = VectorPolicy(PolicyConfig(kind="vector"))
    feats = [torch.rand(n, 3) for n in (5, 17, 9)]
    seq, lengths = vector.collate(feats)
    assert seq.shape == (3, 17, 3) and lengths.tolist() == [5, 17, 9]
    assert vector(seq, lengths).shape == (3, 4)
    h = vector.config.hidden
    for f in (*feats, torch.rand(1, 3), torch.rand(240, 3)):  # any length from the two counted once
        n = len(f)
        assert vector.flops(f) == 2 * n * 3 * (3 * h + h * h) + 2 * h * 4 == vector._counted(n)  # GRU + head
    assert 0.04e6 < vector.params < 0.06e6  # the paper's ~0.05M


def test_a_padded_sequence_scores_like_the_sequence_alone():
    vector = VectorPolicy(PolicyConfig(kind="vector")).eval()
    short, long = torch.rand(4, 3), torch.rand(11, 3)
    together = vector(*vector.collate([short, long]))
    assert torch.allclose(together[0], vector(*vector.collate([short]))[0], atol=1e-5)


def test_rdp_simplifies_a_real_chairv2_sketch_that_still_draws_the_same(chair):
    seq = stroke_sequence(chair, epsilon=0.01, max_points=1000)
    assert len(seq) < chair.num_points
    assert int(seq[:, 2].sum()) == len(chair.strokes)  # one pen lift per stroke
    assert np.abs(seq[:, :2]).max() == pytest.approx(0.5)  # centred, longer side spans [-0.5, 0.5]
    fitted = chair.fit(1.0, margin=0.0)
    ends = np.array([p for s in fitted.strokes for p in (s[0], s[-1])]) - 0.5
    kept = seq[:, :2]
    assert all(np.abs(kept - e).sum(1).min() < 1e-5 for e in ends)  # RDP keeps every stroke's end points
    simple = Sketch.from_points(np.concatenate([kept + 0.5, seq[:, 2:]], axis=1), 1.0, 1.0)
    ink_a, ink_b = render_strokes(fitted, 64) < 128, render_strokes(simple, 64) < 128
    assert (ink_a & ink_b).sum() / (ink_a | ink_b).sum() > 0.6

    capped = stroke_sequence(chair, epsilon=0.0, max_points=40)
    assert len(capped) <= 40 and capped[-1, 2] == 1  # the cap keeps the final pen lift
    policy = VectorPolicy(PolicyConfig(kind="vector"))
    assert policy.features(chair).shape[1] == 3 and policy.choose(chair) in CANVASES
    image = Sketch(raster=render_strokes(chair, 256))  # an image is traced into strokes for the GRU
    assert policy.features(image).shape[1] == 3 and policy.choose(image) in CANVASES


@pytest.mark.parametrize("lambda_flops, best, baseline", [(0.0, 1, "batch"), (1.0, 0, "batch"), (0.0, 1, "ema")])
def test_reinforce_moves_probability_to_the_rewarded_canvas(lambda_flops, best, baseline):
    ranks = torch.full((48, 4), 20)
    ranks[:, 1] = 1  # canvas 64 always retrieves; with lambda_F = 1 only cost counts and 32 wins
    bank = toy_bank(ranks)
    cfg = SelectConfig(lambda_flops=lambda_flops, baseline=baseline, epochs=6, batch_size=16, lr=1e-2, entropy=0.0)
    torch.manual_seed(0)
    policy = RasterPolicy(cfg.policy_config())
    x = policy_inputs(policy, bank)
    before = torch.softmax(policy(*x.batch), 1)[:, best].mean().item()
    train_policy(policy, bank, toy_bank(ranks, seed=1), cfg)
    after = torch.softmax(policy(*x.batch), 1)[:, best].mean().item()
    assert after > before + 0.2
    assert outcome(bank, at_canvas(bank, policy(*x.batch).argmax(1)))["canvas_share"][CANVASES[best]] > 0.9


def test_reinforce_learns_a_choice_that_depends_on_the_sketch():
    ranks = torch.full((64, 4), 20)
    small = torch.arange(64) % 2 == 0
    ranks[small, 0], ranks[~small, 3] = 1, 1  # small drawings retrieve at 32, large ones only at 256

    def bank(seed: int) -> Bank:
        b = toy_bank(ranks, seed)
        b.rasters[:] = 255
        b.rasters[small, 12:20, 12:20] = 0
        b.rasters[~small, 2:30, 2:30] = 0
        return b

    cfg = SelectConfig(lambda_flops=0.0, epochs=30, batch_size=16, lr=1e-2)
    torch.manual_seed(0)
    policy = RasterPolicy(cfg.policy_config())
    train_policy(policy, bank(0), bank(1), cfg)
    actions = policy(*policy_inputs(policy, bank(2)).batch).argmax(1)
    assert (actions[small] == 0).all() and (actions[~small] == 3).all()


def test_rewards_trade_reciprocal_rank_against_normalised_cost():
    bank = toy_bank(torch.tensor([[1, 2, 4, 1]]))
    assert rewards(bank, 0.0)[0].tolist() == pytest.approx([1.0, 0.5, 0.25, 1.0])
    assert rewards(bank, 1.0)[0].tolist() == pytest.approx([0.0, -0.037 / 0.77, -0.184 / 0.77, -1.0])
    assert rewards(bank, 0.5)[0, 0].item() == pytest.approx(0.5)


def test_oracle_takes_the_cheapest_canvas_as_good_as_the_largest():
    ranks = torch.tensor([[1, 1, 1, 1], [3, 2, 1, 1], [5, 5, 5, 5], [2, 9, 2, 3], [4, 4, 4, 2]])
    bank = toy_bank(ranks)
    assert oracle_actions(bank).tolist() == [0, 2, 0, 0, 3]
    oracle = outcome(bank, at_canvas(bank, oracle_actions(bank)))
    assert oracle["acc1"] == pytest.approx(40.0) and fixed(bank, 256)["acc1"] == pytest.approx(40.0)
    assert oracle["gflops"] == pytest.approx(float((3 * GFLOPS[0] + GFLOPS[2] + GFLOPS[3]) / 5))
    assert oracle_acc1_at(bank, float(GFLOPS[0])) == pytest.approx(20.0)  # sketch 0 is right at 32 already
    assert oracle_acc1_at(bank, float(GFLOPS[0] + (GFLOPS[2] - GFLOPS[0]) / 5)) == pytest.approx(40.0)  # + sketch 1
    assert oracle_acc1_at(bank, 10.0) == pytest.approx(40.0)  # the other three are never first
    half = mixture(bank, {32: 0.5, 256: 0.5})
    assert half["acc1"] == pytest.approx((fixed(bank, 32)["acc1"] + fixed(bank, 256)["acc1"]) / 2)
    assert half["gflops"] == pytest.approx(float(GFLOPS[0] + GFLOPS[3]) / 2)
    # the best blind policy at a cost between 64 and 128 mixes 32 (acc@1 20) and 128 (40), the upper hull
    cost = float(GFLOPS[1] + GFLOPS[2]) / 2
    w = (cost - float(GFLOPS[0])) / float(GFLOPS[2] - GFLOPS[0])
    assert random_at(bank, cost)["acc1"] == pytest.approx(20 + 20 * w) and random_at(bank, cost)["gflops"] == pytest.approx(cost)
    assert random_at(bank, 0.001)["canvas_share"] == {32: 1.0, 64: 0.0, 128: 0.0, 256: 0.0}


def test_banks_round_trip_and_are_rebuilt_for_another_student(tmp_path, data, chair_pickle):
    student = create_model("mobilenet_v2", weights="none").eval()
    rset = load_set("chairs-v1", "test", data)
    rset = RetrievalSet(rset.name, rset.sketches[:4], rset.targets[:4], rset.photos[:4])
    bank = cached_bank(tmp_path / "b.pt", student, rset, (32, 64), photo_size=64, progress=False)
    assert bank.top_scores.shape == (4, 2, 10) and bank.rasters.shape == (4, 32, 32) and bank.gallery == 4
    assert (bank.top_scores.diff(dim=2) <= 0).all()  # best first (a 4-photo gallery repeats its last score)
    assert len(bank.points) == 4 and bank.frames.tolist() == [[256.0, 256.0]] * 4  # the images, traced
    assert ((bank.ranks >= 1) & (bank.ranks <= 4)).all()
    for k in range(2):  # the true photo's rank agrees with where its score falls among the top similarities
        first = bank.ranks[:, k] == 1
        assert torch.equal(first, first & (bank.top_scores[:, k, 0] > bank.top_scores[:, k, 1] - 1e-6))
    again = Bank.load(tmp_path / "b.pt")
    for f in dataclasses.fields(Bank):
        a, b = getattr(bank, f.name), getattr(again, f.name)
        if f.name == "points":
            assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
        else:
            assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, f.name
    assert cached_bank(tmp_path / "b.pt", student, rset, (32, 64), 64, progress=False).key == bank.key
    other = create_model("mobilenet_v2", weights="none").eval()
    assert cached_bank(tmp_path / "b.pt", other, rset, (32, 64), 64, progress=False).key != bank.key

    strokes = io.read_sketchx_pickle(chair_pickle)
    vset = RetrievalSet("v2", [strokes[k] for k in list(strokes)[:3]], [0, 1, 2], rset.photos[:3])
    vbank = build_bank(student, vset, (32, 64), photo_size=64, progress=False)
    vbank.save(tmp_path / "v.pt")
    vback = Bank.load(tmp_path / "v.pt")
    for s, orig in zip(vback.stroke_sketches(), vset.sketches):
        assert np.array_equal(s.to_points(), orig.to_points()) and (s.width, s.height) == (orig.width, orig.height)
    assert len(bank.stroke_sketches()) == 4


def test_a_raster_policy_trains_on_the_canvas_it_reads_at_query_time(data):
    """For a student of traced sketches the bank's 32 px canvases are the sketch's strokes drawn at 32, as a query
    draws them; training must feed them as they are, not read them again as images (which traced the 32 px
    drawing anew: the policy learnt from other pictures than it is shown)."""
    student = create_model("mobilenet_v2", weights="none").eval()
    rset = load_set("chairs-v1", "test", data)
    rset = RetrievalSet(rset.name, rset.sketches[:3], rset.targets[:3], rset.photos[:3])
    bank = build_bank(student, rset, (32, 64), photo_size=64, raster_method="trace", progress=False)
    policy = RasterPolicy(PolicyConfig(kind="raster", canvases=(32, 64), raster_method="trace"))
    trained_on = policy_inputs(policy, bank).batch[0]
    at_query = torch.stack([policy.features(prepare(as_sketch(p), "trace")) for p in rset.sketches])  # as query()
    assert torch.equal(trained_on, at_query)
    with pytest.raises(ValueError, match="px canvases"):
        policy_inputs(RasterPolicy(PolicyConfig(kind="raster", canvases=(32, 64), raster_canvas=16)), bank)


def test_select_command_trains_saves_and_serves_a_policy(tmp_path, data, capsys):
    out = tmp_path / "run"
    code = cli.main(["select", "--student", "mobilenet_v2", "--set", "chairs-v1", "--data", str(data),
                     "--limit", "4", "--photo-size", "64", "--epochs", "2", "--lambda-flops", "0.3", "--out", str(out)])
    assert code == 0 and "test chairs-v1:test: acc@1" in capsys.readouterr().out
    assert {"config.yaml", "command.txt", "metrics.jsonl", "best.pt", "test.json"} <= {p.name for p in out.iterdir()}
    test = json.loads((out / "test.json").read_text())
    assert set(test["fixed"]) == {"32", "64", "128", "256"} and test["policy"]["selector_gflops"] > 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    policy = load_policy(out / "best.pt")
    assert isinstance(policy, RasterPolicy) and policy.config.canvases == CANVASES
    save_policy(tmp_path / "copy.pt", policy)
    assert torch.equal(load_policy(tmp_path / "copy.pt").head.weight, policy.head.weight)

    encoder = sketchdown.load("mobilenet_v2", selector=out)  # SketchyNetV2: the student + the run folder's policy
    for sketch in (io.read_sketch(load_set("chairs-v1", "test", data).sketches[0]),
                   io.read_sketchx_pickle(data / "chair-v2-strokes" / "ChairV2_Coordinate")[KEY]):
        query = encoder.query(sketch)
        assert query.canvas in CANVASES and query.canvases == (query.canvas,) and query.vector.shape == (1280,)
        assert query.gflops > encoder.gflops(query.canvas)  # the student at the canvas plus the policy
    assert cli.main(["select", "--student", "mobilenet_v2", "--set", "chairs-v1", "--out", str(out)]) == 2


def hand_cascade(threshold: float = 0.5) -> CascadePolicy:
    """Stops where the top-1 margin over the 2nd photo is at least 0.1: its heads read only that feature."""
    cascade = CascadePolicy(CascadeConfig(threshold=threshold))
    with torch.no_grad():
        cascade.weight.zero_()
        cascade.weight[:, 1] = 100.0  # feature 1 = s1 - s2, unstandardised (mean 0, std 1)
        cascade.bias.fill_(-10.0)  # sigmoid(100 * margin - 10) >= 0.5  <=>  margin >= 0.1
    return cascade


def test_the_cascade_pays_for_every_canvas_it_looked_at():
    top = torch.zeros(3, 4, 10)
    top[0, 0, 0] = 0.5  # sketch 0: a clear winner at 32
    top[1, 2, 0] = 0.5  # sketch 1: unsure at 32 and 64, sure at 128
    ranks = torch.tensor([[1, 1, 1, 1], [7, 3, 1, 1], [9, 5, 4, 2]])  # sketch 2: never sure, goes to 256
    bank = toy_bank(ranks)
    bank.top_scores = top
    cascade = hand_cascade()
    assert cascade.stops(top).tolist() == [0, 2, 3]
    d = decide(cascade, bank)
    g = GFLOPS.double().tolist()
    assert d.student_gflops.tolist() == pytest.approx([g[0], g[0] + g[1] + g[2], sum(g)])  # cumulative
    assert d.selector_gflops.tolist() == pytest.approx([n * cascade.stage_flops() / 1e9 for n in (1, 3, 3)])
    out = outcome(bank, d)
    assert out["acc1"] == pytest.approx(200 / 3) and out["canvas_share"] == {32: 1 / 3, 64: 0.0, 128: 1 / 3, 256: 1 / 3}
    assert out["gflops"] == pytest.approx(float(d.student_gflops.mean() + d.selector_gflops.mean()))

    looked = []

    def probe(canvas: int) -> Probe:  # the same scores as sketch 1 of the bank, one canvas at a time
        looked.append(canvas)
        k = CANVASES.index(canvas)
        return Probe(canvas, np.zeros(4, np.float32), top[1, k].numpy(), np.arange(10))

    chosen, canvases, flops = cascade.select(Sketch(raster=np.eye(8, dtype=np.uint8) * 255), probe)
    assert looked == [32, 64, 128] and canvases == (32, 64, 128) and chosen.canvas == 128
    assert flops == 3 * cascade.stage_flops()


def test_a_fitted_cascade_stops_early_only_where_the_margin_says_the_answer_is_in():
    gen = torch.Generator().manual_seed(0)
    n = 400
    margin = torch.rand(n, 4, generator=gen) * 0.2
    top = torch.stack([0.6 + margin, torch.full((n, 4), 0.6)] + [torch.full((n, 4), 0.5)] * 8, dim=2)
    ranks = torch.where(margin > 0.1, 1, 5)
    ranks[:, -1] = 1  # the largest canvas always retrieves
    cheap = fit_cascade(CascadeConfig(), top, ranks, GFLOPS, lambda_flops=0.3)
    stops = cheap.stops(top)
    assert (stops[margin[:, 0] > 0.12] == 0).float().mean() > 0.95  # confident at 32: stop there
    assert (stops[margin.max(1).values < 0.08] == 3).all()  # never confident: pay for all and take 256
    accurate = fit_cascade(CascadeConfig(), top, ranks, GFLOPS, lambda_flops=0.0)  # cost is free
    assert (accurate.stops(top) == 3).float().mean() >= (stops == 3).float().mean()


def test_cross_fitting_folds_leave_out_each_training_sketch_exactly_once(data):
    from sketchdown.train.configs import TrainConfig
    from sketchdown.train.triplet import build_sets, held_out_fold

    cfgs = [TrainConfig(train_sets=("chairs-v1",), data=str(data), folds=3, fold=i) for i in range(3)]
    trained = [{str(s) for s in build_sets(c)[0].sketches} for c in cfgs]
    held = [held_out_fold(c) for c in cfgs]
    everything = {str(s) for s in build_sets(TrainConfig(train_sets=("chairs-v1",), data=str(data)))[0].sketches}
    for t, h in zip(trained, held):
        scored = {str(s) for s in h.sketches}
        assert not scored & t  # no sketch is scored by a run that trained on it
        assert t | scored == everything
        assert len(h.photos) == 200 and all(h.photos[j].stem == s.stem for s, j in zip(h.sketches, h.targets))
    assert sum(len(h) for h in held) == len(everything) and set().union(*[{str(s) for s in h.sketches}
                                                                           for h in held]) == everything


def test_an_unseen_fold_gallery_holds_only_photos_its_run_never_trained_on(data):
    """``crossfit_gallery="unseen"``: the held-out sketches are ranked among their fold's photos and the
    validation's, none of which the fold run trained on; the sketches and their photos are those of "pool"."""
    from sketchdown.train.configs import TrainConfig
    from sketchdown.train.triplet import build_sets, held_out_fold

    for fold in range(3):
        cfg = TrainConfig(train_sets=("chairs-v1",), data=str(data), folds=3, fold=fold)
        train, val, _ = build_sets(cfg)
        pool, unseen = held_out_fold(cfg), held_out_fold(cfg, "unseen")
        gallery = {p.resolve() for p in unseen.photos}
        assert not gallery & {p.resolve() for p in train.photos}
        assert {p.resolve() for p in val.photos} <= gallery
        assert len(gallery) == len(unseen.photos) == len({pool.photos[t] for t in pool.targets}) + len(val.photos)
        assert [str(s) for s in unseen.sketches] == [str(s) for s in pool.sketches]
        assert [unseen.photos[t] for t in unseen.targets] == [pool.photos[t] for t in pool.targets]
    with pytest.raises(ValueError, match="gallery"):
        held_out_fold(cfg, "test")


def test_select_trains_a_cascade_on_a_cross_fitted_bank(tmp_path, data):
    runs = []
    for fold in range(2):
        runs.append(tmp_path / f"fold{fold}")
        assert cli.main(["train", "--train-sets", "chairs-v1", "--data", str(data), "--weights", "none",
                         "--photo-size", "64", "--canvases", "64", "--eval-canvas", "64", "--epochs", "1",
                         "--steps-per-epoch", "1", "--batch-size", "4", "--folds", "2", "--fold", str(fold),
                         "--precision", "fp32", "--out", str(runs[-1])]) == 0
    out = tmp_path / "cascade"
    assert cli.main(["select", "--student", str(runs[0]), "--crossfit", *map(str, runs), "--policy", "cascade",
                     "--set", "chairs-v1", "--data", str(data), "--limit", "6", "--photo-size", "64",
                     "--canvases", "32", "64", "--lambda-flops", "0.2", "--out", str(out)]) == 0
    test = json.loads((out / "test.json").read_text())
    assert test["train_bank"].endswith(":crossfit") and 0 <= test["policy"]["acc1"] <= 100
    assert {p.name for p in (out / "banks").iterdir()} == {"fold0of2.pt", "fold1of2.pt", "val.pt", "test.pt"}
    bank = Bank.concat([Bank.load(out / "banks" / f"fold{i}of2.pt") for i in range(2)], "x")
    assert len(bank) == 12  # 6 held-out sketches of each fold (--limit: among their own photos)
    cascade = load_policy(out / "best.pt")
    assert isinstance(cascade, CascadePolicy) and cascade.config.canvases == (32, 64)


def test_validation_rewards_come_from_photos_the_student_never_trained_on(data):
    from sketchdown.select.runner import split_sets
    from sketchdown.train.configs import TrainConfig
    from sketchdown.train.triplet import build_sets

    trained = {p.resolve() for p in build_sets(TrainConfig(train_sets=("chairs-v1",), data=str(data)))[0].photos}
    normal = split_sets(SelectConfig(set="chairs-v1", data=str(data)))
    halves = split_sets(SelectConfig(set="chairs-v1", data=str(data), val_rewards=True))
    own = {s.resolve() for s in normal["val"].sketches}
    fit, choose = ({s.resolve() for s in halves[k].sketches} for k in ("train", "val"))
    assert fit and choose and not fit & choose and fit | choose == own  # the validation sketches, halved
    unseen = split_sets(SelectConfig(set="chairs-v1", data=str(data), val_gallery="unseen"))["val"]
    assert {s.resolve() for s in unseen.sketches} == own and len(normal["val"].photos) == 200
    for rset in (halves["train"], halves["val"], unseen):
        assert len(rset.photos) == 30  # ranked among the validation photos, all of them
        assert not {p.resolve() for p in rset.photos} & trained  # never a photo the student saw
    with pytest.raises(ValueError, match="give one"):
        SelectConfig(set="chairs-v1", val_rewards=True, crossfit=("runs/x",))


def test_validation_halves_and_full_validation_keep_their_own_bank_files(tmp_path, data):
    from sketchdown.select.runner import banks_for

    student = create_model("mobilenet_v2", weights="none").eval()
    cfg = SelectConfig(set="chairs-v1", data=str(data), limit=2, canvases=(32, 64), photo_size=64)
    halves = banks_for(dataclasses.replace(cfg, val_rewards=True), student, tmp_path, progress=False)
    full = banks_for(cfg, student, tmp_path, progress=False)
    assert {p.name for p in tmp_path.iterdir()} == {"train-halves.pt", "val-halves.pt", "train.pt", "val.pt",
                                                    "test.pt"}
    assert halves["val"].name != full["val"].name
    assert Bank.load(tmp_path / "val-halves.pt").key == halves["val"].key  # not overwritten by the full one


def test_validation_photos_are_the_ones_the_student_held_out_with_its_own_fraction(tmp_path, data):
    from sketchdown.select.runner import split_sets
    from sketchdown.train.configs import TrainConfig
    from sketchdown.train.triplet import build_sets

    run = tmp_path / "student"
    assert cli.main(["train", "--train-sets", "chairs-v1", "--data", str(data), "--weights", "none",
                     "--photo-size", "64", "--canvases", "64", "--eval-canvas", "64", "--epochs", "1",
                     "--steps-per-epoch", "1", "--batch-size", "4", "--val-fraction", "0.3",
                     "--precision", "fp32", "--out", str(run)]) == 0
    held = build_sets(TrainConfig(train_sets=("chairs-v1",), data=str(data), val_fraction=0.3))[1]
    val = split_sets(SelectConfig(set="chairs-v1", data=str(data), student=str(run)))["val"]
    assert {s.resolve() for s in val.sketches} == {s.resolve() for s in held.sketches}  # 0.3, not the default 0.15


def test_a_fold_run_distilled_from_a_teacher_that_saw_the_held_out_fold_is_flagged(tmp_path, data):
    from sketchdown.select.runner import teacher_leak
    from sketchdown.train.configs import DistillConfig, TrainConfig

    teacher = tmp_path / "teacher-fold0"
    assert cli.main(["train", "--train-sets", "chairs-v1", "--data", str(data), "--weights", "none",
                     "--photo-size", "64", "--canvases", "64", "--eval-canvas", "64", "--epochs", "1",
                     "--steps-per-epoch", "1", "--batch-size", "4", "--folds", "2", "--fold", "0",
                     "--precision", "fp32", "--out", str(teacher)]) == 0
    fold = {"train_sets": ("chairs-v1",), "data": str(data), "folds": 2}
    assert teacher_leak(TrainConfig(**fold, fold=0)) is None  # no teacher: nothing seen through one
    assert teacher_leak(DistillConfig(**fold, fold=0, teacher=str(teacher))) is None  # a teacher of the same fold
    assert "trained on the held-out fold" in teacher_leak(DistillConfig(**fold, fold=1, teacher=str(teacher)))
    # a shipped teacher gives the config it was trained with (no folds): it saw every fold
    assert "trained on the held-out fold" in teacher_leak(DistillConfig(**fold, fold=0, teacher="direct-chairs"))
    assert "records no cross-fitting split" in teacher_leak(DistillConfig(**fold, fold=0, teacher="mobilenet_v2"))
