"""Run notebooks 01-03 in JupyterLab in a real (headless) Chromium and check what a user sees.

    python scripts/browser_check.py [--chromium /usr/bin/chromium] [--out results/runs/browser]

What it needs beyond the pins (not in them: CI does not run it): a Chromium binary (Debian:
`apt-get install chromium`, plus `fonts-noto-cjk` so that Chinese has a font) and the
`playwright` package (`pip install playwright`; its own browser download is not needed, the
script drives the system Chromium). A missing one is an error that says so, never a skip.

The notebooks are copied into the output folder first, so JupyterLab's autosave never rewrites
the tracked files; each copy runs with its own defaults (the parameters cell) in a live kernel,
exactly as "Run All" does for a user. Checked per notebook: every code cell ran, no error
output, no page error or console error in the browser, plots rendered, notebook 03's training
bar rendered, at least MIN_BAR_PX wide and its description on one line, no output wider than
the output area. In notebook 02 also the inspector: the widget fits the output
area, its slider is in view, a slider step re-renders the card. Screenshots and report.json go
to the output folder; exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01_data_exploration", "02_llm_augmentation", "03_training"]

# JavaScript run in the page; `jupyterapp` is exposed by --LabApp.expose_app_in_browser
# the notebook panel of the open path (not currentWidget: a restored workspace may show another)
CURRENT = ("window.jupyterapp && Array.from(window.jupyterapp.shell.widgets('main'))"
           ".find(w => w.context && w.context.path === window.KF_PATH)")
KERNEL_IDLE = f"""() => {{ const w = {CURRENT};
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle'; }}"""
ALL_RAN = f"""() => {{ const w = {CURRENT}; if (!w || !w.content) return false;
  const code = w.content.widgets.filter(c => c.model.type === 'code');
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  return code.every(c => c.model.executionCount !== null) && !!k && k.status === 'idle'; }}"""
SURVEY = f"""() => {{ const w = {CURRENT}; const errors = [];
  for (const c of w.content.widgets.filter(c => c.model.type === 'code')) {{
    const outs = c.model.outputs.toJSON();
    for (const o of outs) if (o.output_type === 'error') errors.push(o.ename + ': ' + o.evalue);
  }}
  const node = w.content.node;
  const wide = [];
  for (const a of node.querySelectorAll('.jp-OutputArea-output')) {{
    // an output may scroll inside itself; what must not happen is the area growing past the page
    const r = a.getBoundingClientRect(), p = a.closest('.jp-OutputArea').getBoundingClientRect();
    if (r.width > p.width + 1) wide.push(Math.round(r.width) + ' px in ' + Math.round(p.width));
  }}
  return {{ cells: w.content.widgets.filter(c => c.model.type === 'code').length, errors, wide,
    images: node.querySelectorAll('.jp-OutputArea-output img').length,
    // tqdm.notebook: an HBox of the description (HTML), the bar (ipywidgets 8: .widget-hprogress)
    // and the counts (HTML); a description that wraps takes the bar's width and the row's height
    bars: Array.from(node.querySelectorAll('.widget-hprogress')).map(bar => {{
      const row = bar.closest('.widget-hbox'), desc = row && row.querySelector('.widget-html-content');
      const line = desc ? parseFloat(getComputedStyle(desc).lineHeight) || 0 : 0;
      return {{ bar_px: Math.round(bar.getBoundingClientRect().width),
        row_px: row ? Math.round(row.getBoundingClientRect().width) : 0,
        desc_lines: desc && line ? Math.round(desc.getBoundingClientRect().height / line) : 0,
        text: row ? row.innerText.replace(/\s+/g, ' ').trim().slice(0, 120) : '' }}; }}),
    han: (node.innerText.match(/[\\u4e00-\\u9fff]/g) || []).length }}; }}"""
INSPECTOR = f"""() => {{ const w = {CURRENT};
  const slider = w.content.node.querySelector('.widget-slider');
  if (!slider) return null;
  const box = slider.closest('.widget-vbox'), area = box.closest('.jp-OutputArea');
  const html = box.querySelector('.widget-html-content');
  const s = slider.getBoundingClientRect(), b = box.getBoundingClientRect(),
        a = area.getBoundingClientRect();
  // what reaches past the widget's right edge without a scroll box of its own between it and
  // the widget is cut off for the user (the cards must scroll, the widget must not)
  let cut = 0;
  for (const e of box.querySelectorAll('*')) {{
    let up = e.parentElement, scrolls = false;
    while (up && up !== box) {{ const o = getComputedStyle(up).overflowX;
      if (o === 'auto' || o === 'scroll') {{ scrolls = true; break; }} up = up.parentElement; }}
    if (!scrolls) cut = Math.max(cut, Math.round(e.getBoundingClientRect().right - b.right));
  }}
  const card = box.querySelector('.widget-html-content table');
  return {{ box: Math.round(b.width), area: Math.round(a.width), cut_px: cut,
    card_px: card ? Math.round(card.scrollWidth) : 0,
    slider_left: Math.round(s.left - a.left), slider_right: Math.round(a.right - s.right),
    text: html ? html.innerText.slice(0, 200) : '' }}; }}"""


# notebooks whose run shows a training progress bar (tqdm), and the narrowest bar that still reads
# as one: a long description squeezes it (ipywidgets lays the row out as one flex box)
BARS = ("03_training",)
MIN_BAR_PX = 120

# --weibo: long microblog posts (up to ~170 characters) with LLM knowledge from the committed
# Weibo K=250 cache, replayed; synthesis off (its labelling run would train first)
WEIBO = {"dataset": "weibo", "k": 250, "max_len": 0, "knowledge": "llm", "llm_replay": True,
         "synthesis": False}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(root: Path, port: int, token: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers: JupyterLab refuses root otherwise
        cmd.append("--allow-root")
    log = open(root.parent / "jupyterlab.log", "w")
    # the kernels import knowfree from this tree, not from wherever the package was installed
    # from (an editable install of another checkout would be checked instead)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    lab = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            return lab
        except OSError:
            if lab.poll() is not None:
                raise SystemExit(f"jupyter lab exited ({lab.returncode}); see {root.parent / 'jupyterlab.log'}")
            time.sleep(1)
    lab.terminate()
    raise SystemExit("jupyter lab did not answer within 120 s")


def check_notebook(page, base: str, token: str, name: str, out: Path, timeout_s: float,
                   steps: int = 0) -> dict:
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.append(f"page error: {e}"))
    # a workspace of its own per notebook, reset: nothing else is restored into the page
    page.goto(f"{base}/lab/workspaces/check-{name[:2]}/tree/{name}.ipynb?reset&token={token}")
    page.wait_for_function("() => !!window.jupyterapp", timeout=120_000)
    page.evaluate(f"() => {{ window.KF_PATH = {json.dumps(name + '.ipynb')}; }}")
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)
    t0 = time.time()
    page.evaluate(f"() => {{ const w = {CURRENT}; window.jupyterapp.shell.activateById(w.id);"
                  " return window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    time.sleep(2)  # the first cell must have started before "all ran" can mean anything
    page.wait_for_function(ALL_RAN, timeout=timeout_s * 1000, polling=1000)
    report = {"notebook": name, "seconds": round(time.time() - t0, 1), **page.evaluate(SURVEY)}
    if name.startswith("02"):
        before = page.evaluate(INSPECTOR)
        report["inspector"] = before
        if before:
            page.locator(".widget-slider .noUi-handle, .widget-slider input").first.focus()
            page.keyboard.press("ArrowRight")
            time.sleep(3)
            after = page.evaluate(INSPECTOR)
            report["inspector_after_step"] = after
            report["inspector_rerendered"] = bool(after) and after["text"] != before["text"]
            # walk on through the sentences: the widest card seen and the worst cut
            widest, worst = 0, after["cut_px"] if after else 0
            for _ in range(steps):
                page.keyboard.press("ArrowRight")
                time.sleep(0.6)
                now = page.evaluate(INSPECTOR)
                widest, worst = max(widest, now["card_px"]), max(worst, now["cut_px"])
            report["inspector_walk"] = {"steps": steps, "widest_card_px": widest, "worst_cut_px": worst}
            if worst > 1:
                report.setdefault("walk_problems", []).append(
                    f"inspector content cut by {worst} px on a later sentence")
            page.locator(".widget-slider").first.scroll_into_view_if_needed()
            page.locator(".widget-slider").first.locator("xpath=ancestor::div[contains(@class,'widget-vbox')][1]") \
                .screenshot(path=str(out / f"{name}.inspector.png"))
    if name in BARS and report["bars"]:
        row = page.locator(".widget-hprogress").first.locator(
            "xpath=ancestor::div[contains(@class,'widget-hbox')][1]")
        row.scroll_into_view_if_needed()
        row.screenshot(path=str(out / f"{name}.bar.png"))
    page.screenshot(path=str(out / f"{name}.png"))
    # console noise JupyterLab itself makes with no network (extension manager, news): kept in
    # the report, not counted
    offline = ("Failed to load resource", "ERR_", "404")
    report["console_errors"] = [c for c in console if not any(o in c for o in offline)]
    report["console_offline_noise"] = len(console) - len(report["console_errors"])
    problems = list(report["errors"]) + [f"output wider than its area: {w}" for w in report["wide"]]
    problems += report["console_errors"] + report.get("walk_problems", [])
    if report["han"] == 0:
        problems.append("no Chinese characters in the outputs")
    if name.startswith("02"):
        ins = report.get("inspector")
        if not ins:
            problems.append("no inspector widget")
        else:
            if ins["box"] > ins["area"] + 1:
                problems.append(f"inspector {ins['box']} px in an area of {ins['area']}")
            if ins["cut_px"] > 1:
                problems.append(f"inspector content cut: {ins['cut_px']} px past its right edge "
                                "outside any scroll box")
            if ins["slider_left"] < 0 or ins["slider_right"] < 0:
                problems.append("inspector slider out of view")
            if not report.get("inspector_rerendered"):
                problems.append("inspector did not re-render on a slider step")
    if name.startswith("03") and report["images"] == 0:
        problems.append("no plot rendered")
    if name in BARS and not report["bars"]:
        problems.append("no progress bar rendered")
    for bar in report["bars"]:
        if bar["bar_px"] < MIN_BAR_PX:
            problems.append(f"progress bar squeezed to {bar['bar_px']} px: {bar['text']}")
        if bar["desc_lines"] > 1:
            problems.append(f"progress bar description wraps onto {bar['desc_lines']} lines: {bar['text']}")
    report["problems"] = problems
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM") or shutil.which("chromium"),
                    help="Chromium binary (default: $CHROMIUM or chromium on PATH)")
    ap.add_argument("--out", default="results/runs/browser", help="screenshots and report.json")
    ap.add_argument("--only", nargs="+", default=NOTEBOOKS, metavar="NOTEBOOK")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per notebook")
    ap.add_argument("--weibo", action="store_true",
                    help="notebook 02 on Weibo K=250 with LLM knowledge replayed from the committed "
                         "cache (long posts) instead of its MSRA defaults; needs the data mirror")
    ap.add_argument("--steps", type=int, default=20, help="inspector sentences to step through")
    args = ap.parse_args(argv)
    if not args.chromium or not Path(args.chromium).exists():
        raise SystemExit("--chromium: no Chromium found (Debian: apt-get install chromium "
                         "fonts-noto-cjk; or pass --chromium PATH)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("playwright is not installed: pip install playwright") from None
    out = (REPO / args.out).resolve()
    root = out / "notebooks"
    root.mkdir(parents=True, exist_ok=True)
    names = [n for n in NOTEBOOKS if any(n == o or n.startswith(o + "_") or n.startswith(o) for o in args.only)]
    for n in names:  # copies: autosave must never touch the tracked notebooks
        if args.weibo and n.startswith("02"):
            import papermill  # parameters injected as papermill would, nothing executed
            papermill.execute_notebook(str(REPO / "notebooks" / f"{n}.ipynb"), str(root / f"{n}.ipynb"),
                                       parameters=WEIBO, prepare_only=True, kernel_name="python3")
        else:
            shutil.copy(REPO / "notebooks" / f"{n}.ipynb", root / f"{n}.ipynb")
    port, token = free_port(), os.urandom(12).hex()
    lab = start_lab(root, port, token)
    reports = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            for n in names:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                reports.append(check_notebook(page, f"http://127.0.0.1:{port}", token, n, out,
                                              args.timeout, args.steps))
                print(f"{n}: {reports[-1]['seconds']:.0f} s, {len(reports[-1]['problems'])} problem(s)"
                      + "".join(f"\n  - {x}" for x in reports[-1]["problems"]), flush=True)
                page.close()
            version = browser.version
            browser.close()
    finally:
        lab.terminate()
        lab.wait(timeout=30)
    (out / "report.json").write_text(json.dumps({"chromium": version, "notebooks": reports},
                                                ensure_ascii=False, indent=1))
    print(f"report: {out / 'report.json'}")
    return 1 if any(r["problems"] for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
