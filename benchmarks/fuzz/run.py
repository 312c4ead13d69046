"""Fuzz the command line with bad and degenerate inputs (issue 21).

    python benchmarks/fuzz/run.py [--commands stars,calibrate,...] [--mode fork|exec]
                                  [--timeout 90] [--mem-limit-gb 3] [--out fuzz-out] [--only NAME,...]

Each input (empty files, truncated or absurd FITS, text renamed as images and
videos, a 20000x20000 PNG of ~20 kB, a folder, a missing path, NaN-only and
1x1 images, cubes, corrupt videos, ...) is given to each command, in its own
child process, with a timeout and a resident-memory watchdog. Recorded per run:
exit code, whether stderr holds a Python traceback, stderr lines that are not
skysift's own (library noise), peak resident memory (``ru_maxrss`` of the
child, from ``os.wait4``) and wall time.

``--mode exec`` starts ``python -m skysift ...`` for every run (what a user
runs; ~3 s of imports each); ``--mode fork`` (default) imports skysift once
and forks a child per run that calls :func:`skysift.cli.main` exactly as the
console script does, so a run costs only its own work. Peak memory in fork
mode includes the imported modules (as a fresh process has them too).

Inputs are *bad* (must fail: exit code != 0 and no traceback) or *degenerate*
(a valid but odd image: success or a clean error are both fine).

Printed: counts of tracebacks, exit-0-on-failure (bad input, exit 0), timeouts,
memory kills, library noise, peak memory and the slowest runs. Written under
``--out``: ``runs.ecsv`` (one row per run) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

COMMANDS = ("stars", "calibrate", "streaks", "trails", "bolide", "movers", "dso")
SITE = ["--site", "48.62", "6.08", "250", "--time", "2020-08-12T22:00:00"]
EXTRA = {
    "calibrate": [*SITE, "--no-plot"],
    "bolide": [*SITE, "--fps", "25"],
    "stars": ["--no-plot"],
}


# -- the inputs ------------------------------------------------------------------------------


def _fits_header(cards: dict) -> bytes:
    lines = [f"{k:<8}= {v!s:>20}" for k, v in cards.items()] + ["END"]
    text = "".join(f"{line:<80}" for line in lines)
    return text.encode("ascii").ljust(2880 * (len(text) // 2880 + 1), b" ")


def _png(path: Path, width: int, height: int) -> None:
    """A grey PNG of zeros written by hand: a 20000x20000 one is ~20 kB (zlib of zero rows)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    raw = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    parts = [raw.compress(row) for _ in range(height)] + [raw.flush()]
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def make_inputs(folder: Path) -> list[tuple[str, Path, str]]:
    """(name, path, kind) with kind "bad" (must fail) or "odd" (may succeed)."""
    from astropy.io import fits  # benchmark-only heavy import
    from PIL import Image  # benchmark-only heavy import

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(21)
    out: list[tuple[str, Path, str]] = []

    def add(name: str, kind: str) -> Path:
        path = folder / name
        out.append((name, path, kind))
        return path

    add("empty.fits", "bad").write_bytes(b"")
    add("empty.png", "bad").write_bytes(b"")
    add("zero_length.mp4", "bad").write_bytes(b"")
    good = np.zeros((64, 64), np.float32)
    buf = folder / "_tmp.fits"
    fits.PrimaryHDU(rng.normal(100, 5, (256, 256)).astype(np.float32)).writeto(buf, overwrite=True)
    add("truncated.fits", "bad").write_bytes(buf.read_bytes()[: 2880 + 5000])
    add("absurd_naxis.fits", "bad").write_bytes(
        _fits_header({"SIMPLE": "T", "BITPIX": -64, "NAXIS": 2, "NAXIS1": 200000, "NAXIS2": 200000})
    )
    add("negative_naxis.fits", "bad").write_bytes(
        _fits_header({"SIMPLE": "T", "BITPIX": 16, "NAXIS": 2, "NAXIS1": -5, "NAXIS2": 10})
        + b"\0" * 2880
    )
    add("naxis0.fits", "bad").write_bytes(_fits_header({"SIMPLE": "T", "BITPIX": 8, "NAXIS": 0}))
    fits.BinTableHDU.from_columns(
        [fits.Column(name="x", format="E", array=np.arange(5, dtype=np.float32))]
    ).writeto(add("table_only.fits", "bad"))
    text = b"this is not an image\n" * 50
    for name in ("text.fits", "text.png", "text.jpg", "text.tiff", "text.mp4", "text.avi"):
        add(name, "bad").write_bytes(text)
    add("garbage.fits", "bad").write_bytes(rng.integers(0, 256, 30000, dtype=np.uint8).tobytes())
    _png(add("huge_20000.png", "bad"), 20000, 20000)
    _png(folder / "_small.png", 300, 200)
    png = (folder / "_small.png").read_bytes()
    add("truncated.png", "bad").write_bytes(png[: len(png) // 2])
    Image.fromarray(rng.integers(0, 255, (200, 300), dtype=np.uint8)).save(folder / "_j.jpg")
    jpg = (folder / "_j.jpg").read_bytes()
    add("truncated.jpg", "bad").write_bytes(jpg[: len(jpg) // 3])
    add("empty_dir", "bad").mkdir()
    out.append(("missing.fits", folder / "does_not_exist.fits", "bad"))
    # root reads a mode-000 file anyway: then it is a valid (all-zero) frame
    unreadable = add("unreadable.fits", "odd" if os.geteuid() == 0 else "bad")
    fits.PrimaryHDU(good).writeto(unreadable)
    unreadable.chmod(0)
    (folder / "dangling.fits").symlink_to(folder / "nowhere.fits")
    out.append(("dangling_link.fits", folder / "dangling.fits", "bad"))
    add("corrupt.mp4", "bad").write_bytes(
        b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + rng.bytes(20000)
    )
    fits.PrimaryHDU(np.full((64, 64), np.nan, np.float32)).writeto(add("nan_only.fits", "bad"))
    fits.PrimaryHDU(np.full((64, 64), np.inf, np.float32)).writeto(add("inf_only.fits", "bad"))
    # degenerate but valid: success (no stars) or a clean error
    fits.PrimaryHDU(good).writeto(add("zeros.fits", "odd"))
    fits.PrimaryHDU(np.ones((1, 1), np.float32)).writeto(add("one_pixel.fits", "odd"))
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(add("one_pixel.png", "odd"))
    fits.PrimaryHDU(rng.normal(100, 5, (5, 64, 64)).astype(np.float32)).writeto(
        add("cube3d.fits", "odd")
    )
    fits.PrimaryHDU(np.zeros((2, 3, 16, 16), np.float32)).writeto(add("cube4d.fits", "odd"))
    Image.fromarray(np.zeros((1, 5000), np.uint8)).save(add("strip_1x5000.png", "odd"))
    Image.fromarray(rng.integers(0, 65535, (128, 128), dtype=np.uint16)).save(
        add("noise_16bit.png", "odd")
    )
    Image.fromarray(np.zeros((64, 64, 4), np.uint8), mode="RGBA").save(add("rgba.png", "odd"))
    for tmp in ("_tmp.fits", "_small.png", "_j.jpg"):
        (folder / tmp).unlink()
    return out


# -- one run ---------------------------------------------------------------------------------


def _rss_kb(pid: int) -> int:
    """Resident memory of a process and its children, in kB (0 when gone)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def _child(argv: list[str], stdout: Path, stderr: Path) -> None:
    """In the forked child: run the CLI as the console script does, then _exit."""
    rc = 1
    try:
        out_fd = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        err_fd = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        from skysift.cli import main  # already imported by the parent

        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - an uncaught error is what a user would see
        import traceback

        traceback.print_exc()
        rc = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def run_one(argv: list[str], workdir: Path, *, mode: str, timeout: float, mem_kb: int) -> dict:
    stdout, stderr = workdir / "stdout.txt", workdir / "stderr.txt"
    t0 = time.perf_counter()
    if mode == "fork":
        pid = os.fork()
        if pid == 0:
            _child(argv, stdout, stderr)
    else:
        with stdout.open("wb") as fo, stderr.open("wb") as fe:
            proc = subprocess.Popen(
                [sys.executable, "-m", "skysift", *argv], stdout=fo, stderr=fe, cwd=workdir
            )
        pid = proc.pid
    killed = ""
    peak_seen = 0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        rss = _rss_kb(pid)
        peak_seen = max(peak_seen, rss)
        if not killed and rss > mem_kb:
            killed = "memory"
            os.kill(pid, signal.SIGKILL)
        elif not killed and time.perf_counter() - t0 > timeout:
            killed = "timeout"
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    err = stderr.read_text(errors="replace")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    noise = [
        ln
        for ln in lines
        if not ln.startswith(("skysift:", "Usage:", "Try ", "╭", "│", "╰"))
        and "%|" not in ln  # progress bars
    ]
    return {
        "rc": rc,
        "traceback": "Traceback (most recent call last)" in err,
        "killed": killed,
        "peak_rss_mb": max(usage.ru_maxrss, peak_seen) / 1024,
        "wall_s": wall,
        "noise": noise[0][:160] if noise else "",
        "message": (lines[-1][:200] if lines else ""),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", default="stars,calibrate,streaks,trails,bolide")
    ap.add_argument("--mode", choices=("fork", "exec"), default="fork")
    ap.add_argument("--timeout", type=float, default=90.0)
    ap.add_argument("--mem-limit-gb", type=float, default=3.0)
    ap.add_argument("--only", default="", help="comma-separated input names")
    ap.add_argument("--out", type=Path, default=Path("fuzz-out"))
    args = ap.parse_args()
    commands = [c for c in args.commands.split(",") if c]
    if unknown := set(commands) - set(COMMANDS):
        ap.error(f"unknown commands {sorted(unknown)}; choose from {COMMANDS}")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.mode == "fork":
        import torch  # benchmark-only: one thread, imported before forking

        torch.set_num_threads(1)
        import skysift.cli  # noqa: F401  imported once, before the forks

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="skysift-fuzz-") as tmp:
        tmp = Path(tmp)
        inputs = make_inputs(tmp / "inputs")
        if args.only:
            keep = set(args.only.split(","))
            inputs = [i for i in inputs if i[0] in keep]
        print(f"{len(inputs)} inputs x {len(commands)} commands, mode {args.mode}", flush=True)
        for name, path, kind in inputs:
            for command in commands:
                workdir = tmp / "runs" / f"{command}-{name}"
                workdir.mkdir(parents=True)
                argv = [command, str(path), "--out", str(workdir / "out"), *EXTRA.get(command, [])]
                r = run_one(
                    argv,
                    workdir,
                    mode=args.mode,
                    timeout=args.timeout,
                    mem_kb=int(args.mem_limit_gb * 1024**2),
                )
                r |= {"command": command, "input": name, "kind": kind}
                r["exit0_on_failure"] = kind == "bad" and r["rc"] == 0
                rows.append(r)
                flag = " TRACEBACK" if r["traceback"] else ""
                flag += " EXIT0" if r["exit0_on_failure"] else ""
                flag += f" KILLED({r['killed']})" if r["killed"] else ""
                print(
                    f"{command:9s} {name:22s} rc={r['rc']:4d} {r['wall_s']:6.1f}s "
                    f"{r['peak_rss_mb']:7.0f}MB{flag}  {r['message'][:90]}",
                    flush=True,
                )
    summary = summarise(rows)
    print(json.dumps(summary, indent=1))
    _write(rows, summary, args.out)


def summarise(rows: list[dict]) -> dict:
    slowest = sorted(rows, key=lambda r: -r["wall_s"])[:5]
    biggest = max(rows, key=lambda r: r["peak_rss_mb"])
    huge = [r for r in rows if r["input"] == "huge_20000.png"]
    return {
        "runs": len(rows),
        "tracebacks": sum(r["traceback"] for r in rows),
        "exit0_on_failure": sum(r["exit0_on_failure"] for r in rows),
        "killed_timeout": sum(r["killed"] == "timeout" for r in rows),
        "killed_memory": sum(r["killed"] == "memory" for r in rows),
        "library_noise": sum(bool(r["noise"]) for r in rows),
        "max_rss_mb": round(biggest["peak_rss_mb"]),
        "max_rss_run": f"{biggest['command']} {biggest['input']}",
        "huge_png_max_rss_mb": round(max((r["peak_rss_mb"] for r in huge), default=0)),
        "huge_png_max_wall_s": round(max((r["wall_s"] for r in huge), default=0), 1),
        "slowest": [f"{r['command']} {r['input']} {r['wall_s']:.1f}s" for r in slowest],
        "tracebacks_in": [f"{r['command']} {r['input']}" for r in rows if r["traceback"]],
        "exit0_on_failure_in": [
            f"{r['command']} {r['input']}" for r in rows if r["exit0_on_failure"]
        ],
        "noise_in": [f"{r['command']} {r['input']}: {r['noise']}" for r in rows if r["noise"]],
    }


def _write(rows: list[dict], summary: dict, out: Path) -> None:
    from astropy.table import Table  # benchmark-only heavy import

    from skysift.outputs.files import write_json, write_table

    cols = ["command", "input", "kind", "rc", "traceback", "exit0_on_failure", "killed",
            "peak_rss_mb", "wall_s", "noise", "message"]  # fmt: skip
    write_table(Table(rows=[[r[c] for c in cols] for r in rows], names=cols), out / "runs.ecsv")
    write_json(summary, out / "summary.json")
    print(f"-> {out / 'runs.ecsv'}, {out / 'summary.json'}")


if __name__ == "__main__":
    main()
