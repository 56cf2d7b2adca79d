#!/usr/bin/env python3
"""Soak benchmark of the flight recorder (as root, after `swift build -c release`).

Runs `flightbox flight` for --duration under a steady syscall load (getppid at
--rate per second, in bursts every 100 ms) with rotation on, asking for a dump
every --dump-every, and checks:
  - disk: the segments never take more than --max-size plus one segment;
  - memory: the recorder's own memory (anonymous pages: heap and stacks)
    stays flat, the last tenth of the run against the first tenth after
    warm-up; its RSS is reported too, whose growth is the BPF ring's pages
    (--ring-kb, mapped twice) becoming resident as the kernel wraps around it;
  - no event the kernel ring delivered is lost: every segment is read once it
    is closed (each lives --keep, read every 2 s), and the events in all the
    segments ever written add up to the events the recorder says it wrote;
    none is dropped for a full disk, every segment closes cleanly with no gap.
Prints the figures and exits 1 when a check fails.

  scripts/soak-flight.py --duration 30m            # the benchmark
  scripts/soak-flight.py --duration 20s --segment 2s --keep 6s --max-size 8M --rate 50000   # a short run (tests)
"""
import argparse, json, os, shutil, signal, subprocess, sys, threading, time


def seconds(text):
    units = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    for u in sorted(units, key=len, reverse=True):
        if text.endswith(u):
            return float(text[: -len(u)]) * units[u]
    return float(text)


def size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", default="30m")
    p.add_argument("--rate", type=int, default=200_000, help="getppid calls per second")
    p.add_argument("--segment", default="30s")
    p.add_argument("--keep", default="5m")
    p.add_argument("--max-size", default="256M")
    p.add_argument("--dump-every", default="5m")
    p.add_argument("--dir", default="/tmp/flightbox-soak")
    p.add_argument("--bin", default=os.environ.get("FLIGHTBOX_BIN", ".build/release"))
    p.add_argument("--report", help="also write the figures here as JSON")
    a = p.parse_args()
    duration, budget = seconds(a.duration), size(a.max_size)
    flightbox, load = os.path.join(a.bin, "flightbox"), os.path.join(a.bin, "flightbox-load")
    shutil.rmtree(a.dir, ignore_errors=True)
    os.makedirs(a.dir)
    err = open(os.path.join(a.dir, "..", os.path.basename(a.dir) + ".stderr"), "w")
    rec = subprocess.Popen([flightbox, "flight", "--dir", a.dir, "--probes", "process,syscalls", "--segment", a.segment,
                            "--keep", a.keep, "--max-size", a.max_size, "--pre", a.keep if seconds(a.keep) < 10 else "10s", "--post", "2s", "--dump-interval", "1s",
                            "--status-interval", "1s", "--metrics-file", os.path.join(a.dir, "flightbox.prom")],
                           stdout=subprocess.DEVNULL, stderr=err)
    status_path = os.path.join(a.dir, "status.json")
    while not os.path.exists(status_path):
        if rec.poll() is not None:
            sys.exit("flightbox flight exited: see " + err.name)
        time.sleep(0.05)

    stop = threading.Event()
    calls = [0]

    def generate():
        burst = max(1, a.rate // 10)
        next_at = time.monotonic()
        while not stop.is_set():
            subprocess.run([load, "getppid", str(burst)], check=True)
            calls[0] += burst
            next_at += 0.1
            time.sleep(max(0.0, next_at - time.monotonic()))

    loader = threading.Thread(target=generate, daemon=True)
    loader.start()

    def segments():
        return sorted(n for n in os.listdir(a.dir) if n.startswith("seg-") and n.endswith(".fbt"))

    def inspect(path):
        out = subprocess.run([flightbox, "inspect", path, "--format", "json"], capture_output=True, text=True)
        return json.loads(out.stdout) if out.returncode == 0 else None

    counted, problems = {}, []
    max_disk = max_segment = 0
    rss = []
    start = time.monotonic()
    next_dump = start + seconds(a.dump_every)
    while time.monotonic() - start < duration:
        time.sleep(2)
        names = segments()
        sizes = {}
        for n in names:
            try:
                sizes[n] = os.stat(os.path.join(a.dir, n)).st_size
            except FileNotFoundError:
                pass
        max_disk = max(max_disk, sum(sizes.values()))
        max_segment = max([max_segment] + list(sizes.values()))
        # Every segment but the newest is closed: read each once.
        for n in names[:-1]:
            if n in counted:
                continue
            info = inspect(os.path.join(a.dir, n))
            if info is None:
                continue  # removed meanwhile: it is counted as lost below
            counted[n] = info["events"]
            if not info["closed_cleanly"] or info["missing"] or info["problems"]:
                problems.append(f"{n}: closed_cleanly={info['closed_cleanly']} missing={info['missing']} problems={info['problems']}")
        try:
            s = json.load(open(status_path))
            fields = dict(l.split(":", 1) for l in open(f"/proc/{rec.pid}/smaps_rollup").read().splitlines()[1:])
            anon = int(fields["Anonymous"].split()[0]) * 1024
            rss.append((time.monotonic() - start, s["rss_bytes"], anon))
        except (ValueError, OSError, KeyError):
            pass
        if time.monotonic() >= next_dump:
            subprocess.run([flightbox, "dump", "--dir", a.dir, "--reason", "soak"], capture_output=True)
            next_dump += seconds(a.dump_every)
    stop.set()
    loader.join()
    time.sleep(1)
    rec.send_signal(signal.SIGTERM)
    code = rec.wait()
    for n in segments():
        if n not in counted:
            info = inspect(os.path.join(a.dir, n))
            counted[n] = info["events"] if info else 0
            if info and (not info["closed_cleanly"] or info["missing"] or info["problems"]):
                problems.append(f"{n}: {info['problems']}")
    final = json.load(open(status_path))
    numbers = sorted(int(n[4:-4]) for n in counted)
    unseen = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers)) if numbers else []
    def flatness(values):
        tenth = max(1, len(values) // 10)
        return (sorted(values[:tenth])[tenth // 2], sorted(values[-tenth:])[tenth // 2]) if values else (0, 0)
    warm = [(r, a) for t, r, a in rss if t >= min(60, duration / 4)]
    early, late = flatness([a for _, a in warm])
    rss_early, rss_late = flatness([r for r, _ in warm])
    figures = {
        "duration_s": round(time.monotonic() - start, 1), "getppid_calls": calls[0],
        "events_written": final["events"], "events_in_segments": sum(counted.values()),
        "events_per_second": round(final["events"] / max(1e-9, time.monotonic() - start)),
        "kernel_losses": final["losses"], "dropped_for_disk_full": final["dropped_for_disk_full"],
        "segments_written": len(counted), "segments_unseen": len(unseen), "segments_evicted": final["segments_evicted"],
        "max_disk_bytes": max_disk, "max_segment_bytes": max_segment, "budget_bytes": budget,
        "rss_max_bytes": max(r for _, r, _ in rss) if rss else 0, "rss_early_bytes": rss_early, "rss_late_bytes": rss_late,
        "anon_max_bytes": max(a for _, _, a in rss) if rss else 0, "anon_early_bytes": early, "anon_late_bytes": late,
        "dumps_written": final["dumps"]["written"], "recorder_cpu_s": final["cpu_seconds"], "exit_status": code,
    }
    failures = list(problems)
    if code != 0:
        failures.append(f"flightbox flight exited {code}")
    if unseen:
        failures.append(f"segments removed before they were read: {unseen[:5]} (read more often or keep longer)")
    if figures["events_in_segments"] != final["events"]:
        failures.append(f"events written {final['events']} but {figures['events_in_segments']} in the segments")
    if final["dropped_for_disk_full"]:
        failures.append("events dropped for a full disk")
    if max_disk > budget + max_segment:
        failures.append(f"disk {max_disk} over the budget {budget} plus one segment {max_segment}")
    # A short run is all warm-up (detector state, the first dump's buffers): memory is judged from 2 minutes on.
    if duration >= 120 and early and late > early * 1.2 + (8 << 20):
        failures.append(f"anonymous memory grew from {early} to {late}")
    print(json.dumps(figures, indent=1))
    if a.report:
        json.dump(figures, open(a.report, "w"), indent=1)
    for f in failures:
        print("FAIL: " + f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
