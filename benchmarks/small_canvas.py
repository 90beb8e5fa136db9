"""Where a 32 px sketch loses: the drawing's pixels, or a network that was built for 224 px inputs?

For trained students, acc@1 of the sketches drawn at 32 and run at 32 (the student's FLOPs at 32), drawn at 32 and
enlarged to 64 before the network (the network's FLOPs at 64: what "render at 32, run at 64" costs), and drawn at
64 (the same FLOPs). Enlarging 32 to 64 is what fewer early strides amount to for MobileNetV2 (its stem's stride 2
halves a 64 px input to the 32 x 32 a stride-1 stem would keep), so this measures that architecture change without
training one: if the enlarged 32 px drawing ranks like the 64 px drawing, the pixels are not what is missing.
Validation and test splits. Writes results/small-canvas.json.

    python benchmarks/small_canvas.py --students runs/chairs-v1/v1b-area-s0 runs/chairs-v1/v1b-maxink-s0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from sketchdown.data.datasets import PhotoDataset, SketchCanvasDataset, load_sketch
from sketchdown.eval.evaluate import encode
from sketchdown.eval.flops import query_gflops
from sketchdown.eval.metrics import retrieval_metrics
from sketchdown.files import write_json
from sketchdown.models.artifact import load_model
from sketchdown.models.embed import read_checkpoint
from sketchdown.train.configs import DistillConfig
from sketchdown.config import build
from sketchdown.train.triplet import build_sets


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--students", nargs="+", required=True, help="distillation run folders")
    p.add_argument("--out", type=Path, default=Path("results/small-canvas.json"))
    return p


class Enlarged(torch.utils.data.Dataset):
    """Sketches drawn at ``canvas`` and enlarged to ``side`` (``mode``: nearest or bilinear) before the network."""

    def __init__(self, sketches: list, canvas: int, side: int, mode: str, raster_method: str) -> None:
        self.inner, self.side, self.mode = SketchCanvasDataset(sketches, canvas, raster_method), side, mode

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = self.inner[i][None]
        return F.interpolate(x, size=(self.side, self.side), mode=self.mode,
                             **({"align_corners": False} if self.mode == "bilinear" else {}))[0]


@torch.inference_mode()
def main(args: argparse.Namespace) -> dict:
    rows = []
    for run in args.students:
        values = read_checkpoint(Path(run) / "best.pt")["config"]
        cfg = build(DistillConfig, {k: v for k, v in values.items() if k in DistillConfig.__dataclass_fields__}, run)
        model = load_model(run).eval()
        _, val, test = build_sets(cfg)
        for split, rset in (("val", val), ("test", test)):
            sketches = [load_sketch(s) for s in rset.sketches]
            photos = encode(model, PhotoDataset(rset.photos, cfg.photo_size), "photo", 64, progress=False)
            targets = torch.tensor(rset.targets)
            settings = {"32 at 32": SketchCanvasDataset(sketches, 32, cfg.raster_method),
                        "32 enlarged to 64 (nearest)": Enlarged(sketches, 32, 64, "nearest", cfg.raster_method),
                        "32 enlarged to 64 (bilinear)": Enlarged(sketches, 32, 64, "bilinear", cfg.raster_method),
                        "64 at 64": SketchCanvasDataset(sketches, 64, cfg.raster_method)}
            for name, ds in settings.items():
                emb = encode(model, ds, "sketch", 64, progress=False)
                m = retrieval_metrics(emb, photos, targets)
                side = 32 if name == "32 at 32" else 64
                rows.append({"student": run, "raster_method": cfg.raster_method, "split": split, "setting": name,
                             "gflops": query_gflops(model, side), "acc1": m["acc1"], "acc10": m["acc10"]})
                print(f"{run} {split:<4} {name:<30} acc@1 {m['acc1']:6.2f} acc@10 {m['acc10']:6.2f}", flush=True)
    result = {"rows": rows, "command": "python " + " ".join(sys.argv)}
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
