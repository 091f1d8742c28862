"""Two simultaneous runs on one output, N rounds: one must train and write a valid file, the other
must exit 1 with one line (issue 25's bar: 10 of 10; tests/test_resume.py runs 3 rounds).

    python bench/concurrent_runs.py --rounds 10      # the toy model, 4 stream iterations a run

Prints one line per round and the count; writes results/reliability/concurrent.json.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from spatial_erasure.erasure_file import read_erasure
from spatial_erasure.reports import write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = ["original_esd/esd_sd.py", "--erase_concept", "Vincent van Gogh", "--iterations", "4", "--xt_source", "stream",
       "--stream_width", "2", "--num_inference_steps", "10", "--checkpoint_every", "1"]


def one_round(folder):
    out = os.path.join(folder, "e.safetensors")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    procs = [subprocess.Popen([sys.executable, *RUN, "--output", out], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate()[1] for p in procs]
    codes = sorted(p.returncode for p in procs)
    loser = [e for p, e in zip(procs, errs) if p.returncode == 1]
    lines = [line for line in (loser[0] if loser else "").splitlines() if line.startswith("error:")]
    try:
        valid = read_erasure(out)[1]["iterations_done"] == 4
    except Exception:
        valid = False
    ok = codes == [0, 1] and len(lines) == 1 and "Traceback" not in loser[0] and valid
    return {"ok": ok, "exit_codes": codes, "error": lines[0] if lines else None, "file_valid": valid}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--output", default=os.path.join(REPO, "results", "reliability", "concurrent.json"))
    args = p.parse_args()
    rows, start = [], time.time()
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory() as folder:
            rows.append(one_round(folder))
        print(f"round {i + 1}: {'ok' if rows[-1]['ok'] else 'FAILED'} {rows[-1]}", flush=True)
    passed = sum(r["ok"] for r in rows)
    print(f"{passed} of {args.rounds} rounds: one run trained, the other refused in one line, the file valid")
    write_json(args.output, {"rounds": args.rounds, "passed": passed, "seconds": round(time.time() - start, 1),
                             "command": RUN, "rows": rows})
    return 0 if passed == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
