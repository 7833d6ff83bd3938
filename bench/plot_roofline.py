#!/usr/bin/env python3
"""Draws the roofline of moegraph's CPU kernels from a moegraph-kernel-bench JSON.

Each kernel benchmark reports flop_per_iter and bytes_per_iter (the bytes it must
move: weights, activations, KV cache) and its time; the yardstick benchmarks give
the ceilings measured in the same run (best read bandwidth, peak AVX2 FMA).

    moegraph-kernel-bench --benchmark_out=kernels.json --benchmark_out_format=json
    python3 bench/plot_roofline.py kernels.json docs/benchmarks_roofline.png

Needs matplotlib (a local tool; CI never runs it).
"""
import json
import sys


def load(path):
    with open(path) as f:
        data = json.load(f)
    kernels, read_gbs, peak_gflops = [], 0.0, 0.0
    for b in data["benchmarks"]:
        name = b["name"]
        if name.startswith("yardstick/read_bandwidth"):
            read_gbs = max(read_gbs, b.get("GB/s", 0.0))
        elif name.startswith("yardstick/peak_fma"):
            peak_gflops = max(peak_gflops, b.get("GFLOP/s", 0.0))
        elif name.startswith("yardstick/"):
            continue
        elif b.get("flop_per_iter", 0) > 0 and b.get("bytes_per_iter", 0) > 0:
            seconds = b["real_time"] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
            kernels.append({
                "name": name.replace("/real_time", ""),
                "intensity": b["flop_per_iter"] / b["bytes_per_iter"],
                "gflops": b["flop_per_iter"] / seconds / 1e9,
            })
    return kernels, read_gbs, peak_gflops


def main(argv):
    if len(argv) != 3:
        print(__doc__)
        return 2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kernels, read_gbs, peak_gflops = load(argv[1])
    fig, (ax, key) = plt.subplots(1, 2, figsize=(13, 6.5), gridspec_kw={"width_ratios": [3, 1.3]})
    lo, hi = 0.05, 1000.0
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(xs, [min(peak_gflops, read_gbs * x) for x in xs], color="black", linewidth=1.5,
            label=f"roof: {read_gbs:.1f} GB/s read, {peak_gflops:.0f} GFLOP/s AVX2 FMA")
    # Optimised kernels are numbered; the reference of the same benchmark is a grey x.
    names = sorted({k["name"].rsplit("/", 1)[0] for k in kernels})
    lines = []
    for number, name in enumerate(names, 1):
        for k in kernels:
            base, variant = k["name"].rsplit("/", 1)
            if base != name:
                continue
            if variant == "opt":
                ax.scatter(k["intensity"], k["gflops"], marker="o", color="tab:blue", s=36,
                           zorder=3)
                ax.annotate(str(number), (k["intensity"], k["gflops"]),
                            textcoords="offset points", xytext=(4, 3), fontsize=8)
                lines.append(f"{number:2d}  {name}  {k['gflops']:.1f} GFLOP/s")
            else:
                ax.scatter(k["intensity"], k["gflops"], marker="x", color="tab:gray", s=30,
                           zorder=2)
    ax.scatter([], [], marker="o", color="tab:blue", label="optimised (avx2)")
    ax.scatter([], [], marker="x", color="tab:gray", label="reference")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(0.5, peak_gflops * 2)
    ax.set_xlabel("arithmetic intensity (flop / byte it must move)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("moegraph CPU kernels at bench-a3b-4l shapes (2 threads)")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(loc="lower right", fontsize=8)
    key.axis("off")
    key.text(0.0, 1.0, "\n".join(lines) + "\n\nPoints above the bandwidth roof\nread data the "
             "last-level cache holds\n(activations re-used per iteration).",
             va="top", family="monospace", fontsize=7.5, transform=key.transAxes)
    fig.tight_layout()
    fig.savefig(argv[2], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
