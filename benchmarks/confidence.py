"""How well a search's confidence tells a sketch of the model's own domain from another one.

For each shipped retriever: index its dataset's test photos, search them with that dataset's test sketches (in
domain) and with the other QMUL-V1 set's test sketches (a chair drawn against shoes, and the reverse), and report
the median confidence of each, the share flagged out of domain (confidence below ``OUT_OF_DOMAIN``, a threshold
chosen on validation data, see docs/search.md) and the AUROC of the confidence between the two. Writes
results/confidence.{json,md}.

    python benchmarks/confidence.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import sketchdown
from sketchdown.data.datasets import load_set
from sketchdown.files import write_json, write_text
from sketchdown.pretrained import MODELS
from sketchdown.retrieval.index import OUT_OF_DOMAIN

OTHER = {"chairs-v1": "shoes-v1", "shoes-v1": "chairs-v1"}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=sorted(MODELS), help="shipped model names")
    p.add_argument("--data", type=Path, help="data root (default ../shared/data)")
    p.add_argument("--out", type=Path, default=Path("results/confidence.json"), help="also writes the .md beside it")
    return p


def auroc(own: np.ndarray, other: np.ndarray) -> float:
    """P(an own-domain sketch gets a higher confidence than another domain's), ties counted half."""
    return float((own[:, None] > other[None, :]).mean() + 0.5 * (own[:, None] == other[None, :]).mean())


def measure(name: str, data: Path | None) -> dict:
    retriever = sketchdown.load(name)
    dataset = retriever.info["dataset"]
    own_set, other_set = load_set(dataset, "test", data), load_set(OTHER[dataset], "test", data)
    index = sketchdown.Index.build(retriever, own_set.photos)
    own = np.array([index.search(s, 1).confidence for s in own_set.sketches])
    other = np.array([index.search(s, 1).confidence for s in other_set.sketches])
    return {"model": name, "dataset": dataset, "other": OTHER[dataset], "photos": len(own_set.photos),
            "own_sketches": len(own), "other_sketches": len(other),
            "own_median": float(np.median(own)), "other_median": float(np.median(other)),
            "own_flagged": float((own < OUT_OF_DOMAIN).mean()), "other_flagged": float((other < OUT_OF_DOMAIN).mean()),
            "auroc": auroc(own, other)}


def markdown(rows: list[dict]) -> str:
    lines = [f"Confidence of a search (threshold {OUT_OF_DOMAIN} for the out-of-domain flag), index = the model's "
             "test photos.", "",
             "| model | own sketches | other sketches | median confidence own / other | flagged own / other | AUROC |",
             "|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| `{r['model']}` | {r['dataset']} ({r['own_sketches']}) | {r['other']} ({r['other_sketches']}) "
                     f"| {r['own_median']:.2f} / {r['other_median']:.2f} | {100 * r['own_flagged']:.1f}% / "
                     f"{100 * r['other_flagged']:.1f}% | {r['auroc']:.3f} |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    rows = [measure(name, args.data) for name in args.models]
    write_json({"command": "python benchmarks/confidence.py", "threshold": OUT_OF_DOMAIN, "rows": rows}, args.out)
    table = markdown(rows)
    write_text(args.out.with_suffix(".md"), table + "\n")
    print(table)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
