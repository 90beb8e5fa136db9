"""Render every results table from its JSON: ``results/<dataset>.md`` and the README blocks ``results:<dataset>``,
and the README's list of shipped models (block ``models``, from their manifests).

The one place that writes tables into README.md (the library never does). Every benchmark that changes
``results/<dataset>.json`` calls ``render`` at its end; run it alone to re-render after editing by hand:

    python benchmarks/tables.py
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from sketchdown.eval.results import markdown
from sketchdown.pretrained import describe


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    return p


def replace_block(path: str | Path, key: str, text: str) -> bool:
    """Put ``text`` between ``<!-- key:start -->`` and ``<!-- key:end -->`` in ``path``; False if no markers."""
    path = Path(path)
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    content = path.read_text() if path.is_file() else ""
    if start not in content or end not in content:
        return False
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    path.write_text(pattern.sub(lambda _: f"{start}\n{text}\n{end}", content))
    return True


def render(results: Path = Path("results"), readme: Path = Path("README.md")) -> list[Path]:
    """Rewrite ``<dataset>.md`` and the README block of every dataset JSON in ``results``; returns the .md paths."""
    written = []
    for path in sorted(results.glob("*.json")):
        data = json.loads(path.read_text())
        if "dataset" not in data or "rows" not in data:
            continue  # other benchmarks' files (costs, latency, throughput, selector details)
        table = markdown(data["rows"])
        md = path.with_suffix(".md")
        md.write_text(f"# {data['dataset']}\n\n{table}\n\nGenerated from `{path.name}` by "
                      f"`python benchmarks/tables.py`; rows by `{data.get('command', '')}` and the selector "
                      "benchmark.\n")
        replace_block(readme, f"results:{data['dataset']}", table)
        written.append(md)
    replace_block(readme, "models", models_table())
    return written


def models_table() -> str:
    """The shipped retrievers: name, dataset, row of the results table, test acc@1 of the artifact, size."""
    lines = ["| name | dataset | results row | canvas | test acc@1 (artifact, fp32) | size (MB) | what it is |",
             "|---|---|---|---:|---:|---:|---|"]
    for r in describe():
        if r["present"]:
            lines.append(f"| `{r['name']}` | {r.get('dataset', '')} | {r.get('row', '')} | {r['canvas']} | "
                         f"{r['test_acc1']:.2f} | {r['size_mb']:.1f} | {r.get('description', '')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    a = get_args_parser().parse_args()
    for md in render(a.results, a.readme):
        print(md)
