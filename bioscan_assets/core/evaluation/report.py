"""The evaluation report: one self-contained HTML page, a Markdown summary and a JSON of metrics.

The page also shows the adapter's training curves (loss per rank, learning rate) from the
`losses.json` kept beside it, when the adapter has one.

Plots are drawn with matplotlib (Agg backend) as inline SVG, so the page needs no other file;
without matplotlib the page keeps every table and says the plots are missing.
The page says up front, in words, when the base model is not pretrained. Its summary is the
Markdown summary rendered (markdown-it-py, raw HTML in it escaped).

Each run writes its own folder (`layout.evaluation_report_dir(tenant)/<run_id>/`) and
`publish_latest` copies it to `latest/` beside it: the newest report at a stable path.
"""

from __future__ import annotations

import html
import io
import json
from typing import Any

import numpy as np
from markdown_it import MarkdownIt

from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS
from bioscan_assets.core.tuning.progress import read_loss_history

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
# CommonMark plus GitHub tables; `html: False` escapes any raw HTML a note might carry
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")
LATEST = "latest"
PAGE = "report.html"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def pretrained_warning(model: dict[str, Any]) -> str | None:
    if model.get("pretrained"):
        return None
    return (
        f"The base model `{model.get('model_id')}` is NOT pretrained: its weights are random "
        f"({model.get('source') or 'preset'}). The LoRA and kNN columns show what a random "
        "encoder plus this little training can do; they say nothing about the Nucleotide "
        "Transformer's published accuracy."
    )


# --- Markdown ----------------------------------------------------------------------------------


def markdown_summary(evaluation: dict[str, Any]) -> str:
    methods = evaluation["methods"]
    names = list(methods)
    lines = [f"## Evaluation {evaluation.get('title', '')}".rstrip(), ""]
    warning = pretrained_warning(evaluation.get("model", {}))
    if warning:
        lines += [f"> **{warning}**", ""]
    test = evaluation.get("test", {})
    lines += [
        f"Held-out set: {test.get('n', 0)} sequences ({test.get('seen_genus', 0)} of genera seen "
        f"in training, {test.get('unseen_genus', 0)} of {test.get('unseen_genera', 0)} genera "
        f"never seen); training set: {evaluation.get('train', {}).get('n', 0)} sequences.",
        "",
        "Accuracy on labels seen in training (%), and coverage on labels never seen (%: lower is "
        "better, a call there is always wrong):",
        "",
        "| rank | n seen / unseen | "
        + " | ".join(f"{methods[m]['label']} acc" for m in names)
        + " | "
        + " | ".join(f"{methods[m]['label']} unseen cov" for m in names)
        + " |",
        "|---|---|" + "---|" * (2 * len(names)),
    ]
    for rank in RANKS:
        first = methods[names[0]]["metrics"][rank]
        row = [rank, f"{first['seen']['n']} / {first['unseen']['n']}"]
        row += [_pct(methods[m]["metrics"][rank]["seen"]["accuracy"]) for m in names]
        row += [_pct(methods[m]["metrics"][rank]["unseen"]["coverage"]) for m in names]
        lines.append("| " + " | ".join(row) + " |")
    training = evaluation.get("training") or {}
    if training:
        lines += [
            "",
            f"LoRA training: {training.get('steps')} steps, {_fmt(training.get('train_seconds'), 1)} s, "
            f"{_fmt(training.get('sequences_per_s'), 2)} seq/s; trainable fraction "
            f"{_fmt(100 * training.get('trainable_fraction', 0.0), 3)}% of the encoder.",
        ]
    for note in evaluation.get("notes", []):
        lines += ["", f"- {note}"]
    return "\n".join(lines) + "\n"


# --- plots -------------------------------------------------------------------------------------


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _plots(evaluation: dict[str, Any]) -> dict[str, str] | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None

    methods = evaluation["methods"]
    names = list(methods)
    out: dict[str, str] = {}

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
    x = np.arange(len(RANKS))
    width = 0.8 / max(len(names), 1)
    panels = (
        ("seen", "accuracy", "accuracy, labels seen in training"),
        ("all", "accuracy", "accuracy, all test sequences"),
        ("unseen", "coverage", "calls on labels never seen (lower is better)"),
    )
    for ax, (group, key, title) in zip(axes, panels, strict=True):
        for i, name in enumerate(names):
            values = [methods[name]["metrics"][r][group][key] for r in RANKS]
            ax.bar(
                x + (i - (len(names) - 1) / 2) * width,
                [np.nan if v is None else v for v in values],
                width,
                label=methods[name]["label"],
                color=_COLORS[i % len(_COLORS)],
            )
        ax.set_xticks(x, RANKS, rotation=30)
        ax.set_ylim(0, 1.02)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(names), bbox_to_anchor=(0.5, 1.06))
    out["accuracy"] = _svg(fig)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        conf = methods[name].get("confusion_genus") or {}
        counts = np.asarray(conf.get("counts") or [[0]], float)
        totals = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        ax.imshow(share, vmin=0, vmax=1, cmap="Blues", aspect="auto")
        rows, cols = conf.get("rows") or [], conf.get("columns") or []
        ax.set_yticks(range(len(rows)), [r[:22] for r in rows], fontsize=7)
        ax.set_xticks(range(len(cols)), [c[:22] for c in cols], fontsize=7, rotation=90)
        for (i, j), value in np.ndenumerate(counts):
            if value:
                ax.text(j, i, int(value), ha="center", va="center", fontsize=6)
        ax.set_title(f"{methods[name]['label']}: genus (row = truth)", fontsize=9)
    fig.tight_layout()
    out["confusion"] = _svg(fig)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, rank in zip(axes, ("family", "genus"), strict=True):
        ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
        for i, name in enumerate(names):
            bins = (methods[name].get("calibration") or {}).get(rank) or []
            points = [((b["lo"] + b["hi"]) / 2, b["accuracy"], b["n"]) for b in bins if b["n"]]
            if points:
                xs, ys, _ns = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=methods[name]["label"], color=_COLORS[i])
                for xv, yv, nv in points:
                    ax.annotate(
                        str(nv), (xv, yv), fontsize=6, xytext=(2, 2), textcoords="offset points"
                    )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence of the call")
        ax.set_ylabel("accuracy of the call")
        ax.set_title(f"confidence vs accuracy, {rank} (numbers: sequences per bin)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    out["calibration"] = _svg(fig)
    plt.close(fig)
    return out


def _loss_plot(losses: dict[str, Any]) -> str | None:
    """Training loss (overall and per rank) and learning rate against the step, as SVG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None

    def series(values: list[float | None]) -> np.ndarray:
        return np.asarray([np.nan if v is None else v for v in values], float)

    steps = np.asarray(losses["steps"])
    fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(14, 4.2), gridspec_kw={"width_ratios": [3, 1]})
    cmap = plt.get_cmap("viridis")
    for i, rank in enumerate(RANKS):
        values = losses["loss_per_rank"].get(rank)
        if values:
            ax.plot(
                steps, series(values), lw=1.1, color=cmap(i / max(len(RANKS) - 1, 1)), label=rank
            )
    ax.plot(steps, series(losses["loss"]), lw=2.4, color="#d62728", label="weighted total")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.set_title("training loss per rank", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax_lr.plot(steps, series(losses["learning_rate"]), color="#444")
    ax_lr.set_xlabel("step")
    ax_lr.set_title("learning rate", fontsize=10)
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    svg = _svg(fig)
    plt.close(fig)
    return svg


def _loss_table(losses: dict[str, Any]) -> str:
    """First, last and lowest loss per rank: the curves' numbers, with or without matplotlib."""

    def cells(values: list[float | None]) -> list[str]:
        kept = [v for v in values if v is not None]
        if not kept:
            return ["–"] * 3
        return [f"{kept[0]:.4f}", f"{kept[-1]:.4f}", f"{min(kept):.4f}"]

    rows = [("weighted total", losses["loss"])] + [
        (rank, losses["loss_per_rank"].get(rank) or []) for rank in RANKS
    ]
    body = "".join(
        "<tr><td>{}</td>{}</tr>".format(
            html.escape(name), "".join(f"<td>{c}</td>" for c in cells(values))
        )
        for name, values in rows
    )
    head = "<th>loss</th><th>first step</th><th>last step</th><th>lowest</th>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _training_section(losses: dict[str, Any] | None) -> list[str]:
    """The adapter's training curves, or a line saying it kept none."""
    heading = "<h2>Training curves</h2>"
    if not losses or not losses.get("steps"):
        return [
            heading,
            "<p><em>This adapter kept no loss history (saved before losses.json was kept, or its "
            "run resumed with no step left to train).</em></p>",
        ]
    first, last = losses["steps"][0], losses["steps"][-1]
    note = f"Steps {first} to {last} of the LoRA training run."
    if first > 1:
        note += (
            f" The run resumed from a checkpoint at step {first - 1}; earlier steps are in the "
            "earlier run's event log and W&B history."
        )
    plot = _loss_plot(losses)
    return [heading, f"<p>{note}</p>", *([plot] if plot else []), _loss_table(losses)]


# --- HTML --------------------------------------------------------------------------------------


def _metrics_table(method: dict[str, Any]) -> str:
    rows = []
    for rank in RANKS:
        for group in ("all", "seen", "unseen"):
            m = method["metrics"][rank][group]
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(cell))}</td>"
                    for cell in (
                        rank if group == "all" else "",
                        group,
                        m["n"],
                        _pct(m["accuracy"]),
                        _pct(m["precision"]),
                        _pct(m["coverage"]),
                        _pct(m["macro_f1"]),
                    )
                )
                + "</tr>"
            )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("rank", "labels", "n", "accuracy %", "precision %", "coverage %", "macro-F1 %")
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_html(
    evaluation: dict[str, Any], summary_md: str, losses: dict[str, Any] | None = None
) -> str:
    """The page; `losses` is the adapter's loss history (`core.tuning.progress`), if any."""
    plots = _plots(evaluation)
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>bioscan evaluation {esc(evaluation.get('title', ''))}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
        "text-align:right}th{background:#f3f3f3}.warn{background:#fff3cd;border:2px solid #d39e00;"
        "padding:1em;font-weight:bold}pre{background:#f6f6f6;padding:1em;overflow:auto}</style>",
        "</head><body>",
        f"<h1>Taxonomy evaluation {esc(evaluation.get('title', ''))}</h1>",
    ]
    warning = pretrained_warning(evaluation.get("model", {}))
    if warning:
        parts.append(f"<p class='warn'>{esc(warning)}</p>")
    model = evaluation.get("model", {})
    parts.append(
        "<p>Base model <code>{}</code>, weights sha256 <code>{}</code>; adapter <code>{}</code>."
        "</p>".format(
            esc(str(model.get("model_id"))),
            esc(str(model.get("weights_hash", ""))[:16]),
            esc(str((evaluation.get("adapter") or {}).get("version"))),
        )
    )
    parts.append("<h2>Summary</h2><div class='summary'>" + _MARKDOWN.render(summary_md) + "</div>")
    if plots is None:
        parts.append("<p><em>matplotlib is not installed: plots are left out.</em></p>")
    else:
        parts += [
            "<h2>Per-rank accuracy by method</h2>",
            plots["accuracy"],
            "<h2>Most frequent genera: where the calls went</h2>",
            plots["confusion"],
            "<h2>Confidence against accuracy</h2>",
            "<p>Each method's un-thresholded call, binned by its confidence (LoRA: softmax "
            "probability; kNN: vote share; naive Bayes: bootstrap agreement).</p>",
            plots["calibration"],
        ]
    parts += _training_section(losses)
    for _name, method in evaluation["methods"].items():
        parts.append(f"<h2>{esc(method['label'])}</h2>")
        if method.get("description"):
            parts.append(f"<p>{esc(method['description'])}</p>")
        parts.append(_metrics_table(method))
    parts.append(
        "<h2>Definitions</h2><p>accuracy = correct calls / sequences; precision = correct / "
        "calls; coverage = calls / sequences (share not abstained); macro-F1 over the true "
        "classes. <b>seen</b> = the true label occurs at that rank in the training split; "
        "<b>unseen</b> labels cannot be called correctly, so a good method abstains there.</p>"
    )
    for note in evaluation.get("notes", []):
        parts.append(f"<p>{esc(note)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(store: Store, folder: str, evaluation: dict[str, Any]) -> dict[str, str]:
    """`report.html`, `summary.md` and `metrics.json` in `folder`; returns their paths.

    The training curves come from the evaluated adapter's folder (`evaluation["adapter"]["path"]`).
    """
    summary = markdown_summary(evaluation)
    adapter_folder = (evaluation.get("adapter") or {}).get("path")
    losses = read_loss_history(store, adapter_folder) if adapter_folder else None
    paths = {
        "metrics": f"{folder}/metrics.json",
        "summary": f"{folder}/summary.md",
        "html": f"{folder}/{PAGE}",
    }
    store.write_bytes(paths["metrics"], json.dumps(evaluation, indent=1, sort_keys=True).encode())
    store.write_bytes(paths["summary"], summary.encode())
    store.write_bytes(paths["html"], render_html(evaluation, summary, losses).encode())
    return paths


def publish_latest(store: Store, paths: dict[str, str]) -> dict[str, str]:
    """Copy a run's report files to `latest/` beside the run's folder, the page last; returns
    the copies' paths (same keys)."""
    latest = {}
    for key in sorted(paths, key=lambda k: k == "html"):
        folder, name = paths[key].rsplit("/", 1)
        latest[key] = f"{folder.rsplit('/', 1)[0]}/{LATEST}/{name}"
        store.write_bytes(latest[key], store.read_bytes(paths[key]))
    return latest
