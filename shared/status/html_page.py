"""What the operator pages share: escaping, badges and one stylesheet, no script.

The pages (status, a run, the run history) are static HTML under a CSP that forbids
scripts and every external load (``handlers/status.py``), so layout is plain CSS: a
fixed-layout table at 100% of a body at most 1280 px wide, long values wrapping inside
their cell, dates and versions never wrapping (``.nw``), long reasons behind
``<details>``. Every value is escaped here, by :func:`e`; nothing else builds text.
"""

from __future__ import annotations

import html

EMPTY = "\u2014"  # an em dash for "no value"

STYLE = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 0 auto; padding: 1rem; max-width: 1280px;
       color: #222; font-size: 14px; }
h1 { font-size: 1.4rem; margin: 0.2rem 0 0.6rem; }
h2 { font-size: 1.1rem; margin: 1.2rem 0 0.4rem; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; margin-bottom: 1rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.4rem; text-align: left;
         vertical-align: top; overflow-wrap: anywhere; }
th { background: #f3f3f3; font-weight: 600; }
tr.first td { border-top: 2px solid #bbb; }
.mono { font-family: ui-monospace, monospace; font-size: 0.85em; }
.nw { white-space: nowrap; }
.muted { color: #666; }
.small { font-size: 0.85em; }
.badge { display: inline-block; padding: 0.05rem 0.4rem; margin: 0 0.2rem 0.2rem 0;
         border-radius: 0.6rem; font-size: 0.8em; font-weight: 600; white-space: nowrap;
         border: 1px solid transparent; }
.b-failed, .b-run-failed, .b-expired { background: #f8d7da; color: #842029;
                                       border-color: #f1aeb5; }
.b-backoff, .b-expiring, .b-problem { background: #fff3cd; color: #664d03;
                                      border-color: #ffe69c; }
.b-drift { background: #cfe2ff; color: #052c65; border-color: #9ec5fe; }
.b-unmanaged { background: #e2e3e5; color: #2b2f32; border-color: #c4c8cb; }
.b-ok { background: #d1e7dd; color: #0a3622; border-color: #a3cfbb; }
.tiles { display: flex; flex-wrap: wrap; gap: 0.5rem; margin: 0.6rem 0 1rem; }
.tile { flex: 1 1 8rem; border: 1px solid #ddd; border-radius: 0.4rem; padding: 0.4rem 0.6rem; }
.tile .n { font-size: 1.6rem; font-weight: 700; display: block; }
.tile.hot { border-width: 2px; }
.tile.b-failed.hot, .tile.b-expired.hot { border-color: #842029; }
details summary { cursor: pointer; }
pre { background: #f6f6f6; padding: 0.5rem; overflow-x: auto; white-space: pre-wrap;
      overflow-wrap: anywhere; }
dl.kv { display: grid; grid-template-columns: 10rem 1fr; gap: 0.2rem 0.8rem; }
dl.kv dt { font-weight: 600; }
dl.kv dd { margin: 0; overflow-wrap: anywhere; }
"""


def e(value: object) -> str:
    """``value`` escaped for text and attribute values; a dash when there is none."""
    return EMPTY if value is None or value == "" else html.escape(str(value), quote=True)


def badge(css: str, text: str) -> str:
    return f'<span class="badge b-{e(css)}">{e(text)}</span>'


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


def table(headers: list[tuple[str, str]], rows: list[str], empty: str) -> str:
    """A table whose columns have the given widths (``("Name", "12%")``)."""
    if not rows:
        return f'<p class="muted">{e(empty)}</p>'
    cols = "".join(f'<col style="width:{w}">' for _, w in headers)
    head = "".join(f"<th>{e(h)}</th>" for h, _ in headers)
    return (
        f"<table><colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def moment(iso: object) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS`` that never wraps mid-value."""
    text = str(iso or "")
    if not text:
        return EMPTY
    return f'<span class="nw" title="{e(text)}">{e(text[:19].replace("T", " "))}</span>'
