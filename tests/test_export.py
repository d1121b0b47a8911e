"""Bridges (issue 23.5): a run exported to MLflow and read back with MlflowClient, the crontab line of `mlnb schedule` run
as cron would (twice at once: the lock lets one through), and the Airflow DAG of `mlnb export airflow` loaded against a
stand-in `airflow` package and its tasks run as Airflow would, into one run by `--run-id`."""
import contextlib, datetime as dt, io, json, os, shlex, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import pytest
from conftest import ROOT, mlnb, write_params
from mlnb.cli import main, parser
from mlnb.export import cron_line
from mlnb.pipeline import load_manifest

def cli(*args) -> tuple:
    "`mlnb ARGS` in this process (MLflow is imported once): exit code, stdout, stderr."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()

def test_runs_export_to_mlflow_reads_back_as_the_manifest_says(small_run, tmp_path, monkeypatch):
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient
    _, run_dir, _ = small_run
    assert run_dir is not None, 'the small run made no run folder'
    man, uri = load_manifest(run_dir), f'file:{tmp_path/"mlruns"}'
    monkeypatch.setenv('MLFLOW_ALLOW_FILE_STORE', 'true')                          # as `mlnb runs export` sets it for a file: store
    c = MlflowClient(tracking_uri=uri)
    exp = c.create_experiment('adult')
    stale = c.create_run(exp, tags={'mlnb.run_id': man['run_id']}).info.run_id   # an export that stopped half-way: RUNNING
    rc, out, err = cli('runs', 'export', man['run_id'][:15], '--mlflow', uri, '--experiment', 'adult', '--runs-dir', run_dir.parent)
    assert rc == 0 and f"run {man['run_id']} → MLflow run" in out, out + err
    runs = c.search_runs([exp], f"tags.`mlnb.run_id` = '{man['run_id']}'", run_view_type=ViewType.ALL)
    live = [r for r in runs if r.info.lifecycle_stage == 'active']
    assert len(live) == 1 and live[0].info.run_id != stale and c.get_run(stale).info.lifecycle_stage == 'deleted'
    r = live[0]
    assert r.info.status == 'FINISHED' and r.info.run_name == man['run_id']
    # parameters: what each stage received, as stage.param, without the runner's paths
    for n, st in man['stages'].items():
        for p, v in st['parameters'].items():
            key = f'{n}.{p}'
            if p in ('upstream', 'artifacts', 'run_id', 'run_params'): assert key not in r.data.params
            elif not isinstance(v, dict): assert r.data.params[key] == (v if isinstance(v, str) else json.dumps(v)), key
    assert r.data.params['train.cv_folds'] == '2' and r.data.params['validate.schema.age.ge'] == '17'
    # metrics: every glued number but the volatile ones (timings)
    want = {f'{n}.{k}': float(v) for n, st in man['stages'].items() for k, v in st['glued'].items()
            if type(v) in (int, float) and v == v and k not in st['glued'].get('volatile', [])}
    assert r.data.metrics == pytest.approx(want) and 'train.fit_seconds' not in r.data.metrics
    assert r.data.metrics['evaluate.roc_auc'] == man['stages']['evaluate']['glued']['roc_auc']
    # tags
    t, g = r.data.tags, man['git']
    assert (t['mlnb.run_id'], t['mlnb.status'], t['mlnb.params_file'], t['mlnb.headline']) == (man['run_id'], 'ok', man['params_file'], 'evaluate.roc_auc')
    assert t['mlnb.git_commit'] == t['mlflow.source.git.commit'] == g['commit'] and t['mlnb.git_dirty'] == str(g['dirty']).lower()
    # artifacts: the executed notebooks, their HTML, the report, the manifest and the parameter file, byte for byte
    names = {a.path for a in c.list_artifacts(r.info.run_id)}
    outs = [st['output'] for st in man['stages'].values()]
    assert names == {*outs, *(o.replace('.ipynb', '.html') for o in outs), 'report.html', 'run.json', 'params.yaml'}
    got = Path(c.download_artifacts(r.info.run_id, outs[-1], str(tmp_path/'dl')))
    assert got.read_bytes() == (run_dir/outs[-1]).read_bytes()
    # again: nothing new
    rc, out, _ = cli('runs', 'export', '--mlflow', uri, '--experiment', 'adult', '--runs-dir', run_dir.parent)
    assert rc == 0 and 'exported before' in out and r.info.run_id in out
    assert len(c.search_runs([exp], f"tags.`mlnb.run_id` = '{man['run_id']}'")) == 1

def test_runs_export_refuses_what_it_cannot_export(small_run, tmp_path):
    _, run_dir, _ = small_run
    rc, _, err = cli('runs', 'export', '--runs-dir', run_dir.parent)
    assert rc == 2 and '--mlflow URI' in err
    busy = tmp_path/'runs'/'20990101-000000.000-busy'; busy.mkdir(parents=True)     # a run still going: this process
    (busy/'run.json').write_text(json.dumps({**load_manifest(run_dir), 'run_id': busy.name, 'status': 'running', 'pid': os.getpid()}))
    rc, _, err = cli('runs', 'export', '--mlflow', f'file:{tmp_path/"m"}', '--runs-dir', tmp_path/'runs')
    assert rc == 2 and f'run {busy.name} is still running' in err, err
    rc, _, err = cli('runs', '--mlflow', 'file:/x')
    assert rc == 2 and 'go with `mlnb runs export' in err

def test_schedule_line_runs_under_a_lock(tmp_path):
    rc, out, _ = cli('schedule', ROOT/'params/default.yaml', '--cron', '0 3 * * *', '--monitor-data', ROOT/'data/adult.csv.gz', '--model', 'adult-income')
    assert rc == 0 and out.startswith(f'0 3 * * * cd {ROOT} && flock -n outputs/schedule-default.lock sh -c ')
    assert "mlnb run params/default.yaml; " in out and 'mlnb monitor --model adult-income --data data/adult.csv.gz' in out
    for bad, says in (('0 3 * *', '5 fields'), ('0 3 * * 9', 'day of week field'), ('61 * * * *', 'minute field')):
        rc, _, err = cli('schedule', ROOT/'params/default.yaml', '--cron', bad)
        assert rc == 2 and says in err, err
    rc, _, err = cli('schedule', ROOT/'params/default.yaml', '--cron', '0 3 * * *', '--model', 'm')
    assert rc == 2 and '--monitor-data FILE and --model M go together' in err
    # the line as cron runs it, with a stand-in mlnb that takes 1 s: a second start while the first runs is skipped
    fake = tmp_path/'mlnb'; fake.write_text('#!/bin/sh\necho "mlnb $*"; sleep 1\n'); fake.chmod(0o755)
    proj = tmp_path/'proj'; (proj/'outputs').mkdir(parents=True); (proj/'params').mkdir(); (proj/'params'/'p.yaml').write_text('stages: {a: {}}\n')
    line = cron_line(proj/'params/p.yaml', '*/5 * * * *', proj, monitor_data=proj/'new.csv', model='m', mlnb=str(fake))
    command = line.split(' ', 5)[5]
    first = subprocess.Popen(['sh', '-c', command]); time.sleep(0.3)
    second = subprocess.run(['sh', '-c', command], timeout=10)
    assert first.wait(timeout=20) == 0 and second.returncode == 1      # flock -n: the second gave up at once
    log = (proj/'outputs'/'schedule-p.log').read_text().splitlines()
    assert log[1:] == [f'mlnb run params/p.yaml', 'mlnb monitor --model m --data new.csv'], log

STUB = '''
import json, sys
class DAG:
    def __init__(self, **kw): self.kw, self.tasks, self.edges = kw, {}, []
    def __enter__(self): DAG.current = self; return self
    def __exit__(self, *a): DAG.current = None
'''
BASH = '''
from airflow import DAG
class BashOperator:
    def __init__(self, task_id, bash_command): self.task_id, self.bash_command = task_id, bash_command; DAG.current.tasks[task_id] = bash_command
    def __rshift__(self, other): DAG.current.edges.append([self.task_id, other.task_id]); return other
'''

def load_dag(path: Path, tmp_path: Path) -> dict:
    "Run the DAG file against a stand-in `airflow` package (Airflow 2's import path); its id, schedule, tasks and edges."
    pkg = tmp_path/'stub'/'airflow'; (pkg/'operators').mkdir(parents=True)
    (pkg/'__init__.py').write_text(STUB); (pkg/'operators'/'__init__.py').write_text(''); (pkg/'operators'/'bash.py').write_text(BASH)
    code = f'import runpy, json; d = runpy.run_path({str(path)!r})["dag"]; print(json.dumps(dict(kw=d.kw, tasks=d.tasks, edges=d.edges), default=str))'
    r = subprocess.run([sys.executable, '-c', code], env={**os.environ, 'PYTHONPATH': str(tmp_path/'stub')}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)

TINY = {'cells': [{'cell_type': 'code', 'id': 'p', 'metadata': {'tags': ['parameters']}, 'outputs': [], 'execution_count': None,
                   'source': 'upstream: dict = {}  # set by the runner\nseconds: float = 0  # how long to work'},
                  {'cell_type': 'code', 'id': 'w', 'metadata': {}, 'outputs': [], 'execution_count': None,
                   'source': "import time\nfrom mlnb.core import glue\ntime.sleep(seconds)\nglue('slept', seconds)"}],
        'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}}, 'nbformat': 4, 'nbformat_minor': 5}

def test_airflow_dag_runs_its_stages_into_one_run(tmp_path):
    "A three-stage DAG (a, then b and c at once) of a notebook that only sleeps and glues: the run folder and its manifest are what is tested."
    import ast, jinja2
    nb = tmp_path/'tiny.ipynb'; nb.write_text(json.dumps(TINY))
    p = write_params(tmp_path/'tiny.yaml', {'stages': {'a': {'notebook': str(nb)}, 'b': {'notebook': str(nb), 'upstream': ['a'], 'params': {'seconds': 0.5}},
                                                       'c': {'notebook': str(nb), 'upstream': ['a'], 'params': {'seconds': 0.5}}}})
    rc, out, err = cli('export', 'airflow', p, '--out', tmp_path/'dag.py', '--cron', '30 2 * * *', '--runs-dir', tmp_path/'runs')
    assert rc == 0 and out == f"airflow DAG: {tmp_path/'dag.py'}\n", out + err
    ast.parse((tmp_path/'dag.py').read_text())
    dag = load_dag(tmp_path/'dag.py', tmp_path)
    assert (dag['kw']['dag_id'], dag['kw']['schedule'], dag['kw']['max_active_runs']) == ('mlnb_tiny', '30 2 * * *', 1)
    assert list(dag['tasks']) == ['a', 'b', 'c'] and sorted(map(tuple, dag['edges'])) == [('a', 'b'), ('a', 'c')]
    # each task's command, rendered as Airflow renders it for one DAG run, is a `mlnb run --only STAGE` of that run's id
    start = dt.datetime(2026, 12, 6, 3, 0, 0, 123456, tzinfo=dt.timezone.utc)
    cmds = {t: jinja2.Template(c).render(dag_run=type('DagRun', (), {'start_date': start})) for t, c in dag['tasks'].items()}
    run_id = '20261206-030000.123-airflow'
    for t, c in cmds.items():
        cd, argv = c.split(' && ', 1)
        a = parser().parse_args(shlex.split(argv)[1:])
        assert cd == f'cd {ROOT}' and (a.cmd, a.only, a.run_id, a.runs_dir) == ('run', t, run_id, str(tmp_path/'runs')), c
    # run them in the DAG's order, b and c at once, as Airflow would: one run folder with every stage, both branches kept
    sh = lambda t: subprocess.run(['sh', '-c', cmds[t]], capture_output=True, text=True, timeout=120)
    assert (r := sh('a')).returncode == 0, r.stdout + r.stderr
    with ThreadPoolExecutor(2) as pool: rs = list(pool.map(sh, ['b', 'c']))
    assert all(r.returncode == 0 for r in rs), [r.stdout + r.stderr for r in rs]
    assert [d.name for d in (tmp_path/'runs').iterdir() if d.is_dir()] == [run_id]
    m = load_manifest(tmp_path/'runs'/run_id)
    assert m['status'] == 'ok' and 'partial' not in m and {n: s['status'] for n, s in m['stages'].items()} == dict.fromkeys('abc', 'ok')
    assert [m['stages'][n]['glued']['slept'] for n in 'abc'] == [0, 0.5, 0.5]
    assert all((tmp_path/'runs'/run_id/m['stages'][n]['output']).exists() for n in 'abc')
    assert m['run_id'] in (tmp_path/'runs'/run_id/'report.html').read_text()
    # a run of that id from other parameters is refused, not mixed in
    write_params(tmp_path/'other.yaml', {'stages': {'a': {'notebook': str(nb), 'params': {'seconds': 0.1}}}})
    r = mlnb('run', tmp_path/'other.yaml', '--only', 'a', '--run-id', run_id, '--runs-dir', tmp_path/'runs')
    assert r.returncode == 2 and f'--run-id {run_id}: that run has other parameters' in r.stderr, r.stderr
