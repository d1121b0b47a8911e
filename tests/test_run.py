"End-to-end: `mlnb run` on a sample of the data, bad parameter files, and a failing stage."
import json, re, subprocess
import nbformat, pytest, scrapbook as sb
from mlnb.core import sha256_file
from conftest import MLNB, ROOT, mlnb, small_params, write_params

STAGES = ['ingest', 'validate', 'prepare', 'features', 'train', 'evaluate', 'explain', 'deploy']

def test_run_prints_a_line_per_stage_and_the_report(small_run):
    r, run_dir, _ = small_run
    assert r.returncode == 0, r.stdout + r.stderr
    for s in STAGES: assert re.search(rf'^  {s}\s+ok\s+[\d.]+ s', r.stdout, re.M), r.stdout
    assert f"report: {run_dir/'report.html'}" in r.stdout
    assert 'without encryption' not in r.stderr and 'Traceback' not in r.stderr

def test_manifest(small_run):
    _, run_dir, d = small_run
    m = json.loads((run_dir/'run.json').read_text())
    assert m['status'] == 'ok' and m['run_id'] == run_dir.name and m['ended'] >= m['started']
    assert list(m['stages']) == STAGES and m['params']['shared'] == {'target': 'income', 'seed': 42, 'missing_markers': ['?'], 'positive': '>50K', 'model': 'logistic'}
    assert m['params_file'] == str(d/'small.yaml') and (run_dir/'params.yaml').read_text() == (d/'small.yaml').read_text()
    assert re.fullmatch(r'[0-9a-f]{40}', m['git']['commit'] or '0'*40) and m['environment']['packages']['pandas']
    assert m['environment']['python'].startswith('3.')
    for i, s in enumerate(STAGES, 1):
        st = m['stages'][s]
        assert st['status'] == 'ok' and st['duration_s'] > 0 and st['output'] == f'{i:02d}_{s}.ipynb'
        assert st['notebook_sha256'] == sha256_file(ROOT/st['notebook'])
        for ref in st['artifacts'].values():                                    # every artifact is where the manifest says
            assert sha256_file(run_dir/ref['path']) == ref['sha256'] and (run_dir/ref['path']).stat().st_size == ref['bytes']
    assert m['stages']['ingest']['parameters']['sample_rows'] == 3000 and m['stages']['ingest']['parameters']['seed'] == 42
    assert m['stages']['evaluate']['parameters']['upstream'] == {'train': str(run_dir/'05_train.ipynb'), 'prepare': str(run_dir/'03_prepare.ipynb')}
    assert m['stages']['train']['parameters']['artifacts'] == str(run_dir/'artifacts'/'train')
    assert set(m['stages']['train']['artifacts']) == {'pipeline'} and set(m['stages']['prepare']['artifacts']) == {'train', 'test'}
    assert not list(run_dir.rglob('*.tmp'))

def test_glued_values_and_metrics(small_run):
    _, run_dir, _ = small_run
    m = json.loads((run_dir/'run.json').read_text())
    g = {s: m['stages'][s]['glued'] for s in STAGES}
    assert g['ingest']['rows'] == 3000 and g['ingest']['source_rows'] == 48842
    assert g['validate']['rows_in'] == 3000 and g['validate']['rows_out'] + g['validate']['rows_rejected'] == 3000
    assert g['prepare']['n_train'] + g['prepare']['n_test'] == g['prepare']['rows'] <= 3000
    assert g['train']['model'] == 'logistic' and len(g['train']['cv_scores']['roc_auc']) == 2
    ev = g['evaluate']
    assert ev['n'] == g['prepare']['n_test'] and 0.85 < ev['roc_auc'] <= 1 and 0 < ev['log_loss'] < 1
    assert all(0 <= ev[k] <= 1 for k in ['accuracy', 'precision', 'recall', 'f1', 'pr_auc'])
    scraps = sb.read_notebook(str(run_dir/'06_evaluate.ipynb')).scraps       # the manifest repeats what the notebook glued
    assert scraps['roc_auc'].data == ev['roc_auc']

def test_executed_notebooks_and_report(small_run):
    _, run_dir, _ = small_run
    for i, s in enumerate(STAGES, 1):
        nb = nbformat.read(run_dir/f'{i:02d}_{s}.ipynb', as_version=4)
        injected = [c for c in nb.cells if 'injected-parameters' in c.metadata.get('tags', [])]
        assert len(injected) == 1 and 'upstream' in injected[0].source
        assert all(c.execution_count for c in nb.cells if c.cell_type == 'code' and c.source.strip())
        assert (run_dir/f'{i:02d}_{s}.html').stat().st_size > 10_000
    nb = nbformat.read(run_dir/'06_evaluate.ipynb', as_version=4)
    assert any('image/png' in o.get('data', {}) for c in nb.cells if c.cell_type == 'code' for o in c.outputs)
    page = (run_dir/'report.html').read_text()
    assert all(f'href="{i:02d}_{s}.html"' in page for i, s in enumerate(STAGES, 1)) and 'roc_auc=' in page

def test_runs_and_show(small_run):
    _, run_dir, d = small_run
    r = mlnb('runs', '--runs-dir', d/'runs')
    assert r.returncode == 0 and run_dir.name in r.stdout and 'evaluate.roc_auc=0.' in r.stdout and 'small.yaml' in r.stdout
    r = mlnb('show', run_dir.name[:15], '--runs-dir', d/'runs')
    assert r.returncode == 0 and 'train' in r.stdout and 'headline evaluate.roc_auc' in r.stdout
    r = mlnb('show', 'nope', '--runs-dir', d/'runs')
    assert r.returncode == 2 and "run 'nope' not found" in r.stderr

BAD = {
    'unknown parameter': (lambda p: p['stages']['train']['params'].update(n_trees=3), "stage 'train': unknown parameter 'n_trees'"),
    'wrong type': (lambda p: p['stages']['train']['params'].update(cv_folds='five'), "stage 'train': parameter 'cv_folds' must be int, got str 'five'"),
    'wrong shared type': (lambda p: p['shared'].update(seed='x'), "parameter 'seed' must be int"),
    'missing notebook': (lambda p: p['stages']['train'].update(notebook='nbs/99_nope.ipynb'), "stage 'train': notebook nbs/99_nope.ipynb does not exist"),
    'no parameters cell': (lambda p: p['stages']['train'].update(notebook='nbs/00_core.ipynb'), "stage 'train': notebook nbs/00_core.ipynb has no cell tagged `parameters`"),
    'unknown upstream': (lambda p: p['stages']['train'].update(upstream=['prep']), "stage 'train' lists upstream 'prep'"),
    'cycle': (lambda p: p['stages']['ingest'].update(upstream=['evaluate']), 'the stages form a cycle'),
    'runner parameter': (lambda p: p['stages']['train']['params'].update(upstream={}), "parameter 'upstream' is set by the runner"),
}

@pytest.mark.parametrize('case', BAD)
def test_bad_parameter_file_runs_nothing(tmp_path, case):
    p = small_params(); BAD[case][0](p)
    r = mlnb('run', write_params(tmp_path/'bad.yaml', p), '--runs-dir', tmp_path/'runs')
    assert r.returncode == 2 and BAD[case][1] in r.stderr, r.stderr
    assert str(tmp_path/'bad.yaml') in r.stderr and 'Traceback' not in r.stderr
    assert not (tmp_path/'runs').exists()

def test_missing_required_parameter(tmp_path):
    nb = nbformat.read(ROOT/'tests'/'notebooks'/'boom.ipynb', as_version=4)
    nb.cells[1].source += "\nlimit: int = None  # required: how many"
    nbformat.write(nb, tmp_path/'needs.ipynb')
    p = {'stages': {'needs': {'notebook': str(tmp_path/'needs.ipynb')}}}
    r = mlnb('run', write_params(tmp_path/'p.yaml', p), '--runs-dir', tmp_path/'runs')
    assert r.returncode == 2 and "stage 'needs': missing required parameter 'limit' (int; required: how many)" in r.stderr
    for bad, msg in [('[not, a, mapping]', 'needs a `stages:` mapping'), ('stages: {a: b', 'not valid YAML')]:
        (tmp_path/'q.yaml').write_text(bad)
        r = mlnb('run', tmp_path/'q.yaml', '--runs-dir', tmp_path/'runs'); assert r.returncode == 2 and msg in r.stderr
    assert mlnb('run', tmp_path/'none.yaml').stderr.strip().endswith('does not exist') and not (tmp_path/'runs').exists()

def test_failing_stage(tmp_path):
    p = {'shared': {'seed': 1}, 'stages': {'ingest': {'params': {'sample_rows': 500}},
         'boom': {'notebook': 'tests/notebooks/boom.ipynb', 'upstream': ['ingest'], 'params': {'message': 'the data is bad'}},
         'after': {'notebook': 'tests/notebooks/boom.ipynb', 'upstream': ['boom']}}}
    r = mlnb('run', write_params(tmp_path/'p.yaml', p), '--runs-dir', tmp_path/'runs')
    assert r.returncode == 1
    assert re.search(r"^  boom\s+failed.*\n    ValueError in cell \[\d+\]: the data is bad$", r.stdout, re.M), r.stdout
    assert re.search(r'^  after\s+skipped', r.stdout, re.M) and 'Traceback' not in r.stdout + r.stderr
    run_dir = next((tmp_path/'runs').iterdir())
    m = json.loads((run_dir/'run.json').read_text())
    assert m['status'] == 'failed' and m['failed_stage'] == 'boom'
    assert m['stages']['boom']['error'] == {'cell': 4, 'ename': 'ValueError', 'evalue': 'the data is bad'}
    assert m['stages']['ingest']['status'] == 'ok' and m['stages']['after']['status'] == 'skipped'
    nb = nbformat.read(run_dir/'02_boom.ipynb', as_version=4)                 # kept, with the failing cell marked
    assert any('papermill-error-cell-tag' in c.metadata.get('tags', []) for c in nb.cells)
    failing = [c for c in nb.cells if c.cell_type == 'code' and any(o.get('output_type') == 'error' for o in c.outputs)]
    assert len(failing) == 1 and 'raise ValueError' in failing[0].source
    assert not any(c.source.startswith('#| check') for c in nb.cells)          # library checks are left out of a run
    assert not (run_dir/'03_after.ipynb').exists() and 'the data is bad' in (run_dir/'report.html').read_text()
    audit = [json.loads(l) for l in (tmp_path/'audit.jsonl').read_text().splitlines()]    # the audit log beside the runs folder
    assert [(e['event'], e['fields']['run_id']) for e in audit] == [('run.start', m['run_id']), ('run.end', m['run_id'])]
    assert audit[1]['fields']['status'] == 'failed' and audit[1]['fields']['failed_stage'] == 'boom' and audit[1]['prev']

@pytest.mark.serial  # alone, after the parallel part: beside another test file it failed twice this session (the stage not running within 60 s), alone it passes; cause not yet found
def test_interrupted_run_is_recorded_and_leaves_no_kernel(tmp_path):
    import signal, subprocess, time, psutil
    from conftest import MLNB
    p = {'stages': {'slow': {'notebook': 'tests/notebooks/boom.ipynb', 'params': {'seconds': 60}}}}
    proc = subprocess.Popen([MLNB, 'run', write_params(tmp_path/'p.yaml', p), '--runs-dir', tmp_path/'runs'], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:                                     # wait until the stage is running
        runs = list((tmp_path/'runs').glob('*/run.json'))
        if runs and json.loads(runs[0].read_text())['stages']['slow']['status'] == 'running' and psutil.Process(proc.pid).children(): break
        time.sleep(0.2)
    time.sleep(0.3); kids = psutil.Process(proc.pid).children(recursive=True)  # early: the kernel may still be booting, or papermill not yet in a cell (a lone Ctrl-C was lost there)
    proc.send_signal(signal.SIGINT); out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and 'interrupted' in err, (proc.returncode, out[-2000:], err[-3000:])  # what the run said, for the intermittent failure
    m = json.loads(runs[0].read_text())
    assert m['status'] == 'failed' and m['error'] == 'interrupted' and m['stages']['slow']['status'] == 'failed' and m['ended']
    nb = nbformat.read(runs[0].parent/'01_slow.ipynb', as_version=4)            # kept, the interrupted cell marked
    assert any(o.get('ename') == 'KeyboardInterrupt' for c in nb.cells if c.cell_type == 'code' for o in c.outputs)
    gone, alive = psutil.wait_procs(kids, timeout=10)
    assert not alive, f'kernels left running: {alive}'

def test_deploy_registers_and_gates(small_run, tmp_path):
    from mlnb.registry import Registry
    _, run_dir, d = small_run
    m = json.loads((run_dir/'run.json').read_text())
    dep = m['stages']['deploy']['glued']
    assert dep['version'] == 1 and dep['promoted'] and dep['alias'] == 'production' and dep['gate_reasons'] == []
    reg = Registry(d/'registry')
    mv = reg.load('adult-income')
    assert mv.version == 1 and mv.meta['run_id'] == run_dir.name and mv.metrics['roc_auc'] == m['stages']['evaluate']['glued']['roc_auc']
    assert 'income' not in mv.meta['features'] and '_proba' in mv.reference().columns and '# Model card: adult-income' in mv.card
    audit = [json.loads(l) for l in (d/'audit.jsonl').read_text().splitlines()]           # the run and its registry share one audit log
    assert [(e['event'], e['fields'].get('run_id')) for e in audit[:4]] == [('run.start', run_dir.name), ('model.register', run_dir.name), ('model.promote', None), ('run.end', run_dir.name)]
    # a second run whose gate it cannot pass: registered, not promoted, and the notebook says why
    latest, production = reg.versions('adult-income')['version'].max(), reg.resolve('adult-income')   # other tests may add versions
    p = small_params(deploy={'registry': str(d/'registry'), 'minimums': {'roc_auc': 0.999}})
    r = mlnb('run', write_params(tmp_path/'strict.yaml', p), '--runs-dir', tmp_path/'runs')
    assert r.returncode == 0, r.stdout + r.stderr
    m2 = json.loads(next((tmp_path/'runs').glob('*/run.json')).read_text())['stages']['deploy']['glued']
    assert m2['version'] == latest + 1 and not m2['promoted'] and 'roc_auc' in m2['gate_reasons'][0]
    assert reg.resolve('adult-income') == production
    nb = (tmp_path/'runs').glob('*/08_deploy.ipynb').__next__().read_text()
    assert 'failed the gate' in nb

def test_two_runs_at_once(tmp_path):
    import subprocess
    from conftest import MLNB
    p = {'shared': {'seed': 3}, 'stages': {'ingest': {'params': {'sample_rows': 300}}, 'validate': {'upstream': ['ingest']}}}
    write_params(tmp_path/'p.yaml', p)
    procs = [subprocess.Popen([MLNB, 'run', tmp_path/'p.yaml', '--runs-dir', tmp_path/'runs'], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all('without encryption' not in err for _, err in outs)
    runs = [json.loads(f.read_text()) for f in (tmp_path/'runs').glob('*/run.json')]
    assert len(runs) == 2 and all(m['status'] == 'ok' for m in runs) and runs[0]['run_id'] != runs[1]['run_id']

def stage_window(m, name):
    from datetime import datetime
    st = m['stages'][name]
    return datetime.fromisoformat(st['started']).timestamp(), datetime.fromisoformat(st['ended']).timestamp()

def test_independent_stages_run_at_once_within_a_thread_budget(tmp_path):
    import os
    nb = 'tests/notebooks/sleep.ipynb'
    p = {'stages': {'a': {'notebook': nb}, 'b': {'notebook': nb, 'upstream': ['a'], 'params': {'seconds': 2}},
                    'c': {'notebook': nb, 'upstream': ['a'], 'params': {'seconds': 2}}}}
    env = {k: v for k, v in os.environ.items() if k not in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')}
    r = subprocess.run([MLNB, 'run', write_params(tmp_path/'p.yaml', p), '--runs-dir', tmp_path/'runs', '--jobs', '2'],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads(next((tmp_path/'runs').glob('*/run.json')).read_text())
    (b0, b1), (c0, c1) = stage_window(m, 'b'), stage_window(m, 'c')
    assert b0 < c1 and c0 < b1, (b0, b1, c0, c1)                                   # the two branches overlapped
    cores = os.cpu_count()
    assert m['stages']['a']['glued']['threads'] == [cores]                          # alone: every core
    if cores >= 2: assert m['stages']['b']['glued']['threads'] == m['stages']['c']['glued']['threads'] == [cores // 2]  # as threadpoolctl reports them

def test_a_failure_stops_new_stages_unless_keep_going(tmp_path):
    nb, boom = 'tests/notebooks/sleep.ipynb', 'tests/notebooks/boom.ipynb'
    p = {'stages': {'a': {'notebook': nb, 'params': {'seconds': 0}}, 'bad': {'notebook': boom, 'upstream': ['a']},
                    'c': {'notebook': nb, 'upstream': ['a'], 'params': {'seconds': 3}}, 'd': {'notebook': nb, 'upstream': ['c'], 'params': {'seconds': 0}}}}
    for flags, d_status in (([], 'skipped'), (['--keep-going'], 'ok')):
        runs = tmp_path/('k' if flags else 'plain')
        r = mlnb('run', write_params(tmp_path/'p.yaml', p), '--runs-dir', runs, '--jobs', '2', *flags)
        m = json.loads(next(runs.glob('*/run.json')).read_text())
        st = {n: s['status'] for n, s in m['stages'].items()}
        assert r.returncode == 1 and st['bad'] == 'failed' and st['c'] == 'ok' and st['d'] == d_status, (flags, st)   # c, already running, finishes
