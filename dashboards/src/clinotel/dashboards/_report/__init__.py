"""The offline report's parts: number formats, human labels, statistics, SVG charts, the
findings' own queries and the page. `clinotel.dashboards.report` puts them together."""
