#!/usr/bin/env python3
"""Run every snippet of docs/tables.md against a fresh run of the demo; exit 1 on the first failure.

Run it by hand: CI has no Python, so it does not run this script. It needs pyarrow, pandas, polars and
duckdb, and a built saeflow (`cargo build` first, or pass --saeflow PATH):

    python scripts/check_readers.py [--saeflow PATH] [--keep]

It runs pipelines/demo.yaml into a temporary cache (the demo's report stage rewrites reports/demo/, as any
demo run does), exports every table with `saeflow export pipelines/demo.yaml '*' --to EXPORT`, then executes
each ```python block of the page in order, in one namespace where SAEFLOW, PIPELINE, CACHE and EXPORT are
set. A block whose first line is `# not run` is skipped. A block's last line, when it is an expression, is
its result and is printed, as in a notebook.
"""

import argparse
import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "tables.md"
PIPELINE = "pipelines/demo.yaml"
RESULT_LINES = 40  # print at most this many lines of a block's result


def default_saeflow():
    for build in ("debug", "release"):
        exe = ROOT / "target" / build / ("saeflow.exe" if os.name == "nt" else "saeflow")
        if exe.is_file():
            return str(exe)
    return shutil.which("saeflow") or "saeflow"


def blocks(text):
    """(line of the first code line, code) for every ```python block, in order."""
    out = []
    for m in re.finditer(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, re.S | re.M):
        out.append((text.count("\n", 0, m.start(1)) + 1, m.group(1)))
    return out


def run_block(code, line, namespace):
    """Execute one block; return the value of its last line when that is an expression, else None."""
    tree = ast.parse("\n" * (line - 1) + code, filename=str(PAGE))  # errors name the page's lines
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, str(PAGE), "exec"), namespace)
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), str(PAGE), "eval"), namespace)


def show(value):
    if value is None:
        return
    lines = str(value).splitlines()
    if len(lines) > RESULT_LINES:
        lines = lines[:RESULT_LINES] + [f"… ({len(lines) - RESULT_LINES} more lines)"]
    print("\n".join("    " + l for l in lines))


def saeflow(exe, *args):
    print("$ saeflow " + shlex.join(args), flush=True)
    try:
        done = subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True)
    except OSError as e:
        sys.exit(f"check_readers: cannot run {exe}: {e} (build it, or pass --saeflow PATH)")
    if done.returncode != 0:
        sys.stdout.write(done.stdout[-4000:])
        sys.stdout.write(done.stderr[-4000:])
        sys.exit(f"check_readers: `saeflow {shlex.join(args)}` exited {done.returncode}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--saeflow", default=default_saeflow(), help="the saeflow binary (default: target/debug/saeflow)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary cache and export, and print where")
    args = ap.parse_args()

    import duckdb
    import pandas
    import polars
    import pyarrow

    print(f"python {sys.version.split()[0]}, pyarrow {pyarrow.__version__}, pandas {pandas.__version__}, "
          f"polars {polars.__version__}, duckdb {duckdb.__version__}")
    exe = str(Path(args.saeflow).resolve()) if os.sep in args.saeflow else args.saeflow
    tmp = Path(tempfile.mkdtemp(prefix="saeflow-readers-"))
    cache, export = tmp / "cache", tmp / "export"
    try:
        t0 = time.monotonic()
        saeflow(exe, "run", PIPELINE, "--cache", str(cache))
        saeflow(exe, "export", PIPELINE, "*", "--to", str(export), "--cache", str(cache))
        print(f"demo run and exported in {time.monotonic() - t0:.1f} s\n")

        namespace = {"__name__": "__tables__", "SAEFLOW": exe, "PIPELINE": PIPELINE,
                     "CACHE": str(cache), "EXPORT": str(export)}
        found = blocks(PAGE.read_text(encoding="utf-8"))
        ran = skipped = 0
        os.chdir(ROOT)  # the page's relative paths (PIPELINE) are the repository's
        for line, code in found:
            first = code.lstrip().splitlines()[0].strip() if code.strip() else ""
            where = f"{os.path.relpath(PAGE, ROOT)}:{line}"
            if first == "# not run":
                print(f"--- {where}: skipped (# not run)")
                skipped += 1
                continue
            print(f"--- {where}")
            t = time.monotonic()
            try:
                value = run_block(code, line, namespace)
            except Exception:
                traceback.print_exc(file=sys.stdout)
                print(f"\nFAIL: the block at {where} failed ({ran} of {len(found) - skipped} blocks passed before it)")
                return 1
            show(value)
            print(f"    ok ({time.monotonic() - t:.2f} s)")
            ran += 1
        if ran == 0:
            print(f"FAIL: no ```python block in {PAGE}")
            return 1
        print(f"\nOK: {ran} blocks ran, {skipped} skipped (# not run)")
        return 0
    finally:
        if args.keep:
            print(f"kept {tmp} (CACHE={cache}, EXPORT={export})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
