"""Reports over a result store: PNG plots, one self-contained HTML page, a Markdown summary, JSON/CSV.

:func:`make_report` reads every run under a root (:func:`critwrap.evaluation.store.scan`), names and
skips bad runs (partial, failed, corrupt), normalises the final scores
(:mod:`critwrap.evaluation.normalization`), computes the rliable aggregates
(:mod:`critwrap.evaluation.aggregate`) and writes into ``out_dir``:

* ``report.html``: everything in one file (plots embedded as base64 PNG, inline CSS, no network);
* ``summary.md``: the aggregate table (IQM, median, mean, optimality gap with 95% CIs), P(X > Y),
  per-environment scores, bad runs and notes;
* ``aggregates.png``, ``profiles.png``, ``improvement.png`` (with two or more methods),
  ``sample_efficiency.png`` (when runs have ``evaluations.npz``), ``per_task.png``;
* ``results.json`` (every number above) and ``scores.csv`` (one row per run used).

Example:
    >>> from critwrap.evaluation.report import make_report
    >>> rep = make_report("runs", out_dir="runs/report", normalize="minmax:0,500", reps=2000)  # doctest: +SKIP
    >>> rep.html  # doctest: +SKIP
    PosixPath('runs/report/report.html')
    >>> print(rep.markdown_table)  # doctest: +SKIP
    | Method | Runs | IQM | Median | Mean | Optimality gap |
    ...
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from critwrap.evaluation.aggregate import (
    CurveEstimate,
    Estimate,
    ScoreData,
    aggregate_estimates,
    curve_matrices,
    default_taus,
    improvement_pairs,
    performance_profiles,
    probability_of_improvement,
    sample_efficiency,
    score_matrices,
)
from critwrap.evaluation.normalization import Normalizer, get_normalizer
from critwrap.evaluation.store import BadRun, ResultStore, scan

__all__ = ["Report", "make_report", "markdown_table"]


@dataclass
class Report:
    """What :func:`make_report` computed and where it wrote it."""

    out_dir: Path
    store: ResultStore
    data: ScoreData
    estimates: dict[str, dict[str, Estimate]]
    improvement: dict[tuple[str, str], Estimate]
    curves: dict[str, CurveEstimate]
    profiles: tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]
    notes: list[str]
    images: dict[str, Path] = field(default_factory=dict)
    html: Path | None = None
    markdown: Path | None = None
    json: Path | None = None
    csv: Path | None = None
    markdown_table: str = ""

    @property
    def bad(self) -> list[BadRun]:
        return self.store.bad


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.3g}"
    return f"{x:.3f}"


def _est(e: Estimate) -> str:
    return f"{_fmt(e.point)} [{_fmt(e.low)}, {_fmt(e.high)}]"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(_md_escape(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(_md_escape(str(c)) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _aggregate_rows(rep: Report) -> tuple[list[str], list[list[str]]]:
    names = list(next(iter(rep.estimates.values())))
    headers = ["Method", "Runs", *names]
    rows = []
    for m in rep.data.methods:
        rows.append([m, str(rep.data.scores[m].shape[0]), *(_est(rep.estimates[m][n]) for n in names)])
    return headers, rows


def _task_rows(rep: Report) -> tuple[list[str], list[list[str]]]:
    tasks = sorted({t for _, t in rep.data.per_task})
    headers = ["Environment", *rep.data.methods]
    rows = []
    for t in tasks:
        row = [t]
        for m in rep.data.methods:
            runs = rep.data.per_task.get((m, t), [])
            if runs:
                v = np.array([r.score for r in runs])
                row.append(f"{_fmt(v.mean())} ± {_fmt(v.std())} (n={len(v)})")
            else:
                row.append("-")
        rows.append(row)
    return headers, rows


def _improvement_rows(rep: Report) -> tuple[list[str], list[list[str]]]:
    headers = ["X", "Y", "P(X > Y)"]
    return headers, [[x, y, _est(e)] for (x, y), e in rep.improvement.items()]


def _bad_lines(bad: Sequence[BadRun], root: Path) -> list[str]:
    out = []
    for b in bad:
        try:
            where = str(b.path.relative_to(root))
        except ValueError:
            where = str(b.path)
        out.append(f"{where}: {b.kind}: {b.reason}")
    return out


def _markdown(rep: Report, title: str) -> str:
    d = rep.data
    parts = [f"# {title}", ""]
    parts.append(
        f"{sum(s.shape[0] * s.shape[1] for s in d.scores.values())} runs in the aggregates "
        f"({len(rep.store.runs)} finished, {len(rep.store.bad)} bad) over {len(d.tasks)} "
        f"environment(s): {', '.join(d.tasks)}. Scores: {d.normalizer.label} of the final evaluation "
        "(mean return). Intervals: 95% stratified bootstrap CIs (rliable)."
    )
    parts += ["", "## Aggregate scores", "", rep.markdown_table, ""]
    if rep.improvement:
        h, r = _improvement_rows(rep)
        parts += ["## Probability of improvement", "", markdown_table(h, r), ""]
    h, r = _task_rows(rep)
    parts += ["## Final mean return per environment (raw)", "", markdown_table(h, r), ""]
    if rep.store.bad:
        parts += ["## Bad runs (skipped)", ""]
        parts += [f"- {line}" for line in _bad_lines(rep.store.bad, rep.store.root)]
        parts.append("")
    if rep.notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in rep.notes] + [""]
    return "\n".join(parts)


_CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:2em auto;max-width:1100px;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f3f3f3}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.88em;color:#555}.meta{color:#666;font-size:.9em}
.bad{color:#9a1c1c}.broken{color:#fff;background:#9a1c1c;padding:.4em}
code{background:#f6f6f6;padding:0 .2em}
"""

# Marks the page once loaded: data-images="loaded/total"; a picture that fails to decode is flagged.
_JS = """
window.addEventListener("load", function () {
  var imgs = document.querySelectorAll("img"), ok = 0;
  imgs.forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { ok++; return; }
    var p = document.createElement("p");
    p.className = "broken";
    p.textContent = "image failed to load: " + img.alt;
    img.parentNode.insertBefore(p, img);
  });
  document.documentElement.setAttribute("data-images", ok + "/" + imgs.length);
});
"""


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    esc = html.escape
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    for row in rows:
        cells = [
            f'<td class="num">{esc(str(c))}</td>' if i >= numeric_from else f"<td>{esc(str(c))}</td>"
            for i, c in enumerate(row)
        ]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


_CAPTIONS = {
    "aggregates": "Aggregate metrics with 95% stratified bootstrap confidence intervals. Higher is better, "
    "except the optimality gap (lower is better).",
    "profiles": "Performance profiles: the fraction of runs whose score exceeds τ, with 95% CI bands.",
    "improvement": "Probability of improvement P(X > Y): the chance that a run of X beats a run of Y on a "
    "randomly chosen environment, with 95% CIs.",
    "sample_efficiency": "Sample efficiency: IQM of the periodic evaluations against environment steps, "
    "with 95% CI bands.",
    "per_task": "Final mean return of every run (dots) and the mean per method (line), per environment.",
}


def _html(rep: Report, title: str, command: str | None) -> str:
    esc = html.escape
    d = rep.data
    body = [f"<h1>{esc(title)}</h1>"]
    stamp = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    meta = (
        f"{len(rep.store.runs)} finished runs, {len(rep.store.bad)} bad runs skipped; environments in the "
        f"aggregates: {', '.join(d.tasks)}; scores: {d.normalizer.label}; 95% stratified bootstrap CIs "
        f"(rliable). Runs directory <code>{esc(str(rep.store.root))}</code>; generated {esc(stamp)}."
    )
    body.append(f'<p class="meta">{meta}</p>')
    if command:
        body.append(f'<p class="meta">Command: <code>{esc(command)}</code></p>')
    h, r = _aggregate_rows(rep)
    body += ["<h2>Aggregate scores</h2>", _html_table(h, r)]
    for name in ("aggregates", "profiles", "improvement", "sample_efficiency", "per_task"):
        if name == "improvement" and rep.improvement:
            h, r = _improvement_rows(rep)
            body += ["<h2>Probability of improvement</h2>", _html_table(h, r, numeric_from=2)]
        if name == "per_task":
            h, r = _task_rows(rep)
            body += ["<h2>Per environment</h2>", _html_table(h, r)]
        path = rep.images.get(name)
        if path is None:
            continue
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        body.append(
            f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(_CAPTIONS[name])}</figcaption></figure>"
        )
    if rep.store.bad:
        body.append("<h2>Bad runs (skipped)</h2><ul>")
        body += [f'<li class="bad">{esc(line)}</li>' for line in _bad_lines(rep.store.bad, rep.store.root)]
        body.append("</ul>")
    if rep.notes:
        body.append("<h2>Notes</h2><ul>")
        body += [f"<li>{esc(n)}</li>" for n in rep.notes]
        body.append("</ul>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style><script>{_JS}</script></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _results_json(rep: Report) -> dict[str, Any]:
    d = rep.data
    taus, profiles, cis = rep.profiles
    return {
        "root": str(rep.store.root),
        "normalization": {
            "kind": d.normalizer.kind,
            "label": d.normalizer.label,
            "source": d.normalizer.source,
        },
        "methods": d.methods,
        "tasks": d.tasks,
        "scores": {m: d.scores[m] for m in d.methods},
        "raw_scores": {m: d.raw[m] for m in d.methods},
        "runs": {m: [[str(r.path) for r in lst] for lst in d.runs[m]] for m in d.methods},
        "aggregates": {
            m: {n: {"point": e.point, "low": e.low, "high": e.high} for n, e in est.items()}
            for m, est in rep.estimates.items()
        },
        "probability_of_improvement": [
            {"x": x, "y": y, "point": e.point, "low": e.low, "high": e.high}
            for (x, y), e in rep.improvement.items()
        ],
        "performance_profiles": {
            "taus": taus,
            "profiles": profiles,
            "low": {m: c[0] for m, c in cis.items()},
            "high": {m: c[1] for m, c in cis.items()},
        },
        "sample_efficiency": {
            m: {"steps": c.steps, "iqm": c.point, "low": c.low, "high": c.high} for m, c in rep.curves.items()
        },
        "bad_runs": [{"path": str(b.path), "kind": b.kind, "reason": b.reason} for b in rep.store.bad],
        "notes": rep.notes,
    }


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def make_report(
    root: str | Path,
    out_dir: str | Path | None = None,
    *,
    normalize: str | Normalizer | None = "auto",
    reps: int = 2000,
    seed: int = 0,
    gamma: float | None = None,
    title: str | None = None,
    command: str | None = None,
    plots: bool = True,
) -> Report:
    """Compute the rliable report of the runs under ``root`` and write it to ``out_dir``.

    Args:
        root: a result store root (``--log-dir``), an experiment directory or any directory above runs.
        out_dir: where to write (default ``<root>/report``).
        normalize: ``auto`` | ``none`` | ``atari`` | ``minmax:LO,HI`` | ``table:PATH.csv``
            (see :mod:`critwrap.evaluation.normalization`).
        reps: bootstrap replications (rliable's ``reps``).
        seed: seed of the bootstrap (same seed, same intervals).
        gamma: optimality-gap threshold; default 1.0 for normalised scores, none (no optimality gap)
            for raw scores.
        title: the page title (default: "Results: <root name>").
        command: the command line, shown in the HTML.
        plots: write the PNG plots (and embed them in the HTML).

    Raises:
        FileNotFoundError: ``root`` holds no runs.
        ValueError: no finished run (the message lists the bad ones), or the normalisation is invalid.
    """
    root = Path(root)
    store = scan(root)
    if not store.runs:
        lines = "\n  ".join(_bad_lines(store.bad, root))
        raise ValueError(f"no finished run under {root} to report; bad runs:\n  {lines}")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    normalizer = get_normalizer(normalize, [r.env_id for r in store.runs])
    data = score_matrices(store.runs, normalizer)
    notes = list(data.notes)
    if gamma is None:
        gamma = normalizer.threshold
    if gamma is None:
        notes.append(
            "optimality gap left out: raw scores have no 'solved' threshold (use --normalize or --gamma)"
        )
    single = [m for m in data.methods if np.asarray(data.scores[m]).shape[0] == 1]
    if single:
        notes.append(
            f"{', '.join(single)}: one run per environment, so the bootstrap has nothing to resample and "
            "the confidence intervals collapse to the point estimate; they say nothing about the "
            "uncertainty (run more seeds)"
        )
    estimates = aggregate_estimates(data.scores, reps=reps, seed=seed, gamma=gamma)
    pairs = improvement_pairs(data.methods)
    improvement = probability_of_improvement(data.scores, pairs, reps=reps, seed=seed)
    taus = default_taus(data.scores, normalized=normalizer.kind != "none")
    profiles, cis = performance_profiles(data.scores, taus, reps=reps, seed=seed)
    curve_data, curve_notes = curve_matrices(data)
    notes += curve_notes
    curves = sample_efficiency(curve_data, reps=reps, seed=seed)

    out = Path(out_dir) if out_dir is not None else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    rep = Report(out, store, data, estimates, improvement, curves, (taus, profiles, cis), notes)
    h, r = _aggregate_rows(rep)
    rep.markdown_table = markdown_table(h, r)
    if plots:
        from critwrap.evaluation import plots as P

        colors = P.method_colors(data.methods)
        label = normalizer.label
        rep.images["aggregates"] = P.plot_aggregates(
            estimates, out / "aggregates.png", xlabel=label, colors=colors
        )
        rep.images["profiles"] = P.plot_profiles(
            profiles, cis, taus, out / "profiles.png", xlabel=label, colors=colors
        )
        if improvement:
            rep.images["improvement"] = P.plot_improvement(improvement, out / "improvement.png")
        if curves:
            rep.images["sample_efficiency"] = P.plot_sample_efficiency(
                curves, out / "sample_efficiency.png", ylabel=f"IQM {label}", colors=colors
            )
        rep.images["per_task"] = P.plot_per_task(data, out / "per_task.png", colors=colors)
    title = title or f"Results: {root.resolve().name}"
    rep.markdown = out / "summary.md"
    _write_text(rep.markdown, _markdown(rep, title))
    rep.html = out / "report.html"
    _write_text(rep.html, _html(rep, title, command))
    rep.json = out / "results.json"
    _write_text(rep.json, json.dumps(_results_json(rep), indent=1, default=_json_default) + "\n")
    rep.csv = out / "scores.csv"
    with rep.csv.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "method",
                "experiment",
                "algo",
                "env",
                "variant",
                "seed",
                "score",
                "normalized",
                "in_aggregates",
                "path",
            ]
        )
        used = {id(r) for m in data.methods for lst in data.runs[m] for r in lst}
        for (m, _task), runs in sorted(data.per_task.items()):
            for run in runs:
                k = run.key
                writer.writerow(
                    [m, k.experiment, k.algo, k.env, k.variant, k.seed, run.score,
                     _norm_or_blank(normalizer, run), id(run) in used, run.path]
                )  # fmt: skip
    return rep


def _norm_or_blank(normalizer: Normalizer, run: Any) -> Any:
    try:
        return normalizer(run.key.env, run.score)
    except ValueError:
        return ""
