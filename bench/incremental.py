"""Incremental runs: what a re-run costs when nothing, or only the last stage, changed.

    python bench/incremental.py [--params params/default.yaml] [--repeat 5] [--threads 1]

Works in a copy of the project (notebooks, package, settings, data) in a temporary folder, imported through
PYTHONPATH, so the checkout is not touched. After one full run it times, each case as a fresh process:
- `mlnb status` (every stage cached);
- a no-op `mlnb run` (every stage cached);
- `mlnb run` after an edit of the last stage's code (a comment in its last code cell, different each time):
  the wall time against that stage's own work: the sum of its cells' execution times as papermill recorded them,
  plus the time a fresh Python process takes to import what the notebook imports (a plain script pays that too;
  in a run the kernel zygote pays it).
Prints each case's times and their median.
"""
import argparse, json, os, platform, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parents[1]

def timed(cmd, cwd, env):
    t = time.perf_counter(); r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode: sys.exit(f'failed: {cmd}\n{r.stdout}\n{r.stderr}')
    return time.perf_counter() - t, r.stdout

def latest(d: Path) -> dict:
    return json.loads(sorted((d/'outputs'/'runs').glob('*/run.json'))[-1].read_text())

def cell_seconds(nb_path: Path) -> float:
    "The stage's own work: the sum of its code cells' execution times."
    nb = json.loads(nb_path.read_text())
    return sum(c['metadata'].get('papermill', {}).get('duration') or 0 for c in nb['cells'] if c['cell_type'] == 'code')

def edit_last_code_cell(nb_path: Path, k: int):
    nb = json.loads(nb_path.read_text())
    c = [c for c in nb['cells'] if c['cell_type'] == 'code'][-1]
    src = ''.join(c['source']).rstrip('\n').split('\n')
    if src[-1].startswith('# bench edit'): src = src[:-1]
    c['source'] = '\n'.join(src + [f'# bench edit {k}'])
    nb_path.write_text(json.dumps(nb, indent=1))

def main():
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument('--params', default='params/default.yaml'); a.add_argument('--repeat', type=int, default=5)
    a.add_argument('--threads', type=int, default=1)
    a = a.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for sub in ('nbs', 'mlnb', 'data'): shutil.copytree(ROOT/sub, d/sub, ignore=shutil.ignore_patterns('__pycache__'))
        shutil.copy(ROOT/'settings.ini', d/'settings.ini'); (d/'params').mkdir()
        p = yaml.safe_load((ROOT/a.params).read_text())
        for s in p['stages'].values():   # a deploy stage registers into the copy's registry
            if 'registry' in (s.get('params') or {}): s['params']['registry'] = str(d/'outputs'/'registry')
        params = d/'params'/'bench.yaml'; params.write_text(yaml.safe_dump(p, sort_keys=False))
        env = {**os.environ, 'PYTHONPATH': str(d), **{k: str(a.threads) for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')}}
        mlnb = str(Path(sys.executable).parent/'mlnb')
        print(f'machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {a.threads} thread(s) per process')
        t, _ = timed([mlnb, 'run', str(params)], d, env)
        m = latest(d); last = list(m['stages'])[-1]
        print(f'parameters: {a.params}; first full run {t:.1f} s; last stage: {last}; {a.repeat} repeats')
        from mlnb.engine import notebook_imports
        mods = notebook_imports(d/m['stages'][last]['notebook'])
        imports = statistics.median(timed([sys.executable, '-c', f'import importlib; [importlib.import_module(m) for m in {mods!r}]'], d, env)[0] for _ in range(3))
        print(f'importing what {last} imports takes {imports:.2f} s in a fresh process')
        status, noop, edit, work = [], [], [], []
        for k in range(a.repeat):
            t, out = timed([mlnb, 'status', str(params)], d, env); status.append(t)
            assert 'will run' not in out, out
            t, out = timed([mlnb, 'run', str(params)], d, env); noop.append(t)
            assert 'all cached' in out, out
            nb = d/m['stages'][last]['notebook']
            edit_last_code_cell(nb, k)
            t, out = timed([mlnb, 'run', str(params)], d, env); edit.append(t)
            run = latest(d); st = run['stages'][last]
            assert st['status'] == 'ok' and all(s['status'] == 'cached' for n, s in run['stages'].items() if n != last), out
            work.append(cell_seconds(d/'outputs'/'runs'/run['run_id']/st['output']) + imports)
            print(f'  #{k+1}: status {status[-1]:.2f} s, no-op run {noop[-1]:.2f} s, edit of {last}: {edit[-1]:.2f} s '
                  f'(its cells and imports {work[-1]:.2f} s, overhead {edit[-1] - work[-1]:.2f} s)', flush=True)
        med = statistics.median
        print(f'median: mlnb status {med(status):.2f} s; no-op mlnb run {med(noop):.2f} s; '
              f'edit of the last stage ({last}) {med(edit):.2f} s = its own work {med(work):.2f} s + {med([e - w for e, w in zip(edit, work)]):.2f} s')

if __name__ == '__main__': main()
