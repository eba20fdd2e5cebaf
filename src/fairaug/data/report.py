"""The validation report as a standalone HTML page (the JSON beside it holds the same facts)."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from fairaug.data.labels import FST_ROMAN


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


def render_validation_html(report: dict) -> str:
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
        ita = (f"<p>{agreement['n']} images with an FST label: ITA agrees on {agreement['agreement']:.1%}, "
               f"within one type on {agreement['within_one']:.1%}.</p>{matrix}")
    else:
        ita = "<p>No FST labels in this data set: every FST is an ITA estimate.</p>"
    near = report["near_duplicates"]
    pairs = _table(["image", "split", "image", "split", "pHash distance"],
                   [[p["path_a"], p["split_a"], p["path_b"], p["split_b"], p["distance"]] for p in near["pairs"]])
    merged, conflicts = report["split_groups"], report["label_conflicts"]
    conflict_table = _table(["images", "labels"], [["; ".join(c["paths"]), ", ".join(c["labels"])]
                                                   for c in conflicts["sets"]]) if conflicts["sets"] else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>fairaug validation: {escape(report['dataset'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}th{{background:#f3f3f3}}</style></head>
<body><h1>Validation report: {escape(report['dataset'])}</h1>
<p>Format <b>{escape(report['format'])}</b> at <code>{escape(report['root'])}</code>: {report['n_images']} images
in {report['n_groups']} groups. FST source: {escape(counts_text(report['fst_source']))}.</p>
<h2>Checks (great-expectations)</h2>{checks}
<h2>Labels per split</h2>{_counts_table(report['label_counts'])}
<h2>Fitzpatrick skin types per split</h2>{_counts_table(report['fst_counts'])}
<h2>ITA estimate vs FST label</h2>{ita}
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
