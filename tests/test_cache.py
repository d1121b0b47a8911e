"""Incremental runs on a copy of the project: what is cached, what runs again and why, resume, and a damaged cache.

Each test works in its own copy of the project (notebooks, package, settings, data), imported through PYTHONPATH,
so it can edit notebooks and re-export the package without touching the checkout."""
import json, os, re, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest, yaml
from conftest import ROOT, small_params, write_params

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
STAGES = ['ingest', 'validate', 'prepare', 'features', 'train', 'evaluate', 'explain', 'deploy']

def make_project(d: Path) -> Path:
    "A copy of the project in `d`: notebooks, package, settings, data and a small parameter file."
    for sub in ('nbs', 'mlnb', 'data'): shutil.copytree(ROOT/sub, d/sub, ignore=shutil.ignore_patterns('__pycache__', '.ipynb_checkpoints'))
    shutil.copy(ROOT/'settings.ini', d/'settings.ini')
    (d/'params').mkdir()
    write_params(d/'params'/'small.yaml', small_params(deploy={'registry': str(d/'outputs'/'registry')}))
    return d

def mlnb(d: Path, *args, check=True, **kw):
    env = {**os.environ, 'PYTHONPATH': str(d), 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([str(BIN/'mlnb'), *map(str, args)], cwd=d, env=env, capture_output=True, text=True, timeout=600, **kw)
    if check: assert r.returncode == 0, r.stdout + r.stderr
    return r

def states(r) -> dict:
    "Stage -> status, from `mlnb run`'s terminal lines."
    return dict(re.findall(r'^  (\w+)\s+(ok|cached|failed|skipped)\b', r.stdout, re.M))

def latest(d: Path) -> dict:
    runs = sorted((d/'outputs'/'runs').glob('*/run.json'), key=lambda f: f.stat().st_mtime_ns)   # run ids of one second sort at random
    return json.loads(runs[-1].read_text())

def edit_cell(nb_path: Path, find: str, replace: str, kind: str = 'code'):
    nb = json.loads(nb_path.read_text())
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == kind and find in src:
            c['source'] = src.replace(find, replace, 1); break
    else: raise AssertionError(f'{find!r} not in a {kind} cell of {nb_path}')
    nb_path.write_text(json.dumps(nb, indent=1))

@pytest.fixture(scope='module')
def project(tmp_path_factory):
    "A project copy with one complete run: every later test starts from that cache."
    d = make_project(tmp_path_factory.mktemp('proj'))
    r = mlnb(d, 'run', 'params/small.yaml')
    assert set(states(r).values()) == {'ok'}, r.stdout
    return d

@pytest.mark.serial   # a wall-time bound: run alone, after the parallel part of `make test`
def test_unchanged_pipeline_is_all_cached(project):
    first = latest(project)
    t = time.perf_counter(); r = mlnb(project, 'run', 'params/small.yaml'); wall = time.perf_counter() - t
    assert states(r) == dict.fromkeys(STAGES, 'cached'), r.stdout
    assert wall < 2, f'a run with every stage cached took {wall:.1f} s'
    m = latest(project)
    run_dir = project/'outputs'/'runs'/m['run_id']
    for s in STAGES:
        st = m['stages'][s]
        assert st['status'] == 'cached' and st['cached_from'] and st['artifacts'] == first['stages'][s]['artifacts']
        assert st['glued'] == first['stages'][s]['glued'] and (run_dir/st['output']).exists()
        for ref in st['artifacts'].values(): assert (run_dir/ref['path']).exists()   # a complete audit report
    assert (run_dir/'report.html').exists()
    s = mlnb(project, 'status', 'params/small.yaml')
    assert s.stdout.count('cached') >= len(STAGES) and '8/8 stages cached' in s.stdout

def test_markdown_edit_keeps_everything_cached(project):
    edit_cell(project/'nbs'/'50_evaluate.ipynb', '#', '# ', kind='markdown')
    r = mlnb(project, 'run', 'params/small.yaml')
    assert set(states(r).values()) == {'cached'}, r.stdout

def test_code_edit_in_evaluate_runs_evaluate_and_below(project):
    edit_cell(project/'nbs'/'50_evaluate.ipynb', 'glue(', "glue('edited', 1); glue(")   # a new value: deploy sees another output
    s = mlnb(project, 'status', 'params/small.yaml')
    assert re.search(r'evaluate\s+will run\s+notebook changed', s.stdout), s.stdout
    assert re.search(r'deploy\s+will run\s+upstream evaluate will run', s.stdout), s.stdout
    r = mlnb(project, 'run', 'params/small.yaml')
    st = states(r)
    assert st['evaluate'] == 'ok' and st['deploy'] == 'ok', r.stdout
    assert all(st[s] == 'cached' for s in ['ingest', 'validate', 'prepare', 'features', 'train', 'explain']), r.stdout
    assert latest(project)['stages']['evaluate']['why'] == ['notebook changed']

def test_exported_train_function_edit(project):
    "An edit to an exported function, exported with nbdev_export: train and what imports mlnb.train run again."
    edit_cell(project/'nbs'/'40_train.ipynb', '"A score as people read it', '"A score, as people read it')
    subprocess.run([str(BIN/'nbdev_export')], cwd=project, check=True, capture_output=True)
    assert 'A score, as people read it' in (project/'mlnb'/'train.py').read_text()
    s = mlnb(project, 'status', 'params/small.yaml')
    assert re.search(r'train\s+will run\s+notebook changed; mlnb/train.py changed', s.stdout), s.stdout
    r = mlnb(project, 'run', 'params/small.yaml')
    st = states(r)
    assert [st[s] for s in ['ingest', 'validate', 'prepare']] == ['cached'] * 3, r.stdout
    assert st['train'] == 'ok', r.stdout

def test_module_imported_under_an_if_is_in_ingest_key(project):
    "ingest imports mlnb.sources only inside `if source == ...`: editing it runs ingest again; the same rows leave the rest cached."
    f = project/'mlnb'/'sources.py'
    f.write_text(f.read_text() + '\n# an edit that changes no behaviour\n')
    s = mlnb(project, 'status', 'params/small.yaml')
    assert re.search(r'ingest\s+will run\s+mlnb/sources.py changed', s.stdout), s.stdout
    r = mlnb(project, 'run', 'params/small.yaml')
    st = states(r)
    assert st['ingest'] == 'ok' and all(st[s] == 'cached' for s in STAGES[1:]), r.stdout

def test_deploy_reruns_when_the_registry_aliases_moved(project):
    "Deploy's gate reads the model's aliases: promoting a version by hand since it ran runs deploy again, and nothing else."
    r = mlnb(project, 'run', 'params/small.yaml')
    assert states(r)['deploy'] == 'cached', r.stdout
    v = latest(project)['stages']['deploy']['glued']['version']
    mlnb(project, 'models', 'promote', f'adult-income@{v}', '--alias', 'staging', '--registry', project/'outputs'/'registry')
    s = mlnb(project, 'status', 'params/small.yaml')
    assert re.search(r"deploy\s+will run\s+cached result unusable: the registry's aliases of adult-income changed since it ran \(.*→.*staging v%d" % v, s.stdout), s.stdout
    r = mlnb(project, 'run', 'params/small.yaml')
    st = states(r)
    assert st['deploy'] == 'ok' and all(st[s] == 'cached' for s in STAGES[:-1]), r.stdout
    assert states(mlnb(project, 'run', 'params/small.yaml'))['deploy'] == 'cached'   # the aliases deploy left are what it reads next

def test_parameter_change_runs_train_and_below(project):
    p = yaml.safe_load((project/'params'/'small.yaml').read_text())
    p['stages']['train']['params']['cv_folds'] = 3
    write_params(project/'params'/'small.yaml', p)
    s = mlnb(project, 'status', 'params/small.yaml')
    assert re.search(r'train\s+will run\s+parameter cv_folds 2 → 3', s.stdout), s.stdout
    r = mlnb(project, 'run', 'params/small.yaml')
    st = states(r)
    assert [st[s] for s in ['ingest', 'validate', 'prepare', 'features']] == ['cached'] * 4 and st['train'] == 'ok', r.stdout

def test_forced_upstream_with_identical_output_leaves_downstream_cached(project):
    r = mlnb(project, 'run', 'params/small.yaml', '--force', 'prepare')
    st = states(r)
    assert st['prepare'] == 'ok', r.stdout
    assert all(st[s] == 'cached' for s in ['features', 'train', 'evaluate', 'explain', 'deploy']), r.stdout

def test_data_file_content_and_touch(project):
    data = project/'data'/'adult.csv.gz'
    os.utime(data)                                              # touch alone: the content is the same
    r = mlnb(project, 'run', 'params/small.yaml')
    assert set(states(r).values()) == {'cached'}, r.stdout
    import gzip
    rows = gzip.decompress(data.read_bytes()).splitlines(keepends=True)
    data.write_bytes(gzip.compress(b''.join(rows[:1] + rows[1:][::-1]), mtime=0))   # same rows, other order: other content
    s = mlnb(project, 'status', 'params/small.yaml')
    assert re.search(r'ingest\s+will run\s+data file data/adult.csv.gz changed', s.stdout), s.stdout
    r = mlnb(project, 'run', 'params/small.yaml')
    assert states(r)['ingest'] == 'ok', r.stdout

def test_corrupted_cached_artifact_runs_again(project):
    m = latest(project)
    ref = m['stages']['train']['artifacts']['pipeline']
    run_dir = project/'outputs'/'runs'/m['run_id']
    p = run_dir/ref['path']
    data = bytearray(p.read_bytes()); data[len(data)//2] ^= 0xFF
    p.unlink(); p.write_bytes(bytes(data))                      # a new file: the links in other runs keep the good bytes
    s = mlnb(project, 'status', 'params/small.yaml')
    assert re.search(r'train\s+will run\s+cached result unusable: artifact pipeline .* changed', s.stdout), s.stdout
    r = mlnb(project, 'run', 'params/small.yaml')
    assert states(r)['train'] == 'ok' and states(r)['ingest'] == 'cached', r.stdout

def test_deploy_reruns_when_its_version_left_the_registry(project):
    m = latest(project)
    v = m['stages']['deploy']['glued']['version']
    import sqlite3
    con = sqlite3.connect(project/'outputs'/'registry'/'registry.db'); con.execute('delete from versions where version=?', (v,)); con.commit(); con.close()
    s = mlnb(project, 'status', 'params/small.yaml')
    assert re.search(rf'deploy\s+will run\s+cached result unusable: model adult-income v{v} is no longer in the registry', s.stdout), s.stdout

def test_partial_runs(project):
    r = mlnb(project, 'run', 'params/small.yaml', '--only', 'evaluate')
    st = states(r)
    assert st == {**{s: 'cached' for s in ['ingest', 'validate', 'prepare', 'features', 'train']}, 'evaluate': 'ok'}, r.stdout
    r = mlnb(project, 'run', 'params/small.yaml', '--until', 'prepare')
    assert list(states(r)) == ['ingest', 'validate', 'prepare'], r.stdout
    r = mlnb(project, 'run', 'params/small.yaml', '--only', 'nope', check=False)
    assert r.returncode == 2 and '--only nope: no such stage' in r.stderr

def test_partial_run_without_cached_upstream_is_a_clear_error(tmp_path):
    d = make_project(tmp_path)
    r = mlnb(d, 'run', 'params/small.yaml', '--only', 'validate', check=False)
    assert r.returncode == 2 and "stage 'ingest' has no usable cached result" in r.stderr and 'never run' in r.stderr, r.stderr

def test_sigkill_then_resume_and_two_runs_at_once(tmp_path):
    d = make_project(tmp_path)
    env = {**os.environ, 'PYTHONPATH': str(d), 'OMP_NUM_THREADS': '1'}
    p = subprocess.Popen([str(BIN/'mlnb'), 'run', 'params/small.yaml'], cwd=d, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True)
    for line in p.stdout:                                       # kill the whole run (runner, zygote, kernels) once train is running
        if line.startswith('  features'): time.sleep(0.3); os.killpg(p.pid, signal.SIGKILL); break
    p.wait(30)
    runs = mlnb(d, 'runs')
    assert 'abandoned' in runs.stdout, runs.stdout
    killed = latest(d)
    done = [s for s in STAGES if killed['stages'][s]['status'] == 'ok']
    assert done[:4] == ['ingest', 'validate', 'prepare', 'features'] and 'running' in [s['status'] for s in killed['stages'].values()]
    r = mlnb(d, 'run', '--resume')
    st = states(r)
    assert all(st[s] == 'cached' for s in done) and all(st[s] == 'ok' for s in STAGES if s not in done), r.stdout
    assert latest(d)['run_id'] != killed['run_id']
    # two runs at once on one cache: both complete, both all cached
    procs = [subprocess.Popen([str(BIN/'mlnb'), 'run', 'params/small.yaml'], cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.count(' cached ') >= len(STAGES), out + err

def test_cache_prune(tmp_path):
    d = make_project(tmp_path)
    p = yaml.safe_load((d/'params'/'small.yaml').read_text())
    p['stages'] = {k: v for k, v in p['stages'].items() if k in ('ingest', 'validate')}
    p['shared'] = {k: p['shared'][k] for k in ('target', 'seed')}      # a shared value no stage declares is an error
    write_params(d/'params'/'two.yaml', p)
    mlnb(d, 'run', 'params/two.yaml'); mlnb(d, 'run', 'params/two.yaml', '--force'); mlnb(d, 'run', 'params/two.yaml')
    assert len(list((d/'outputs'/'runs').iterdir())) == 3
    r = mlnb(d, 'cache', 'prune', '--keep', '1')
    assert 'removed 2 run(s)' in r.stdout, r.stdout
    assert len(list((d/'outputs'/'runs').iterdir())) == 1
    r = mlnb(d, 'run', 'params/two.yaml')
    assert set(states(r).values()) == {'cached'}, r.stdout           # the kept run still holds every cached result
