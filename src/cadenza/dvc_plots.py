"""`dvc plots show` / `dvc plots diff` pages that render offline.

DVC's HTML page loads vega, vega-lite and vega-embed from a CDN, so without internet it is
blank. vl-convert ships the three libraries as one JavaScript bundle; inlined into an HTML
template (DVC's `--html-template`, with the `{plot_divs}` placeholder and no `{scripts}`, so
no CDN tags are added) the page works from disk. The template is committed (`.dvc/config`
points `plots.html_template` at it, so plain `dvc plots show` and `dvc plots diff` use it in
any clone) and rebuilt from the pinned vl-convert by `python -m cadenza.dvc_plots`.
"""

from __future__ import annotations

from pathlib import Path

from cadenza.dvc_cli import run_dvc_shown

TEMPLATE = Path(__file__).parent / "assets" / "dvc_plots_offline.html"
TEMPLATE_HEAD = "<!doctype html><html><head><meta charset='utf-8'><title>Cadenza plots</title>"


def offline_template_html() -> str:
    """The template: vl-convert's bundle of the three libraries, inlined (about 900 KB). Its
    default snippet makes `vegaEmbed` a global, which DVC's `vegaEmbed('#id', spec)` calls;
    vega-embed draws SVG, so the marks are in the DOM."""
    import vl_convert  # only to rebuild the template: bundling takes seconds

    # None: the default snippet (the stub, unlike the function, wants a str)
    bundle = vl_convert.javascript_bundle(None)  # type: ignore[arg-type]
    return f"{TEMPLATE_HEAD}<script>{bundle}</script></head><body>{{plot_divs}}</body></html>\n"


def show(
    project: Path, out: Path, revs: list[str] | None = None, template: Path = TEMPLATE
) -> Path:
    """`dvc plots show`, or with `revs` `dvc plots diff REV...` (one revision: against the
    workspace), with the offline template, also in a project without the config; returns
    the page it wrote. Raises DvcError (DVC has printed why) when DVC fails."""
    command = ["diff", *revs] if revs else ["show"]
    run_dvc_shown(
        project,
        "plots",
        *command,
        "--html-template",
        str(template.resolve()),
        "-o",
        str(out.resolve()),
    )
    return out / "index.html"


if __name__ == "__main__":
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    TEMPLATE.write_text(offline_template_html())
    print(f"wrote {TEMPLATE}")
