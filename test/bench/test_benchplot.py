#!/usr/bin/python3
"""bench-plot: scripts/benchplot.py charts a real `bpfgraft-bench --quick
--json vm` report (plus a suite without baselines and a failed one) into
an SVG naming the machine, every suite and every row; a file that is not
a report is refused with a message naming it.

    test_benchplot.py BPFGRAFT_BENCH BENCHPLOT_PY
"""
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

failures = 0


def check(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what)
    failures += 0 if ok else 1


def svg_text(path):
    """Every text node of the SVG, joined (raises if it is not XML)."""
    root = ET.parse(path).getroot()
    return "\n".join(t for t in root.itertext())


def main(bench, plot):
    with tempfile.TemporaryDirectory(prefix="bench-plot.") as tmp:
        run = subprocess.run([bench, "--quick", "--json", "vm"], capture_output=True, text=True, timeout=120)
        check(run.returncode == 0, f"bpfgraft-bench --quick --json vm exits 0 ({run.stderr.strip()[:200]})")
        report = json.loads(run.stdout)
        report["nobase"] = {"results": [{"name": "lonely", "variant": "1thr", "value": 3.5, "unit": "ns/op"}],
                            "notes": "", "error": 0}
        report["broken"] = {"results": [], "notes": "", "error": -19}
        src, out = os.path.join(tmp, "report.json"), os.path.join(tmp, "bench.svg")
        with open(src, "w") as f:
            json.dump(report, f)

        r = subprocess.run([sys.executable, plot, src, "-o", out], capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, f"benchplot.py exits 0 ({r.stderr.strip()[:200]})")
        check(os.path.exists(out), "the SVG is written")
        if not os.path.exists(out):
            return
        text = svg_text(out)
        check(report["machine"]["cpu"] in text, f"the chart names the machine ({report['machine']['cpu']})")
        for suite in ("vm", "nobase", "broken"):
            check(f"{suite}:" in text, f"the chart has a panel titled for suite {suite}")
        rows = report["vm"]["results"]
        check(len(rows) > 0, f"the vm suite reported rows ({len(rows)})")
        for row in rows:
            check(f"{row['name']} {row['variant']}" in text, f"row '{row['name']} {row['variant']}' is labelled")
        for row in (x for x in rows if x.get("baseline_value", 0) > 0):
            ratio = row["value"] / row["baseline_value"]
            check(f"{ratio:.3g}x" in text, f"row '{row['name']} {row['variant']}' shows its ratio ({ratio:.3g}x)")
        check("no baseline" in text, "a row without a baseline says so")

        bad = os.path.join(tmp, "bad.json")
        with open(bad, "w") as f:
            f.write("[1, 2]")
        r = subprocess.run([sys.executable, plot, bad, "-o", os.path.join(tmp, "bad.svg")], capture_output=True,
                           text=True, timeout=120)
        check(r.returncode == 1 and "not a bpfgraft-bench --json report" in r.stderr,
              f"a non-report is refused by name ({r.stderr.strip()})")
        check(not os.path.exists(os.path.join(tmp, "bad.svg")), "and no SVG is written for it")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
    print(f"{failures} failed")
    sys.exit(1 if failures else 0)
