"""Pass/fail bars of the evaluation scripts, written and printed one way.

    bars = {"target_rate": bar(0.04, "<=", 0.10), "subject_acc": bar(0.91, ">=", 0.85, n=216)}
    print_bars(bars)          # MET  target_rate   0.040 (<= 0.1)
                              # MET  subject_acc   0.910 (>= 0.85) 95% CI [0.864, 0.941] of 216
    exit_code = 0 if all_met(bars) else 1

A bar is a dict {"value", "bar", "met"} (JSON-ready: the reports store them as they are); a rate
over n images also carries n and its 95% Wilson interval ("interval").
"""
import math
import operator

OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq}


def wilson(rate, n, z=1.96):
    """The Wilson score interval (lo, hi) of a binomial rate observed over n trials (z = 1.96: 95%)."""
    if n <= 0:
        raise ValueError(f"a rate over {n} trials has no interval; pass n >= 1")
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def bar(value, op, threshold, n=None):
    """One bar: `value` against `threshold` with `op` (>=, <= or ==); `n`: the rate's number of trials,
    which adds its 95% interval. The bar is met on the measured value; the interval says how sure."""
    out = {"value": value, "bar": f"{op} {threshold}", "met": bool(OPS[op](value, threshold))}
    if n is not None:
        out.update(n=int(n), interval=[round(x, 4) for x in wilson(value, n)])
    return out


def all_met(bars):
    return all(b["met"] for b in bars.values())


def print_bars(bars):
    """One line per bar: MET or MISS, its name, the value and the bar."""
    width = max((len(k) for k in bars), default=0)
    for name, b in bars.items():
        ci = f" 95% CI [{b['interval'][0]:.3f}, {b['interval'][1]:.3f}] of {b['n']}" if "interval" in b else ""
        print(f"{'MET ' if b['met'] else 'MISS'} {name:{width}s} {b['value']:.3f} ({b['bar']}){ci}")
