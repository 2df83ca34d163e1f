#!/usr/bin/env python3
"""Compares an Autobahn report index with the expected results.

usage: compare.py REPORT_INDEX EXPECTED_JSON [--full] [--update]

Every case in the report must have the expected `behavior` and
`behaviorClose`. With --full, every expected case must also have run.
With --update, the expected file is rewritten from the report instead
(used once after a reviewed full run). Prints the counts per behaviour.
"""
import collections
import json
import sys


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    full = "--full" in argv
    update = "--update" in argv
    report_path, expected_path = args
    with open(report_path) as f:
        report = json.load(f)
    (agent, cases), = report.items()
    got = {case: {"behavior": r["behavior"], "behaviorClose": r["behaviorClose"]} for case, r in cases.items()}

    def order(case):
        return [int(p) for p in case.split(".")]

    if update:
        with open(expected_path) as f:
            expected = json.load(f)
        expected.update(got)
        with open(expected_path, "w") as f:
            json.dump({k: expected[k] for k in sorted(expected, key=order)}, f, indent=1)
            f.write("\n")
        print(f"updated {expected_path} with {len(got)} cases")
        return 0

    with open(expected_path) as f:
        expected = json.load(f)
    counts = collections.Counter(r["behavior"] for r in got.values())
    print(f"{agent}: {len(got)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    failures = []
    for case in sorted(got, key=order):
        want = expected.get(case)
        if want is None:
            failures.append(f"{case}: no expected result")
        elif want != got[case]:
            failures.append(f"{case}: expected {want}, got {got[case]}")
    if full:
        for case in sorted(set(expected) - set(got), key=order):
            failures.append(f"{case}: did not run")
    for line in failures:
        print("REGRESSION", line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
