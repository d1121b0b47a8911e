"""Progress of running stages (issue 23.1): a stage's kernel sends it over a comm, `mlnb run` shows it as plain lines when its output
is not a terminal and as lines redrawn in place in one, and the executed notebook holds none of it (a user's tqdm still works)."""
import io, json, os, pty, select, subprocess, time
from conftest import MLNB, ROOT, write_params
from mlnb.progress import ProgressDisplay, progress, progress_line, progress_to, track

NB = 'tests/notebooks/progress.ipynb'   # four steps of 0.25 s through `track`, then a user's tqdm loop

def run_env(**extra) -> dict:
    return {**os.environ, 'OMP_NUM_THREADS': '1', **extra}

def test_lines_read_as_the_issue_shows_them():
    assert progress_line('train', dict(parts=[['trial', 12, 30], ['fold', 3, 5]], info={'best': 0.92914}), 80) == \
        '  train        running  trial 12/30 · fold 3/5 · best 0.9291 · 1m20s'
    assert progress_line('ingest', dict(parts=[['chunk', 3, None], ['row', 150000, None]]), 3725) == '  ingest       running  chunk 3 · row 150,000 · 1h02m'
    got = []
    with progress_to(got.append):   # a callback of one's own (mlnb predict's stderr): trial 3 ends the folds of trial 2
        for t in track(range(3), 'trial'):
            for f in track(range(5), 'fold'): pass
            progress('trial', t + 1, 3, best=0.9)
    assert got[-2:] == [dict(parts=[['trial', 3, 3]], info={'best': 0.9}), dict(parts=[], info={})], got   # then: the loop is over
    assert all(m['parts'][0][0] == 'trial' for m in got[:-1]) and len(got) < 15, got   # outer loop first; at most 5 a second, the ends always
    buf = io.StringIO(); d = ProgressDisplay(buf, live=False, every=3600)
    d.update('train'); d.update('train', dict(parts=[['fold', 1, 5]])); d.end('train', '  train        ok')
    assert buf.getvalue() == '  train        ok\n'   # a plain log: nothing sooner than `every` seconds, then the final line

def test_a_run_prints_plain_progress_lines_and_the_notebook_holds_none(tmp_path):
    p = write_params(tmp_path/'p.yaml', {'stages': {'work': {'notebook': NB}}})
    r = subprocess.run([MLNB, 'run', p, '--runs-dir', tmp_path/'runs', '--no-cache'], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=run_env(MLNB_PROGRESS_EVERY='0'))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    running = [l for l in lines if l.startswith('  work         running  step ')]
    assert running and running[-1].startswith('  work         running  step 4/4 · best 0.9300 · '), r.stdout
    assert '\x1b' not in r.stdout and '\r' not in r.stdout                      # not a terminal: plain lines
    assert lines.index(running[-1]) < next(i for i, l in enumerate(lines) if l.startswith('  work         ok'))
    nb = json.loads(next((tmp_path/'runs').glob('*/01_work.ipynb')).read_text())
    text = json.dumps([c.get('outputs', []) for c in nb['cells']]) + json.dumps(nb['metadata'])
    assert 'step 4' not in text and 'parts' not in text and 'mlnb.progress' not in text and 'widget' not in text   # no trace of the progress in the audit notebook
    assert 'user loop: 100%' in text and '3/3' in text                                   # the user's own tqdm bar is there as it always was

def test_a_terminal_gets_the_running_line_redrawn_in_place(tmp_path):
    p = write_params(tmp_path/'p.yaml', {'stages': {'work': {'notebook': NB, 'params': {'steps': 6}}}})
    master, slave = pty.openpty()
    proc = subprocess.Popen([MLNB, 'run', p, '--runs-dir', tmp_path/'runs', '--no-cache'], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=subprocess.PIPE, env=run_env(COLUMNS='100'))
    os.close(slave); out, end = b'', time.monotonic() + 120
    while time.monotonic() < end:
        if select.select([master], [], [], 0.5)[0]:
            try: chunk = os.read(master, 65536)
            except OSError: break   # the child closed the terminal
            if not chunk: break
            out += chunk
        elif proc.poll() is not None: break
    os.close(master); proc.wait(30)
    text = out.decode()
    assert proc.returncode == 0, text + proc.stderr.read().decode()
    assert '\x1b[1F\x1b[J' in text, text                                              # up one line, clear: the live line redrawn in place
    assert text.count('work         running  step ') >= 2 and 'step 6/6' in text, text
    assert '  work         ok' in text and text.rstrip().splitlines()[-1].startswith('report: '), text

def test_mlnb_predict_says_its_batches_on_stderr_and_scores_as_one_batch(tmp_path, monkeypatch, capsys):
    import mlnb.serve, pandas as pd, yaml
    from mlnb.cli import main
    from mlnb.deploy import reference_sample
    from mlnb.ingest import demo_data
    from mlnb.prepare import normalise_missing
    from mlnb.registry import Registry
    from mlnb.train import make_pipeline
    df = demo_data(600, 0); pipe = make_pipeline(df.drop(columns='income'), 'logistic', {}, 0).fit(df.drop(columns='income'), df['income'])
    schema = yaml.safe_load((ROOT/'params'/'default.yaml').read_text())['stages']['validate']['params']['schema']
    Registry(tmp_path/'reg').register('adult', pipe, schema=schema, reference=reference_sample(normalise_missing(df, ['?']), pipe, '>50K', 600, 0),
                                      metrics={'roc_auc': 0.9}, run_id='test-0')
    demo_data(250, 3).drop(columns='income').to_csv(tmp_path/'in.csv', index=False)
    monkeypatch.setenv('MLNB_PROGRESS_EVERY', '0'); monkeypatch.setattr(mlnb.serve, 'PREDICT_BATCH', 100)
    assert main(['predict', '--registry', str(tmp_path/'reg'), '--model', 'adult@1', str(tmp_path/'in.csv'), str(tmp_path/'b.csv')]) == 0
    err = capsys.readouterr().err
    assert '  predict      running  batch 3/3 · ' in err and '\x1b' not in err, err      # 250 rows: three batches of 100, on stderr
    monkeypatch.setattr(mlnb.serve, 'PREDICT_BATCH', 10**6)
    assert main(['predict', '--registry', str(tmp_path/'reg'), '--model', 'adult@1', str(tmp_path/'in.csv'), str(tmp_path/'one.csv')]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path/'b.csv'), pd.read_csv(tmp_path/'one.csv'))   # the same scores as in one batch

def test_a_dask_run_carries_the_progress_from_its_workers(tmp_path):
    p = write_params(tmp_path/'p.yaml', {'stages': {'work': {'notebook': NB, 'params': {'steps': 3}}}})
    r = subprocess.run([MLNB, 'run', p, '--runs-dir', tmp_path/'runs', '--no-cache', '--executor', 'dask', '--jobs', '1'], cwd=ROOT, capture_output=True,
                       text=True, timeout=180, env=run_env(MLNB_PROGRESS_EVERY='0'))
    assert r.returncode == 0, r.stdout + r.stderr
    assert '  work         running  step 3/3 · best 0.9200 · ' in r.stdout, r.stdout   # as Dask events from the worker's kernel
