"""The page around the report: its styles for the screen (legible from 1000 px wide) and for
print (landscape A4, the findings alone on page one with the incidents above the timeline, each
dashboard from a new page, no panel split across pages), with everything inline: no script, no
font, nothing fetched."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Final

__all__ = ["CSS", "page"]

CSS: Final = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;background:#f4f5f7;
color:#1f2430}
header{background:#1f2430;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#c7cbd6}
nav{padding:8px 24px;background:#fff;border-bottom:1px solid #dde;position:sticky;top:0;z-index:1}
nav a{margin-right:16px;color:#1f6fd1;text-decoration:none;white-space:nowrap}
main{padding:0 24px 24px;max-width:1400px}
h2{margin:28px 0 8px;font-size:19px}
h3{margin:18px 0 6px;font-size:15px}
h4{margin:18px 0 6px;color:#555;font-size:13px;text-transform:uppercase;letter-spacing:.03em}
.grid-panels{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:12px}
.grid-panels .panel.stat{grid-column:auto}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px}
.panel{background:#fff;border:1px solid #dde;border-radius:4px;padding:10px 12px;overflow-x:auto;
break-inside:avoid;page-break-inside:avoid}
.panel.table{grid-column:1/-1}
.panel h3{margin:0 0 2px;font-size:15px}
.about{margin:0 0 6px;color:#596070;font-size:12.5px}
.figure{font-size:30px;font-weight:600;color:#1f60c4}.figure.few{color:#8a8f99;font-size:22px}.n{color:#666;font-size:12.5px}
svg{display:block;width:100%;height:auto}
svg text{font-size:12px;fill:#4a5060;font-family:inherit}
svg polyline{fill:none;stroke-width:1.8}
svg .grid{stroke:#e6e8ee}svg .axis,svg .tick{stroke:#9aa0ab}
svg .ylab{text-anchor:end}svg .xlab{text-anchor:middle}svg .xtitle{text-anchor:middle;font-weight:600}
svg .ytitle{text-anchor:middle;font-weight:600}
svg .threshold{stroke:#d62d3c;stroke-width:1.4;stroke-dasharray:6 4}
svg .tlabel{text-anchor:end;fill:#d62d3c;font-size:11px}
svg .window{fill:#d62d3c;opacity:.12}svg .wlabel{fill:#b3202e;font-size:11px}
svg .band{fill:#3d9a3d;opacity:.18}svg .one{stroke:#3d9a3d;stroke-width:1}
svg .lane{text-anchor:end;font-size:11px;fill:#1f2430}
svg .change{stroke:#1f6fd1;stroke-dasharray:3 3}svg .changemark{fill:#1f6fd1}
svg .changeno{fill:#fff;text-anchor:middle;font-size:10px;font-weight:700}
svg .open{fill:#fff;text-anchor:end;font-size:10px}
svg.strip{width:180px;min-width:140px}svg.timeline{max-width:820px}
.legend{margin-top:4px}
.legend span{display:inline-block;margin-right:12px;font-size:12.5px;white-space:nowrap}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.legend .note{display:block;color:#596070;white-space:normal}
table{border-collapse:collapse;width:100%;font-size:13px;background:#fff}
th,td{border-bottom:1px solid #e3e5ea;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600}td.num,th.num{text-align:right}td.num{white-space:nowrap}
td.bad{color:#b3202e;font-weight:600}td.few{color:#8a8f99}
table.wide{font-size:12px}table.wide th,table.wide td{padding:3px 4px}
small{color:#666}code{font-size:12px;background:#eef0f4;padding:0 3px;border-radius:2px}
.error{color:#b3202e;font-family:monospace;font-size:12.5px}.empty,.more{color:#777}.ok{color:#2d7a2d}
.findings{background:#fff;border:1px solid #dde;border-radius:4px;padding:4px 16px 12px;margin-top:16px}
.findings h2{margin-top:10px}
.efficiency{background:#fff;border:1px solid #dde;border-radius:4px;padding:4px 16px 12px;margin-top:16px}
.headline{margin:6px 0 4px;padding-left:20px;font-size:15px}
.method{color:#596070;font-size:12.5px;margin:4px 0}
.sev{display:inline-block;padding:0 6px;border-radius:3px;color:#fff;font-size:11.5px;font-weight:600}
.sev.page{background:#d62d3c}.sev.ticket{background:#d98b00}
.changes{margin:4px 0;padding-left:22px;font-size:12.5px;color:#1f6fd1}.changes li{color:#1f2430}
td.when,.episode .when{white-space:nowrap}.episode{line-height:1.35}.limit{float:right;margin-left:8px}
.print{display:none}
@media (min-width:1500px){.pair{display:grid;grid-template-columns:11fr 9fr;gap:16px}}
section.dashboard{break-before:page;page-break-before:always}
@media (max-width:1100px){main{padding:0 12px 16px}.grid-panels{grid-template-columns:1fr 1fr}
.grid-panels{grid-template-columns:repeat(auto-fill,minmax(420px,1fr))}}
@page{size:A4 landscape;margin:8mm 10mm}
@media print{
body{background:#fff;font-size:11px}nav{display:none}header{padding:4px 0;background:#fff;color:#1f2430}
header h1{font-size:14px;display:inline;margin-right:12px}header p{color:#444;display:inline}
main{padding:0;max-width:none}
.findings{border:none;padding:0;margin:0}
.findings h2{margin:0;font-size:15px}.findings h3{margin:5px 0 2px;font-size:12px}
.headline{font-size:11.5px;margin:1px 0}
table{font-size:9.5px}th,td{padding:1px 5px}small{font-size:8.5px}code{font-size:8.5px}
.screen{display:none}.print{display:block}tr.print{display:table-row}.pair svg.timeline{width:88%}
.method,.about,.legend span,.changes{font-size:9px}.changes{margin:2px 0}
.pair{display:flex;flex-direction:column}.pair>div:last-child{order:-1}svg.strip{width:150px;min-width:120px;max-height:16px}
section.details,section.definitions,section.efficiency{break-before:page;page-break-before:always}
.grid-panels{grid-template-columns:1fr 1fr;gap:8px}.findings h3{break-after:avoid}
.stats{grid-template-columns:repeat(6,1fr);gap:6px}
.panel{border-color:#ccc;padding:6px 8px}.figure{font-size:20px}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
"""


def page(title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    """The whole self-contained HTML document."""
    links = "\n".join(f'<a href="#{html.escape(anchor)}">{html.escape(text)}</a>' for anchor, text in nav)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>"
        f"<nav>{links}</nav><main>{body}</main></body></html>\n"
    )
