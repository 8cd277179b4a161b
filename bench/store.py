#!/usr/bin/env python3
"""What bench/run.sh --store reads around each measured window (see bench/README.md).

  store.py snapshot [--metrics URL] [--database URL] [--postmaster PID] [--after]
      prints one JSON object: the gateway's xgate_audit_batch_entries histogram (from its
      /metrics), the count and entries of the store's audit_blocks (psql), and the CPU ticks
      of every PostgreSQL server process (the postmaster and its children, /proc/<pid>/stat).
      Before a window the database and the gateway are read first and the processes last;
      after it (--after), the processes first, so that neither read falls inside the window.
  store.py window BEFORE AFTER REQUESTS
      prints what happened between two snapshots: the server's ticks (see `server_ticks`),
      the batches committed and their entries by both counts, per request of the window.
  store.py postmaster DATABASE_URL
      prints the postmaster's pid (from the data directory's postmaster.pid), or nothing.
"""

import json
import os
import subprocess
import sys
import urllib.request


def stat_fields(pid):
    """Fields 4 onwards of /proc/<pid>/stat (after the name), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def server_processes(postmaster):
    """{pid: [utime + stime, cutime + cstime, ppid]} of the postmaster and its children."""
    processes = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = stat_fields(name)
        if fields is None:
            continue
        # fields[0] is field 3 (state): field N is fields[N - 3].
        ppid = int(fields[4 - 3])
        pid = int(name)
        if pid == postmaster or ppid == postmaster:
            own = int(fields[14 - 3]) + int(fields[15 - 3])
            children = int(fields[16 - 3]) + int(fields[17 - 3])
            processes[str(pid)] = [own, children, ppid]
    return processes


def batch_histogram(url):
    """The xgate_audit_batch_entries histogram: sum, count, cumulative buckets by bound."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    histogram = {"sum": 0.0, "count": 0, "buckets": {}}
    for line in text.splitlines():
        if line.startswith("xgate_audit_batch_entries_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            histogram["buckets"][bound] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("xgate_audit_batch_entries_sum"):
            histogram["sum"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("xgate_audit_batch_entries_count"):
            histogram["count"] = int(float(line.rsplit(" ", 1)[1]))
    return histogram


def psql(url, query):
    result = subprocess.run(["psql", "-X", "-At", "-d", url, "-c", query], capture_output=True,
                            text=True, check=True)
    return result.stdout.strip()


def audit_blocks(url):
    row = psql(url, "SELECT count(*), coalesce(sum(last_sequence - first_sequence + 1), 0) FROM audit_blocks")
    count, entries = row.split("|")
    return {"count": int(count), "entries": int(entries)}


def snapshot(arguments):
    options = {"--metrics": None, "--database": None, "--postmaster": None}
    after = False
    index = 0
    while index < len(arguments):
        if arguments[index] == "--after":
            after = True
            index += 1
        else:
            options[arguments[index]] = arguments[index + 1]
            index += 2
    result = {}

    def outside():
        if options["--database"]:
            result["blocks"] = audit_blocks(options["--database"])
        if options["--metrics"]:
            result["batches"] = batch_histogram(options["--metrics"])

    def processes():
        if options["--postmaster"]:
            result["postmaster"] = options["--postmaster"]
            result["server"] = server_processes(int(options["--postmaster"]))

    if after:
        processes()
        outside()
    else:
        outside()
        processes()
    print(json.dumps(result))


def server_ticks(before, after, postmaster):
    """The server's CPU ticks in the window, every process counted:

    - a process in both snapshots: its own ticks' growth;
    - one that appeared: all its ticks;
    - one that exited (reaped by the postmaster, which then counts it in its children's ticks):
      the growth of the postmaster's children's ticks, less what the exited ones had before
      (which that growth includes). Processes that came and went inside the window are in it too.
    """
    ticks = 0
    for pid, (own, _, _) in after.items():
        ticks += own - before[pid][0] if pid in before else own
    exited = [pid for pid in before if pid not in after]
    if postmaster in before and postmaster in after:
        ticks += after[postmaster][1] - before[postmaster][1]
        ticks -= sum(before[pid][0] for pid in exited)
    appeared = [pid for pid in after if pid not in before]
    return ticks, len(before), len(after), len(appeared), len(exited)


def window(before_path, after_path, requests):
    before = json.load(open(before_path))
    after = json.load(open(after_path))
    requests = int(requests)
    result = {}
    if "server" in before and "server" in after:
        ticks, n_before, n_after, appeared, exited = server_ticks(before["server"], after["server"],
                                                                  before["postmaster"])
        clk_tck = os.sysconf("SC_CLK_TCK")
        result["db_ticks"] = ticks
        result["db_us_per_request"] = ticks / clk_tck / requests * 1e6 if requests else None
        result["db_processes"] = {"before": n_before, "after": n_after, "appeared": appeared, "exited": exited}
    if "batches" in before and "batches" in after:
        b, a = before["batches"], after["batches"]
        count = a["count"] - b["count"]
        entries = a["sum"] - b["sum"]
        cumulative = {bound: a["buckets"][bound] - b["buckets"].get(bound, 0) for bound in a["buckets"]}
        result["batches"] = count
        result["batch_entries"] = entries
        result["mean_batch"] = entries / count if count else None
        result["batch_buckets"] = cumulative
    if "blocks" in before and "blocks" in after:
        result["db_blocks"] = after["blocks"]["count"] - before["blocks"]["count"]
        result["db_block_entries"] = after["blocks"]["entries"] - before["blocks"]["entries"]
    print(json.dumps(result))


def postmaster(url):
    directory = psql(url, "SHOW data_directory")
    try:
        with open(os.path.join(directory, "postmaster.pid")) as pid_file:
            print(pid_file.readline().strip())
    except OSError:
        pass


if __name__ == "__main__":
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "snapshot":
        snapshot(rest)
    elif command == "window":
        window(*rest)
    elif command == "postmaster":
        postmaster(*rest)
    else:
        sys.exit(f"unknown command {command}")
