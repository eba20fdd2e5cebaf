"""The validation report as a standalone HTML page (the JSON beside it holds the same facts, less
the example images: per FST group, a few images beside the skin mask their ITA estimate used)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fairaug.data.scan import ITA_MAX_SIDE
from fairaug.skin.ita import estimate_skin
from fairaug.skin.types import FST_ROMAN, FST_UNKNOWN, FST_VALUES

EXAMPLE_SIDE = 96  # pixels per example image in the report
EXAMPLES_PER_GROUP = 4


def counts_text(counts: Mapping[object, int]) -> str:
    """Counts for a person to read: ``akiec 12, bcc 30`` (not a dict's repr, nor numpy's)."""
    return ", ".join(f"{key} {int(count)}" for key, count in counts.items())


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _counts_table(counts: dict[str, dict[str, int]]) -> str:
    keys = sorted({k for row in counts.values() for k in row}, key=lambda k: (len(k), k))
    splits = [s for s in ("train", "val", "test") if s in counts]
    return _table(["split", *keys], [[s, *(counts[s].get(k, 0) for k in keys)] for s in splits])


def _example(root: Path, row: pd.Series, min_skin_fraction: float) -> str:
    """One figure: the image and, beside it, the pixels the ITA estimate read as skin (the rest dimmed)."""
    with Image.open(root / row["path"]) as image:
        thumbnail = image.convert("RGB")
    thumbnail.thumbnail((ITA_MAX_SIDE, ITA_MAX_SIDE))  # what prepare estimated on
    rgb = np.asarray(thumbnail)
    estimate = estimate_skin(rgb, min_skin_fraction)
    shown = np.where(estimate.mask[..., None], rgb, (0.25 * rgb + 0.75 * 128).astype(np.uint8))
    pair = Image.fromarray(np.concatenate([rgb, shown], axis=1)).resize((2 * EXAMPLE_SIDE, EXAMPLE_SIDE))
    buffer = io.BytesIO()
    pair.save(buffer, format="PNG")
    ita = "no skin" if np.isnan(estimate.ita) else f"ITA {estimate.ita:.0f}&deg;"
    caption = f"{escape(row['path'])}<br>{ita}, skin {estimate.skin_fraction:.0%}, FST from {escape(row['fst_source'])}"
    return (f'<figure><img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}" '
            f'alt="{escape(row["path"])}"><figcaption>{caption}</figcaption></figure>')


def _examples(manifest: pd.DataFrame, root: Path, min_skin_fraction: float) -> str:
    """Per FST group, the first images by path, so that a person can judge the FST column."""
    sections = []
    for fst in [*FST_VALUES, FST_UNKNOWN]:
        rows = manifest[manifest["fst"] == fst].sort_values("path").head(EXAMPLES_PER_GROUP)
        if rows.empty:
            continue
        title = "unknown (the estimate abstained)" if fst == FST_UNKNOWN else f"FST {FST_ROMAN[fst]}"
        figures = "".join(_example(root, row, min_skin_fraction) for _, row in rows.iterrows())
        sections.append(f"<h3>{title}</h3><div class=examples>{figures}</div>")
    return "".join(sections)


def render_validation_html(report: dict, manifest: pd.DataFrame) -> str:
    """The page for ``report`` of ``manifest`` (both from `prepare_dataset`); reads example images."""
    checks = _table(
        ["check", "column", "severity", "passed", "unexpected", "first problem"],
        [[c["expectation"], c["column"], c["severity"], "yes" if c["success"] else "NO", c["unexpected_count"],
          c["message"]] for c in report["checks"]],
    )
    agreement = report["ita_agreement"]
    if agreement.get("n"):
        matrix = _table(
            ["label \\ ITA", *(FST_ROMAN[k] for k in agreement["labels"])],
            [[FST_ROMAN[k], *row] for k, row in zip(agreement["labels"], agreement["confusion_matrix"], strict=True)],
        )
        ita = (f"<p>{agreement['n']} images with an FST label and an ITA estimate: ITA agrees on "
               f"{agreement['agreement']:.1%}, within one type on {agreement['within_one']:.1%}; it abstained on "
               f"{agreement['abstained']} more labelled images.</p>{matrix}")
    else:
        ita = "<p>No FST labels in this data set: every FST is an ITA estimate.</p>"
    void_reason = report["ita_void"]["reason"]
    void = f"<p><b>No ITA estimate for this data set:</b> {escape(void_reason)} (prepare.max_abstention_share).</p>" \
        if void_reason else ""
    near = report["near_duplicates"]
    pairs = _table(["image", "split", "image", "split", "pHash distance"],
                   [[p["path_a"], p["split_a"], p["path_b"], p["split_b"], p["distance"]] for p in near["pairs"]])
    merged, conflicts = report["split_groups"], report["label_conflicts"]
    conflict_table = _table(["images", "labels"], [["; ".join(c["paths"]), ", ".join(c["labels"])]
                                                   for c in conflicts["sets"]]) if conflicts["sets"] else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>fairaug validation: {escape(report['dataset'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}th{{background:#f3f3f3}}
.examples{{display:flex;flex-wrap:wrap;gap:1em}}figure{{margin:0;font-size:.8em;max-width:{2 * EXAMPLE_SIDE}px}}</style></head>
<body><h1>Validation report: {escape(report['dataset'])}</h1>
<p>Format <b>{escape(report['format'])}</b> at <code>{escape(report['root'])}</code>: {report['n_images']} images
in {report['n_groups']} groups. FST source: {escape(counts_text(report['fst_source']))}.</p>
<h2>Checks (great-expectations)</h2>{checks}
<h2>Labels per split</h2>{_counts_table(report['label_counts'])}
<h2>Fitzpatrick skin types per split</h2>{_counts_table(report['fst_counts'])}
<p>Least test images per FST (prepare.split.min_test_per_fst): {report.get('min_test_per_fst') or 'none (the shares alone)'}.</p>
<h2>ITA estimate vs FST label</h2>{ita}
<p>Unknown FST (no label, and the ITA estimate abstained: non-lesion skin below {report['min_skin_fraction']:.0%}
of the field, or no skin around the lesion): {report['fst_source'].get('unknown', 0)} images. They count in the
classifiers' overall metrics as their own group, in no FST gap, and are left out of diffusion training.</p>
{void}
<h2>What the FST estimate saw</h2>
<p>Per group, the first images: each beside the pixels the ITA estimate read as non-lesion skin (the rest dimmed).</p>
{_examples(manifest, Path(report['root']), report['min_skin_fraction'])}
<h2>Copies kept in one split</h2>
<p>Identical images (same bytes) and near duplicates (pHash distance &le; {near['max_distance']}) are
split together: {merged['groups_before']} groups became {merged['groups_after']} split groups
({merged['merged_pairs']['identical']} group pairs merged for identical images,
{merged['merged_pairs']['near_duplicate']} for near duplicates; manifest column <code>split_group</code>).
{conflicts['count']} sets of identical images carry different labels.</p>{conflict_table}
<h2>Near duplicates across splits</h2>
<p>{near['count']} pairs at pHash distance &le; {near['max_distance']} (first {len(near['pairs'])} shown).</p>{pairs}
</body></html>
"""
