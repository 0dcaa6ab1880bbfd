"""The report's sections as markdown and as a self-contained HTML page (it references only
the local files beside it: PNGs, audio and MIDI, so it opens offline)."""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from cadenza.io import atomic_path
from cadenza.report.document import Section, num


def render_markdown(sections: list[Section], out: Path) -> str:
    lines = ["# Cadenza report", ""]
    for s in sections:
        lines += [f"{'#' * s.level} {s.title}", ""]
        if s.text:
            lines += [s.text, ""]
        if s.items:
            lines += [f"- {item}" for item in s.items] + [""]
        if s.table is not None and s.best is not None:
            cells = _cells(s.table, s.best, lambda text: f"**{text}**")
            lines += [cells.to_markdown(disable_numparse=True, stralign="right"), ""]
        elif s.table is not None:
            shown = s.table.astype(object).where(s.table.notna(), None)  # NaN -> "-"
            lines += [shown.to_markdown(floatfmt=".3f", missingval="-"), ""]
        for f in s.figures:
            lines += [f"![{f.caption}]({_rel(f.png, out)})", ""]
            if f.link:
                lines += [f"MIDI: [{f.link.name}]({_rel(f.link, out)})", ""]
            if f.audio:
                lines += [f"Audio: [{f.audio.name}]({_rel(f.audio, out)})", ""]
    return "\n".join(lines)


def render_html(sections: list[Section], out: Path) -> str:
    body = ["<h1>Cadenza report</h1>"]
    for s in sections:
        body.append(f"<h{s.level}>{html.escape(s.title)}</h{s.level}>")
        if s.text:
            body.append(f"<p>{html.escape(s.text)}</p>")
        if s.items:
            body.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in s.items) + "</ul>")
        if s.table is not None and s.best is not None:
            body.append(_cells(s.table, s.best, lambda text: f"{text} ★").to_html(border=0))
        elif s.table is not None:
            body.append(s.table.to_html(border=0, float_format="{:.3f}".format, na_rep="-"))
        for f in s.figures:
            link = (
                f' <a href="{html.escape(_rel(f.link, out))}">{html.escape(f.link.name)}</a>'
                if f.link
                else ""
            )
            if f.audio:
                link += (
                    f'<br><audio controls preload="none" '
                    f'src="{html.escape(_rel(f.audio, out))}"></audio>'
                )
            body.append(
                f'<figure><img src="{html.escape(_rel(f.png, out))}" '
                f'alt="{html.escape(f.caption)}"><figcaption>'
                f"{html.escape(f.caption)}{link}</figcaption></figure>"
            )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;"
        "text-align:right}tr:nth-child(even){background:#f3f3f3}img{max-width:100%}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Cadenza report</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _cells(table: pd.DataFrame, best: pd.DataFrame, mark: Callable[[str], str]) -> pd.DataFrame:
    """The table as text (3 decimals, "-" for missing), best cells passed through `mark`."""
    text = table.astype(object).map(_fmt)
    marked = best.reindex(index=table.index, columns=table.columns, fill_value=False)
    return text.where(~marked.astype(bool), text.map(mark))


def _fmt(value: object) -> str:
    if isinstance(value, str):
        return value
    number = num(value)
    return "-" if math.isnan(number) else f"{number:.3f}"


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _rel(path: Path, doc: Path) -> str:
    return os.path.relpath(path, doc.parent)
