#!/usr/bin/python3
"""bpfgraft-exporter scraped by a real Prometheus (Debian's package) on
127.0.0.1 every second, for a short fixed window (until the values below
arrive, 30 s at most): the malloc sample's counter after an exact number
of calls, read back through Prometheus's HTTP API; the funclatency
sample's log2 histogram (cumulative buckets, _sum, _count) after an exact
number of calls; the runtime's own metrics; `promtool check metrics` on
the exporter's output; the exporter's --object/--attach undone at exit;
bad configs refused naming the line."""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))  # bpfgraft_client
from harness import Server, check, check_eq, finish, report, skip  # noqa: E402

MALLOC_CALLS = 80       # malloc-victim N: N mallocs, < 100 so it prints nothing (no stdio buffer malloc)
FUNCLATENCY_CALLS = 200  # funclatency-victim N: N work_unit() calls
WINDOW_S = 30


def parse_args():
    ap = argparse.ArgumentParser()
    for name in ("--bin-dir", "--bpf-dir", "--samples"):
        ap.add_argument(name, required=True)
    a = ap.parse_args()
    for k in ("bin_dir", "bpf_dir", "samples"):
        setattr(a, k, os.path.abspath(getattr(a, k)))
    return a


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


class Exporter:
    """bpfgraft-exporter on 127.0.0.1 (a port it picks), stderr in a file."""

    def __init__(self, args, srv, tmp, name, *argv):
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([os.path.join(args.bin_dir, "bpfgraft-exporter"), "--socket", srv.socket,
                                      "--listen", "127.0.0.1:0", *argv], stderr=self.log)
        self.addr = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None and not self.addr:
            m = re.search(r"serving http://(\S+)/metrics", self.text())
            self.addr = m.group(1) if m else None
            time.sleep(0.05)

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def metrics(self):
        return http_get(f"http://{self.addr}/metrics")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        finish(self.proc, 15)
        self.log.close()
        return self.proc.returncode


class Prometheus:
    """prometheus scraping targets every second, its storage in tmp."""

    def __init__(self, tmp, targets):
        self.port = free_port()
        cfg = os.path.join(tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: bpfgraft\n    static_configs:\n"
                    f"      - targets: {json.dumps(targets)}\n")
        self.log = open(os.path.join(tmp, "prometheus.log"), "w")
        self.proc = subprocess.Popen(["prometheus", f"--config.file={cfg}",
                                      f"--storage.tsdb.path={os.path.join(tmp, 'tsdb')}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def ready(self, deadline_s=30):
        end = time.monotonic() + deadline_s
        while time.monotonic() < end and self.proc.poll() is None:
            try:
                if http_get(f"http://127.0.0.1:{self.port}/-/ready")[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def query(self, promql):
        """The instant vector's samples: [(labels, float value)]."""
        q = urllib.parse.urlencode({"query": promql})
        _, _, body = http_get(f"http://127.0.0.1:{self.port}/api/v1/query?{q}")
        doc = json.loads(body)
        if doc.get("status") != "success":
            raise RuntimeError(f"query {promql}: {body}")
        return [(r["metric"], float(r["value"][1])) for r in doc["data"]["result"]]

    def wait_value(self, promql, want, deadline):
        """The query's single value once it equals want, or the last seen."""
        got = None
        while time.monotonic() < deadline:
            res = self.query(promql)
            got = res[0][1] if len(res) == 1 else res
            if got == want:
                break
            time.sleep(0.5)
        return got

    def stop(self):
        self.proc.terminate()
        finish(self.proc, 15)
        self.log.close()


def bad_configs(args, tmp):
    """Each bad config exits 2 naming its file and line, before serving."""
    cases = [
        ("syntax", "metrics:\n  counters:\n    - name: x\n      help: [unclosed\n", 5, "bad YAML"),
        ("notable", "metrics:\n  counters:\n    - name: calls_total\n      help: h\n", 3,
         "counter 'calls_total' needs a table"),
        ("decoder", "metrics:\n  counters:\n    - name: c_total\n      help: h\n      table: t\n      labels:\n"
         "        - name: pid\n          size: 4\n          decoders:\n            - name: uintt\n", 10,
         "unknown decoder 'uintt'"),
        ("key", "metrics:\n  counters:\n    - name: c_total\n      help: h\n      tabel: t\n", 5,
         "unknown counter key 'tabel'"),
        ("bucket", "metrics:\n  histograms:\n    - name: h_seconds\n      help: h\n      table: t\n"
         "      bucket_type: exp3\n", 6, "unknown bucket_type 'exp3'"),
    ]
    for name, text, line, what in cases:
        path = os.path.join(tmp, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run([os.path.join(args.bin_dir, "bpfgraft-exporter"), "--config", path,
                            "--socket", os.path.join(tmp, "none.sock"), "--listen", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=10)
        check(r.returncode == 2 and f"{path}:{line}: " in r.stderr and what in r.stderr,
              f"bad config ({name}): exit 2 naming {os.path.basename(path)}:{line}: {what}",
              f"rc {r.returncode}, stderr {r.stderr.strip()!r}")


def start_victim(srv, obj, *argv):
    """`bpfgraft start OBJ -- VICTIM N` (programs in place before main):
    the victim's pid, once it ended."""
    rc, _, err = srv.cli("start", *argv[:-2], obj, "--", *argv[-2:], timeout=60)
    m = re.search(r"started as pid (\d+)", err)
    check(rc == 0 and m, f"bpfgraft start {obj} -- {os.path.basename(argv[-2])} {argv[-1]}", err.strip())
    return int(m.group(1)) if m else 0


def parse_text(text):
    """{(name, frozenset(labels)): value} from Prometheus text."""
    out = {}
    for line in text.splitlines():
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            out[(m.group(1), labels)] = float(m.group(4))
    return out


def check_histogram(text):
    """Cumulative buckets ending at +Inf == _count == the calls made."""
    samples = parse_text(text)
    name = "ebpf_exporter_funclatency_seconds"
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in samples.items() if k[0] == f"{name}_bucket")
    counts = [v for _, v in buckets]
    check_eq(len(buckets), 33, "funclatency: 32 log2 buckets and +Inf")
    check(buckets and buckets[-1][0] == float("inf") and buckets[0][0] == 1e-9,
          "funclatency: le from 2^0 ns (1e-09 s) up to +Inf", repr(buckets[:2]))
    check(all(a <= b for a, b in zip(counts, counts[1:])), "funclatency: buckets are cumulative", repr(counts))
    check_eq(counts[-1] if counts else None, FUNCLATENCY_CALLS, "funclatency: +Inf bucket = the calls made")
    check_eq(samples.get((f"{name}_count", frozenset())), FUNCLATENCY_CALLS, "funclatency: _count = the calls made")
    # slot i counts calls of [2^i, 2^(i+1)) ns (le 2^i s/1e9): the sum lies between
    per_bucket = [b - a for a, b in zip([0] + counts, counts)][:-1]
    low = sum(c * 2.0 ** i for i, c in enumerate(per_bucket)) * 1e-9
    total = samples.get((f"{name}_sum", frozenset()))
    check(total is not None and low * 0.999 <= total <= 2 * low * 1.001,
          f"funclatency: _sum ({total} s) within the buckets' bounds [{low:.6f}, {2 * low:.6f}) s")
    spread = sum(1 for a, b in zip([0] + counts, counts) if b > a)
    check(spread >= 2, f"funclatency: calls spread over {spread} buckets (work_unit's 1..512 us)")


def runtime_checks(prom, instance, exp_text, victim_pid, deadline):
    """The runtime's metrics main's bpfgraftd returns, through Prometheus
    (both exporters export them: the malloc one's are read)."""
    i = f'instance="{instance}"'
    check_eq(prom.wait_value(f"bpfgraft_up{{{i}}}", 1.0, deadline), 1.0, "bpfgraft_up 1 through Prometheus")
    check_eq(prom.wait_value(f"bpfgraft_objects{{{i}}}", 2.0, deadline), 2.0,
             "bpfgraft_objects: malloc and funclatency")
    check_eq(prom.wait_value(f"bpfgraft_programs{{{i}}}", 3.0, deadline), 3.0, "bpfgraft_programs: count_malloc + 2")
    check_eq(prom.wait_value(f'bpfgraft_map_max_entries{{name="malloc_calls",{i}}}', 10240.0, deadline), 10240.0,
             "bpfgraft_map_max_entries of malloc_calls (max_entries 10240)")
    check_eq(prom.wait_value(f'bpfgraft_target_hooks{{pid="{victim_pid}",{i}}}', 1.0, deadline), 1.0,
             "bpfgraft_target_hooks: the exporter's --attach put one hook in the running victim")
    check(re.search(rf'bpfgraft_program_info\{{id="\d+",name="count_malloc",object="\d+",kind="uprobe",'
                    rf'runs="userspace"\}} 1\n', exp_text), "bpfgraft_program_info of count_malloc")
    check(re.search(rf'bpfgraft_hook_misses_total\{{pid="{victim_pid}",comm="malloc-victim",prog="\d+",'
                    rf'address="0x[0-9a-f]+",kind="uprobe"\}} \d+\n', exp_text), "bpfgraft_hook_misses_total of its hook")


def promtool_check(text, what):
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"promtool check metrics passes on {what}", (r.stdout + r.stderr).strip()[:2000])


def undone_at_exit(srv, exporter, victim):
    check_eq(exporter.stop(), 0, "the malloc exporter ends cleanly on SIGTERM")
    rc, ps, _ = srv.cli_json("ps")
    pids = [t.get("pid") for t in (ps or [])] if isinstance(ps, list) else ps
    check(rc == 0 and victim.pid not in pids, "at exit the exporter detached the process it attached", repr(ps))
    with srv.client() as cl:
        status = cl.call("server.status")
    check_eq(status.get("objects"), 1, "at exit the exporter unloaded its malloc object (funclatency's stays)")
    check(victim.poll() is None, "the victim runs on")


def scenario(args, srv, tmp):
    v = subprocess.Popen([os.path.join(args.bin_dir, "malloc-victim")], stdout=subprocess.DEVNULL)
    exps = []
    prom = None
    try:
        time.sleep(0.2)
        exps.append(Exporter(args, srv, tmp, "malloc", "--config", os.path.join(args.samples, "malloc", "malloc.yaml"),
                             "--object", os.path.join(args.bpf_dir, "malloc.bpf.o"), "--attach", str(v.pid)))
        exps.append(Exporter(args, srv, tmp, "funclatency", "--config",
                             os.path.join(args.samples, "funclatency", "funclatency.yaml"),
                             "--object", os.path.join(args.bpf_dir, "funclatency.bpf.o")))
        if not all(check(e.addr, f"an exporter serves /metrics ({e.text().strip()})") for e in exps):
            return
        prom = Prometheus(tmp, [e.addr for e in exps])
        if not check(prom.ready(), "prometheus is ready on 127.0.0.1"):
            return
        deadline = time.monotonic() + WINDOW_S
        pid = start_victim(srv, "malloc", os.path.join(args.bin_dir, "malloc-victim"), str(MALLOC_CALLS))
        start_victim(srv, "funclatency", "--target", ":work_unit",
                            os.path.join(args.bin_dir, "funclatency-victim"), str(FUNCLATENCY_CALLS))
        got = prom.wait_value(f'ebpf_exporter_malloc_calls_total{{pid="{pid}"}}', float(MALLOC_CALLS), deadline)
        check_eq(got, float(MALLOC_CALLS), f"Prometheus has ebpf_exporter_malloc_calls_total{{pid={pid}}} "
                 f"= the {MALLOC_CALLS} calls made")
        got = prom.wait_value("ebpf_exporter_funclatency_seconds_count", float(FUNCLATENCY_CALLS), deadline)
        check_eq(got, float(FUNCLATENCY_CALLS), "Prometheus has the funclatency histogram's _count = the calls made")
        status, ctype, text = exps[0].metrics()
        check(status == 200 and ctype.startswith("text/plain; version=0.0.4"), "/metrics: 200, text format 0.0.4")
        runtime_checks(prom, exps[0].addr, text, v.pid, deadline)
        promtool_check(text, "the malloc exporter's output")
        _, _, ftext = exps[1].metrics()
        check_histogram(ftext)
        promtool_check(ftext, "the funclatency exporter's output")
        prom.stop()
        prom = None
        undone_at_exit(srv, exps[0], v)
    finally:
        if prom:
            prom.stop()
        for e in exps:
            e.stop()   # before the victim goes: its detach must not race the exit
        v.kill()
        v.wait()


def main():
    args = parse_args()
    if not shutil.which("prometheus") or not shutil.which("promtool"):
        skip("prometheus/promtool not installed (scripts/setup.sh installs Debian's prometheus)")
        return report()
    tmp = tempfile.mkdtemp(prefix="bpfgraft-exporter-")
    try:
        bad_configs(args, tmp)
        with Server(args) as srv:
            scenario(args, srv, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
