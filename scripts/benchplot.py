#!/usr/bin/python3
"""Charts a `bpfgraft-bench --json` report: one panel per suite, each row
its figure as a ratio to the baseline measured in the same run (kernel or
native code), the value and baseline printed beside the bar.

    bpfgraft-bench all --json > bench.json
    scripts/benchplot.py bench.json -o docs/bench.svg

Ratio = bpfgraft / baseline: below 1 is faster for times (ns, ms, us),
above 1 is better for rates (.../s). Rows without a baseline are listed
with their value only. Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import datetime
import json
import sys

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

RATE_HINT = "/s"


def load(path):
    """The report as (machine dict, [(suite, rows, notes)]) in run order."""
    with open(path) as f:
        report = json.load(f)
    if not isinstance(report, dict):
        raise ValueError(f"{path}: not a bpfgraft-bench --json report (top level is not an object)")
    machine = report.pop("machine", {})
    suites = []
    for name, body in report.items():
        if not isinstance(body, dict) or "results" not in body:
            raise ValueError(f"{path}: suite '{name}' has no \"results\" list")
        suites.append((name, body["results"], body.get("notes", "")))
    if not suites:
        raise ValueError(f"{path}: no suites in the report")
    return machine, suites


def row_label(r):
    label = f"{r['name']} {r['variant']}"
    value = f"{r['value']:.4g} {r['unit']}"
    if "baseline" in r:
        return label, f"{value} vs {r['baseline']} {r['baseline_value']:.4g}"
    return label, value


def draw_suite(ax, name, rows):
    rows = list(reversed(rows))  # first result on top
    labels = [row_label(r) for r in rows]
    # from the figures, not the report's 4-decimal "ratio" (0.0000 for tiny ones)
    ratios = [r["value"] / r["baseline_value"] if r.get("baseline_value", 0) > 0 else 0 for r in rows]
    colors = []
    for r, ratio in zip(rows, ratios):
        better = ratio >= 1 if RATE_HINT in r["unit"] else ratio <= 1
        colors.append("#bbbbbb" if not ratio else "#2e7d32" if better else "#c62828")
    ys = range(len(rows))
    # bars from 1 (the baseline) to the ratio: right is more, left is less
    ax.barh(ys, [x - 1 if x else 0 for x in ratios], left=1, color=colors, height=0.7)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([lab for lab, _ in labels], fontsize=7)
    ax.set_xscale("log")
    positive = [x for x in ratios if x > 0]
    lo = min(positive + [1.0]) / 2
    hi = max(positive + [1.0]) * 30
    ax.set_xlim(lo, hi)
    ax.axvline(1.0, color="black", linewidth=0.8)
    for y, ratio, (_, text) in zip(ys, ratios, labels):
        x = max(ratio, 1.0) if ratio else lo  # right of the bar and of the baseline line
        tag = f"  {ratio:.3g}x  {text}" if ratio else f"  {text} (no baseline)"
        ax.text(x, y, tag, va="center", fontsize=6)
    ax.set_title(f"{name}: bpfgraft / baseline (log scale)", fontsize=9, loc="left")
    ax.tick_params(axis="x", labelsize=7)


def machine_line(machine):
    if not machine:
        return "machine not recorded"
    when = ""
    if "time" in machine:
        when = datetime.datetime.fromtimestamp(machine["time"], datetime.timezone.utc).strftime(", %Y-%m-%d %H:%M UTC")
    return f"{machine.get('cpu', '?')}, {machine.get('cpus', '?')} CPUs, Linux {machine.get('kernel', '?')}{when}"


def plot(machine, suites, out):
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: searchable, small
    heights = [0.2 + 0.2 * max(1, len(rows)) for _, rows, _ in suites]  # inches of each panel
    gap, top, bottom = 0.9, 0.8, 0.4  # inches between panels, above and below
    total = sum(heights) + gap * (len(suites) - 1) + top + bottom
    fig, axes = plt.subplots(len(suites), 1, figsize=(12, total), squeeze=False,
                             gridspec_kw={"height_ratios": heights,
                                          "hspace": gap / (sum(heights) / len(suites))})
    fig.subplots_adjust(left=0.25, right=0.98, top=1 - top / total, bottom=bottom / total)
    for ax, (name, rows, _) in zip(axes[:, 0], suites):
        if rows:
            draw_suite(ax, name, rows)
        else:
            ax.set_axis_off()
            ax.set_title(f"{name}: no results (suite failed or skipped)", fontsize=9, loc="left")
    fig.suptitle(f"bpfgraft-bench: {machine_line(machine)}\n"
                 "green: better than the baseline, red: worse (times: ratio < 1 is faster; rates: > 1)",
                 fontsize=9, y=1 - 0.1 / total, va="top")
    fig.savefig(out, format="svg")
    plt.close(fig)


def main(argv):
    ap = argparse.ArgumentParser(description="SVG chart of a bpfgraft-bench --json report")
    ap.add_argument("report", help="bpfgraft-bench --json output")
    ap.add_argument("-o", "--output", default="bench.svg", help="SVG file to write (default bench.svg)")
    a = ap.parse_args(argv)
    try:
        machine, suites = load(a.report)
    except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        print(f"benchplot: {e}", file=sys.stderr)
        return 1
    plot(machine, suites, a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
