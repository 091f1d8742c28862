"""Pass/fail bars of the evaluation scripts, written and printed one way.

    bars = {"target_rate": bar(0.04, "<=", 0.10), "subject_acc": bar(0.91, ">=", 0.85)}
    print_bars(bars)          # MET  target_rate   0.040 (<= 0.1)
    exit_code = 0 if all_met(bars) else 1

A bar is a dict {"value", "bar", "met"} (JSON-ready: the reports store them as they are).
"""
import operator

OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq}


def bar(value, op, threshold):
    """One bar: `value` against `threshold` with `op` (>=, <= or ==)."""
    return {"value": value, "bar": f"{op} {threshold}", "met": bool(OPS[op](value, threshold))}


def all_met(bars):
    return all(b["met"] for b in bars.values())


def print_bars(bars):
    """One line per bar: MET or MISS, its name, the value and the bar."""
    width = max((len(k) for k in bars), default=0)
    for name, b in bars.items():
        print(f"{'MET ' if b['met'] else 'MISS'} {name:{width}s} {b['value']:.3f} ({b['bar']})")
