"""Render every results table from its JSON: ``results/<dataset>.md`` and the README blocks ``results:<dataset>``,
the README's list of shipped models (block ``models``, from their manifests), its table of input limits (block
``limits``, from ``sketchdown.limits``), the hostile-input run (block ``fuzz``, from ``results/fuzz.json``) and the
server's load test (block ``serve-load``) and search at catalogue scale (block ``scale``).

The one place that writes tables into README.md (the library never does). Every benchmark that changes
``results/<dataset>.json`` calls ``render`` at its end; run it alone to re-render after editing by hand:

    python benchmarks/tables.py
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path

from sketchdown.eval.results import markdown
from sketchdown.files import write_json
from sketchdown.limits import Limits
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


def selector_results(results: Path) -> list[dict]:
    """The selector benchmark's results, one per set (the earlier one-policy files, without ``kinds``, left out)."""
    found = [json.loads(p.read_text()) for p in sorted(results.glob("selector-*.json"))]
    return [r for r in found if "kinds" in r]


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
    selectors = selector_results(results)
    if selectors:
        replace_block(readme, "selector", selector_table(selectors))
    replace_block(readme, "models", models_table())
    replace_block(readme, "limits", limits_table())
    if (results / "fuzz.json").is_file():
        replace_block(readme, "fuzz", fuzz_table(json.loads((results / "fuzz.json").read_text())))
    if (results / "scale.json").is_file():
        replace_block(readme, "scale", scale_table(json.loads((results / "scale.json").read_text())))
    if (results / "serve-load.json").is_file():
        replace_block(readme, "serve-load", serve_load_table(json.loads((results / "serve-load.json").read_text())))
    return written


def publish(result: dict, name: str, table: Callable[[dict], str], results: Path, readme: Path) -> dict:
    """A benchmark's last step: results/<name>.json and .md, every README block re-rendered, the table printed."""
    write_json(result, results / f"{name}.json")
    (results / f"{name}.md").write_text(table(result) + "\n")
    render(results, readme)
    print(table(result))
    return result


def limits_table() -> str:
    """Every input limit with its default and the environment variable that changes it."""
    lines = ["| limit | default | bounds | environment variable |", "|---|---:|---|---|"]
    for f, (env, what, value) in zip(Limits.__dataclass_fields__, Limits().describe()):
        lines.append(f"| `{f}` | {value:,} | {what} | `{env}` |")
    return "\n".join(lines)


def fuzz_table(summary: dict) -> str:
    """The outcome counts of a ``benchmarks/fuzz.py`` run, per target, and its findings."""
    lines = [f"{summary['cases']:,} cases in {summary['seconds']:.0f} s (`{summary['command']}`):", "",
             "| target | cases | result | project's error | findings |", "|---|---:|---:|---:|---:|"]
    for name, counts in summary["outcomes"].items():
        bad = sum(v for k, v in counts.items() if k not in ("result", "error"))
        lines.append(f"| {name} | {sum(counts.values())} | {counts.get('result', 0)} | {counts.get('error', 0)} "
                     f"| {bad} |")
    bounds = summary["bounds"]
    lines += ["", f"Findings (an exception other than the project's one-line error, a case over "
                  f"{bounds['seconds']:.0f} s or {bounds['extra_address_space_bytes'] >> 30} GB, code executed): "
                  f"**{len(summary['findings'])}**. Slowest case {summary['slowest_seconds']:.3f} s; peak resident "
                  f"memory of the whole run {summary['peak_rss_mb']:.0f} MB."]
    lines += [f"- {f['target']}: {f['outcome']} {f['detail']}" for f in summary["findings"][:50]]
    return "\n".join(lines)


def serve_load_table(r: dict) -> str:
    """The load test of the search server (``benchmarks/serve_load.py``), a row per engine."""
    m = r["meta"]
    lines = [f"{m['clients']} concurrent clients x {m['requests'] // m['clients']} searches against `sketchdown serve` "
             f"on 127.0.0.1 ({m['model']}, {m['photos']} Shoe-V1 test photos, stroke JSON of the {m['sketches']} "
             f"traced test sketches, k = {m['k']}; {m['cores']} cores), one server per `--engine`:", "",
             "| engine | requests | errors | throughput | latency p50 / p95 / p99 (client) | search p50 / p95 (server) "
             "| clean shutdown |", "|---|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {row['engine']} | {m['requests']} | {row['errors']} | {row['throughput_rps']:.1f} searches/s | "
              f"{row['latency_ms']['p50']:.0f} / {row['latency_ms']['p95']:.0f} / {row['latency_ms']['p99']:.0f} ms | "
              f"{row['server_search_ms']['p50']:.1f} / {row['server_search_ms']['p95']:.1f} ms | "
              f"{'yes' if row['clean_shutdown'] else 'NO'} |" for row in r["rows"]]
    return "\n".join(lines + ["", f"`{m['command']}`"])


def scale_table(r: dict) -> str:
    """Exact search against IVF-PQ at catalogue scale (``benchmarks/scale.py``)."""
    m = r["meta"]
    lines = [f"{m['vectors']:,} photo vectors ({m['dim']} dimensions, embedded by `{m['model']}`: the "
             f"{m['queries']} real Shoe-V1 test photos, then the {m['base_photos']:,} ShoeV2 photos tiled with "
             f"noise of norm {m['noise']}), searched with the {m['queries']} Shoe-V1 test sketches, batch 1, "
             f"{m['threads']} threads:", "",
             "| structure | build (s) | bytes / photo | nprobe | recall@10 vs exact | true photo acc@1 / @10 | "
             "query ms (median / p95) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        for i, p in enumerate(row["probes"]):
            head = f"| {row['structure']} | {row['build_s']:.0f} | {row['bytes_per_photo']:,.1f}" if i == 0 else "| | |"
            lines.append(f"{head} | {p['nprobe'] or ''} | {p['recall10']:.3f} | {p['acc1']:.2f} / {p['acc10']:.2f} "
                         f"| {p['median_ms']:.2f} / {p['p95_ms']:.2f} |")
    return "\n".join(lines + ["", f"`{m['command']}`"])


def rewards_table(res: dict) -> str:
    """Where a selector's rewards come from: per bank, acc@1 at each canvas, the oracle's choices and (results
    since it was measured) the ROC AUC of the search's top-1 margin for a right top-1."""
    stats = res["reward_statistics"]
    first = next(iter(stats.values()))
    canvases = list(first["acc1"])
    columns = ["acc1", "oracle_share"] + (["margin_auc"] if "margin_auc" in first else [])
    heads = {"acc1": "acc@1 @{}", "oracle_share": "oracle picks {}", "margin_auc": "margin AUC @{}"}
    cell = {"acc1": lambda v: f"{v:.1f}", "oracle_share": lambda v: f"{100 * v:.0f}%",
            "margin_auc": lambda v: "n/a" if v is None else f"{v:.2f}"}
    lines = [f"**{res['set']}** (student `{res['student']}`): where the rewards come from", "",
             "| sketches scored | n | " + " | ".join(heads[k].format(c) for k in columns for c in canvases) + " |",
             "|---|---:|" + "---:|" * (len(columns) * len(canvases))]
    for name, s in stats.items():
        lines.append(f"| {name} | {s['sketches']} | " +
                     " | ".join(cell[k](s[k][c]) for k in columns for c in canvases) + " |")
    return "\n".join(lines)


def captured_share(h: dict) -> str:
    """The share of the oracle's head-room a selector captured, as the tables print it."""
    return "n/a" if h["captured"] is None else f"{round(100 * h['captured'])}%"


def selector_table(results: list[dict]) -> str:
    """SketchyNetV2's selectors (``benchmarks/selector.py``): the reward landscape before and after cross-fitting,
    each selector on the test split beside its reference points, and the issue's targets."""
    lines = []
    for res in results:
        lines.append(rewards_table(res))
        canvases = list(next(iter(res["reward_statistics"].values()))["acc1"])
        v1 = res["fixed"][str(canvases[-1])]
        lines += ["", "| selector (test) | lambda_F | GFLOPs / sketch | acc@1 | acc@10 | best blind at that cost | "
                      "best per-sketch at that cost | head-room captured | vs best fixed canvas that costs no more |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
                  f"| SketchyNetV1 @{canvases[-1]} | | {v1['gflops']:.3f} | {v1['acc1']:.2f} | {v1['acc10']:.2f} "
                  "| | | | |"]
        for kind, r in res["kinds"].items():
            t, h = r["test"], r["headroom"]
            captured = captured_share(h)
            fixed = "n/a" if h["best_fixed_canvas"] is None else f"{h['vs_best_fixed']:+.2f} (vs {h['best_fixed_canvas']})"
            star = " **(SketchyNetV2)**" if kind == res["best"] else ""
            lines.append(f"| {kind}{star} | {r['lambda_flops']} | {t['gflops']:.3f} | {t['acc1']:.2f} ± "
                         f"{t['acc1_std']:.2f} | {t['acc10']:.2f} | {h['random_acc1']:.2f} | "
                         f"{h['oracle_acc1_at_same_cost']:.2f} | {captured} | {fixed} |")
        o = res["oracle"]
        lines += [f"| oracle | | {o['gflops']:.3f} | {o['acc1']:.2f} | {o['acc10']:.2f} | | | | |", ""]
        best, h = res["kinds"][res["best"]]["test"], res["kinds"][res["best"]]["headroom"]
        cheap = best["gflops"] <= v1["gflops"] / 3 and best["acc1"] >= v1["acc1"] - 1
        captured = captured_share(h)
        vs_fixed = "n/a" if h["vs_best_fixed"] is None else f"{h['vs_best_fixed']:+.2f}"
        chooses = (h["vs_best_fixed"] or 0) >= 3 and (h["captured"] or 0) >= 0.5  # the second target: both
        lines += [f"Targets ({res['set']}, SketchyNetV2 = {res['best']}): mean cost {best['gflops']:.3f} GFLOPs "
                  f"against {v1['gflops'] / 3:.3f} (a third of V1@256) at acc@1 {best['acc1'] - v1['acc1']:+.2f} "
                  f"from V1@256 (target: within 1): {'met' if cheap else 'NOT met'}; against the best fixed canvas "
                  f"of no more cost {vs_fixed} (target +3) and head-room captured {captured} (target 50%): "
                  f"{'met' if chooses else 'NOT met'} (over the best blind mixture of canvases at that cost: "
                  f"{best['acc1'] - h['random_acc1']:+.2f}).", ""]
    lines.append("![test acc@1 against mean GFLOPs per sketch](results/selector-curve.png)")
    lines += [""] + [f"_{r['set']}: `{r['command']}`_  " for r in results]  # each set's own command
    return "\n".join(lines)


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
