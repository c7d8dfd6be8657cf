#!/usr/bin/env python3
"""Turns bench-compare.sh's raw rows (scenario|server|value|cpu) into Markdown:
medians with min–max, and ratios against the first server of each scenario."""
import statistics
import sys


def summary(values):
    return statistics.median(values), min(values), max(values)


rows = [line.rstrip("\n").split("|") for line in open(sys.argv[1]) if line.strip()]
scenarios = {}
for name, server, value, cpu in rows:
    scenarios.setdefault(name, {}).setdefault(server, []).append((value, float(cpu)))

# Figures with no CPU time (memory, sizes) get a table of their own.
# Latency rows carry no CPU either, and have their own table.
figures = [name for name, servers in scenarios.items()
           if not name.startswith("latency")
           and (name.startswith("idle") or all(c == 0 for s in servers.values() for _, c in s))]

print("| scenario | server | req/s median (min–max) | ratio | CPU µs/req | ratio |")
print("|---|---|---|---|---|---|")
for name, servers in scenarios.items():
    if name.startswith("latency") or name in figures:
        continue
    base = None
    for server, samples in servers.items():
        rps = summary([float(v) for v, _ in samples])
        cpu = summary([c for _, c in samples])
        if base is None:
            base = (rps[0], cpu[0])
        print(f"| {name} | {server} | {rps[0]:,.0f} ({rps[1]:,.0f}–{rps[2]:,.0f}) | {rps[0] / base[0]:.2f} "
              f"| {cpu[0]:.2f} | {cpu[0] / base[1]:.2f} |")

print()
print("| open-loop latency | server | p50 µs | p99 µs | p99.9 µs (medians of rounds) |")
print("|---|---|---|---|---|")
for name, servers in scenarios.items():
    if not name.startswith("latency"):
        continue
    for server, samples in servers.items():
        triples = [[float(x) for x in v.split(",")] for v, _ in samples]
        p50, p99, p999 = (statistics.median(t[i] for t in triples) for i in range(3))
        print(f"| {name} | {server} | {p50:.0f} | {p99:.0f} | {p999:.0f} |")

if figures:
    print()
    print("| memory and sizes | server | median (min–max) |")
    print("|---|---|---|")
    for name in figures:
        for server, samples in scenarios[name].items():
            growth = summary([float(v) for v, _ in samples])
            print(f"| {name} | {server} | {growth[0]:.0f} ({growth[1]:.0f}–{growth[2]:.0f}) |")
