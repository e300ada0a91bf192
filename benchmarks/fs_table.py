"""Overwriting dumps on real filesystems: joblib, pickle and fastjoblib (default and durable=True)
on ext4, xfs and btrfs loop mounts, plus the default temp directory and /dev/shm (tmpfs).

    sudo python benchmarks/fs_table.py                       # 256 MiB array, 100-tree forest
    sudo python benchmarks/fs_table.py --runs 9 --fs ext4,xfs --workloads big_array
    python benchmarks/fs_table.py --fs tmp,tmpfs              # no root needed: no loop mounts

As root, for each of ext4, xfs and btrfs the script creates a sparse image file (--image-dir,
default /var/tmp; --image-gib, default 4), formats it with Debian's mkfs.ext4 / mkfs.xfs /
mkfs.btrfs (packages e2fsprogs, xfsprogs, btrfs-progs) with their default options, attaches it
to a loop device with direct I/O (losetup --direct-io=on: the loop filesystem's writeback goes to
the disk, not into a second page cache over the image file, which made timings erratic), mounts
it, runs the workloads there, then unmounts it, detaches the loop device and deletes the image,
whatever happens (SIGINT and SIGTERM included). Without root
or without a mkfs tool that filesystem is skipped with a message. "tmp" is the default temp dir
(tempfile.gettempdir(), whatever filesystem that is: printed), "tmpfs" is /dev/shm.

Method:
* Every contender has its own file and overwrites it each round, as a training script overwrites
  its checkpoint. Before each timed dump the script calls sync() (untimed): the previous file has
  been written back, as it would have been after minutes of training (the kernel writes dirty
  pages back after 30 s). So no contender pays for another's writeback. --pause S then sleeps S
  seconds (untimed), as training does between checkpoints: on a VM whose host takes back free
  guest memory (free page reporting; this project's machine), memory freed before the pause is
  no longer the guest's, and a dump that needs fresh pages pays host page faults.
* Rounds: --runs (default 7); each round runs every contender once, in an order rotated from
  round to round. Cells are medians (wall clock, time.perf_counter); ratios are of medians.
* "raw new file" is the floor: unlink the previous file, then one write(2) of fastjoblib's own
  output bytes to a new file (same bytes, no pickling, no atomic replace).
* "fastjoblib rename" is fastjoblib with the exchange disabled (the plain rename over the old file
  that every dump used before the exchange, and the fallback where the exchange is unavailable).
* Compressed cases: fastjoblib and joblib only, with the same compressor.
* convert: `python -m fastjoblib convert IN OUT --compress zlib` over an existing OUT, in process
  (fastjoblib._cli.main), against joblib.load + joblib.dump of the same object.
"""
import argparse
import gc
import os
import pickle
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import workloads as W  # noqa: E402
from ratios import fstype  # noqa: E402

MiB = 1 << 20
LOOP_FS = {"ext4": ["mkfs.ext4", "-q", "-F"], "xfs": ["mkfs.xfs", "-q", "-f"],
           "btrfs": ["mkfs.btrfs", "-q", "-f"]}


# ---------------------------------------------------------------------------------------------
# where the files go


class LoopMount:
    """A sparse image formatted as `fs` on a loop device (direct I/O to the image file, so that
    the loop filesystem's writeback is real disk I/O, not a second page cache), mounted on a fresh
    directory; all undone on exit."""

    def __init__(self, fs, image_dir, gib):
        self.fs, self.image_dir, self.gib = fs, image_dir, gib
        self.image = self.mnt = self.dev = None
        self.mounted = False

    def __enter__(self):
        try:
            fd, self.image = tempfile.mkstemp(prefix="fastjoblib-%s-" % self.fs, suffix=".img",
                                              dir=self.image_dir)
            os.ftruncate(fd, self.gib << 30)
            os.close(fd)
            subprocess.run(LOOP_FS[self.fs] + [self.image], check=True, capture_output=True)
            res = subprocess.run(["losetup", "--direct-io=on", "-f", "--show", self.image],
                                 check=True, capture_output=True, text=True)
            self.dev = res.stdout.strip()
            self.mnt = tempfile.mkdtemp(prefix="fastjoblib-%s-mnt-" % self.fs)
            subprocess.run(["mount", self.dev, self.mnt], check=True, capture_output=True)
            self.mounted = True
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.mnt

    def __exit__(self, *exc):
        if self.mounted:
            subprocess.run(["umount", self.mnt], check=False, capture_output=True)
            self.mounted = False
        if self.dev:
            subprocess.run(["losetup", "-d", self.dev], check=False, capture_output=True)
            self.dev = None
        if self.mnt and os.path.isdir(self.mnt):
            try:
                os.rmdir(self.mnt)
            except OSError:
                pass
        if self.image and os.path.exists(self.image):
            os.unlink(self.image)
        return False


def loop_unavailable(fs):
    if os.geteuid() != 0:
        return "not root (loop mounts need root)"
    if shutil.which(LOOP_FS[fs][0]) is None:
        pkg = {"ext4": "e2fsprogs", "xfs": "xfsprogs", "btrfs": "btrfs-progs"}[fs]
        return "%s not found (apt-get install %s)" % (LOOP_FS[fs][0], pkg)
    return None


# ---------------------------------------------------------------------------------------------
# contenders: name -> dump(obj, path)


PAUSE = 0.0  # --pause: seconds of sleep (untimed) before each timed dump, after the sync


def _pickle5(obj, path):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=5)


def _no_exchange(a, b):
    raise OSError(22, "exchange disabled by fs_table.py")


def contenders(compress):
    import fastjoblib
    import joblib
    from fastjoblib import _target

    arg = 0 if compress == "none" else compress

    def fj(obj, path):
        fastjoblib.dump(obj, path, compress=arg)

    def fj_durable(obj, path):
        fastjoblib.dump(obj, path, compress=arg, durable=True)

    def fj_rename(obj, path):
        saved = _target._exchange
        _target._exchange = _no_exchange
        try:
            fastjoblib.dump(obj, path, compress=arg)
        finally:
            _target._exchange = saved

    def jl(obj, path):
        joblib.dump(obj, path, compress=arg)

    out = [("joblib", jl)]
    if compress == "none":
        out.append(("pickle-5", _pickle5))
    out += [("fastjoblib", fj), ("fastjoblib durable", fj_durable),
            ("fastjoblib rename", fj_rename)]
    return out


def _raw_new(data):
    def dump(obj, path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:])
        finally:
            os.close(fd)
    return dump


def time_case(obj, compress, directory, runs):
    import fastjoblib

    probe = os.path.join(directory, "probe.bin")
    fastjoblib.dump(obj, probe, compress=0 if compress == "none" else compress)
    with open(probe, "rb") as f:
        data = f.read()
    os.unlink(probe)
    cons = contenders(compress) + [("raw new file", _raw_new(data))]
    paths = {name: os.path.join(directory, "c%d.bin" % i) for i, (name, _) in enumerate(cons)}
    for name, dump in cons:  # the file every round overwrites
        dump(obj, paths[name])
    times = {name: [] for name, _ in cons}
    for rnd in range(runs):
        k = rnd % len(cons)
        for name, dump in cons[k:] + cons[:k]:
            os.sync()
            gc.collect()
            if PAUSE:
                time.sleep(PAUSE)
            t0 = time.perf_counter()
            dump(obj, paths[name])
            times[name].append(time.perf_counter() - t0)
    for p in paths.values():
        os.unlink(p)
    os.sync()
    leftovers = [n for n in os.listdir(directory) if n.endswith(".fjtmp")]
    assert not leftovers, leftovers
    return {name: statistics.median(v) for name, v in times.items()}, len(data), times


def time_convert(obj, directory, runs):
    """fastjoblib convert IN OUT --compress zlib over an existing OUT vs joblib load + dump."""
    import fastjoblib
    import joblib
    from fastjoblib import _cli

    src = os.path.join(directory, "convert-in.pkl")
    joblib.dump(obj, src)
    outs = {"joblib load+dump": os.path.join(directory, "convert-jl.pkl"),
            "fastjoblib convert": os.path.join(directory, "convert-fj.pkl"),
            "fastjoblib convert --durable": os.path.join(directory, "convert-fjd.pkl")}

    def jl(out):
        joblib.dump(joblib.load(src), out, compress="zlib")

    def fj(out, durable=False):
        args = ["convert", src, out, "--compress", "zlib"] + (["--durable"] if durable else [])
        with open(os.devnull, "w") as sink:
            if _cli.main(args, out=sink) != 0:
                raise RuntimeError("convert failed")

    cons = [("joblib load+dump", jl), ("fastjoblib convert", fj),
            ("fastjoblib convert --durable", lambda out: fj(out, durable=True))]
    for name, f in cons:
        f(outs[name])
    times = {name: [] for name, _ in cons}
    for rnd in range(runs):
        k = rnd % len(cons)
        for name, f in cons[k:] + cons[:k]:
            os.sync()
            gc.collect()
            if PAUSE:
                time.sleep(PAUSE)
            t0 = time.perf_counter()
            f(outs[name])
            times[name].append(time.perf_counter() - t0)
    size = os.path.getsize(outs["fastjoblib convert"])
    for p in list(outs.values()) + [src]:
        os.unlink(p)
    return {name: statistics.median(v) for name, v in times.items()}, size


# ---------------------------------------------------------------------------------------------
# report


CASES = {  # name -> (workload builder, scale, compressors)
    "big_array": (W.big_array, 0.5, ["none", "lz4"]),          # 256 MiB float64
    "random_forest": (W.random_forest, 0.5, ["none", "zlib"]),  # 100 trees
}


def _ms(t):
    return "%.0f" % (t * 1e3) if t >= 0.1 else "%.1f" % (t * 1e3)


def _x(a, b):
    return "%.2fx" % (a / b) if a and b else "n/a"


def report(rows, runs):
    lines = ["| fs | workload | compress | MiB | joblib ms | pickle-5 ms | fastjoblib ms | "
             "durable=True ms | rename (before) ms | raw new file ms | x joblib | x pickle-5 | "
             "/ raw new file | durable x joblib |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for fs, wl, compress, t, size in rows:
        fj = t.get("fastjoblib") or t.get("fastjoblib convert")
        jl = t.get("joblib") or t.get("joblib load+dump")
        dur = t.get("fastjoblib durable") or t.get("fastjoblib convert --durable")
        pk = t.get("pickle-5")
        rn = t.get("fastjoblib rename")
        raw = t.get("raw new file")
        lines.append("| %s | %s | %s | %.1f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            fs, wl, compress, size / MiB, _ms(jl), _ms(pk) if pk else "", _ms(fj), _ms(dur),
            _ms(rn) if rn else "", _ms(raw) if raw else "", _x(jl, fj),
            _x(pk, fj) if pk else "", "%.2f" % (fj / raw) if raw and compress == "none" else "",
            _x(jl, dur)))
    lines.append("")
    lines.append("Medians of %d interleaved rounds, each dump over the contender's file of the "
                 "previous round, sync() before each timed dump (untimed)%s. x joblib / x pickle-5: "
                 "their time / fastjoblib's (> 1: fastjoblib faster). / raw new file: "
                 "fastjoblib's time / a plain write of its bytes to a new file (1 = the floor; "
                 "uncompressed rows only). "
                 "convert rows: `convert --compress zlib` vs joblib.load + joblib.dump."
                 % (runs, ", then a %g s pause" % PAUSE if PAUSE else ""))
    return "\n".join(lines)


def run_fs(label, directory, names, runs, convert, rows, say, factor=1.0):
    say("## %s: %s (%s)" % (label, directory, fstype(directory)))
    for wl in names:
        build, scale, codecs = CASES[wl]
        obj = build(scale * factor)
        for compress in codecs:
            t0 = time.perf_counter()
            times, size, every = time_case(obj, compress, directory, runs)
            rows.append((label, wl, compress, times, size))
            say("   %s %s: %s (%.0f s)" % (wl, compress, ", ".join(
                "%s %s ms" % (n, _ms(v)) for n, v in times.items()), time.perf_counter() - t0))
            say("      all rounds (ms): " + "; ".join(
                "%s %s" % (n, " ".join(_ms(x) for x in v)) for n, v in every.items()))
        if convert and wl == "random_forest":
            times, size = time_convert(obj, directory, runs)
            rows.append((label, wl, "convert zlib", times, size))
            say("   %s convert: %s" % (wl, ", ".join("%s %s ms" % (n, _ms(v))
                                                       for n, v in times.items())))
        del obj
        gc.collect()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fs", default="ext4,xfs,btrfs,tmp,tmpfs",
                   help="among ext4, xfs, btrfs (loop mounts, root), tmp (default temp dir), "
                        "tmpfs (/dev/shm)")
    p.add_argument("--workloads", default=",".join(CASES))
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--image-dir", default="/var/tmp", help="where the loop images go")
    p.add_argument("--image-gib", type=int, default=4, help="sparse image size (GiB)")
    p.add_argument("--scale", type=float, default=1.0, help="size factor (smoke tests)")
    p.add_argument("--no-convert", action="store_true", help="skip the convert rows")
    p.add_argument("--pause", type=float, default=0, metavar="S",
                   help="sleep S seconds (untimed) before each timed dump, as a training script "
                        "does between checkpoints (on a VM with free page reporting, memory freed "
                        "before the pause has gone back to the host)")
    p.add_argument("--warm-ram", type=float, default=0, metavar="GIB",
                   help="touch this much fresh memory once before measuring (a VM whose memory "
                        "the host backs lazily stalls on first-touched pages; see workloads.py)")
    args = p.parse_args(argv)
    # SIGTERM / SIGINT (also when started in the background) unwind, so the mounts are undone
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    names = [w for w in args.workloads.split(",") if w]
    for w in names:
        if w not in CASES:
            p.error("unknown workload %r (known: %s)" % (w, ", ".join(CASES)))

    def say(s):
        print(s, file=sys.stderr, flush=True)

    global PAUSE
    PAUSE = args.pause
    W.warm_ram(args.warm_ram, say)
    rows = []
    for fs in [f for f in args.fs.split(",") if f]:
        if fs in LOOP_FS:
            why = loop_unavailable(fs)
            if why:
                say("## %s: skipped: %s" % (fs, why))
                continue
            with LoopMount(fs, args.image_dir, args.image_gib) as mnt:
                run_fs(fs + " (loop)", mnt, names, args.runs, not args.no_convert, rows, say,
                       args.scale)
        elif fs in ("tmp", "tmpfs"):
            base = tempfile.gettempdir() if fs == "tmp" else "/dev/shm"
            with tempfile.TemporaryDirectory(prefix="fastjoblib-fs-", dir=base) as d:
                run_fs("%s %s" % (fstype(d), base), d, names, args.runs, not args.no_convert,
                       rows, say, args.scale)
        else:
            p.error("unknown filesystem %r" % fs)
    print(report(rows, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
