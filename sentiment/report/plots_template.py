"""Write an HTML template for `dvc plots show/diff` that renders with no network.

DVC's default page loads vega, vega-lite and vega-embed from a CDN. vl-convert-python ships
those libraries; this inlines its bundle into `.dvc/offline_plots.html` (not committed:
third-party JavaScript is rebuilt from the installed package by `setup.sh`), which
`.dvc/config` names as `plots.html_template`.

    python -m sentiment.report.plots_template
"""

from __future__ import annotations

from pathlib import Path

from sentiment.io import atomic_path

TEMPLATE = Path(".dvc") / "offline_plots.html"

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <script>{bundle}</script>
    <style>table {{ border-spacing: 15px; }}</style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def build(path: Path = TEMPLATE) -> Path:
    import vl_convert

    # DVC's renderer emits Vega-Lite v5 specs; bundle the newest v5 vl-convert offers.
    v5 = sorted(
        (v for v in vl_convert.get_vegalite_versions() if v.startswith("5.")), key=lambda v: [int(x) for x in v.split(".")]
    )
    bundle = vl_convert.javascript_bundle(vl_version=v5[-1] if v5 else None)
    with atomic_path(path) as tmp:
        tmp.write_text(PAGE.format(bundle=bundle.replace("</script>", "<\\/script>")), encoding="utf8")
    return path


if __name__ == "__main__":
    print(f"wrote {build()}")
