"Serving, batch scoring and monitoring follow the task registered with the model: a regressor, a multiclass classifier, a binary one with 0/1 labels."
import http.client, json, os, socket, subprocess, time
from contextlib import contextmanager
from pathlib import Path
import numpy as np, pandas as pd, pytest, yaml
from mlnb.evaluate import classification_metrics, multiclass_metrics, regression_metrics
from mlnb.ingest import demo_data
from mlnb.prepare import normalise_missing
from mlnb.registry import Registry
from mlnb.train import make_pipeline
from conftest import MLNB, ROOT, mlnb

SCHEMA = yaml.safe_load((ROOT/'params'/'default.yaml').read_text())['stages']['validate']['params']['schema']
SCHEMA = dict(SCHEMA, rich={'dtype': 'int', 'isin': [0, 1]})
KEY = 'test-key-0123456789'

def adult(n, seed, markers=False):
    "Adult rows with missing values (or, as in its files, `?` markers), and `rich`: the income class as 0/1."
    df = demo_data(n, seed) if markers else normalise_missing(demo_data(n, seed), ['?'])
    return df.assign(rich=(df.pop('income') == '>50K').astype(int))

def register(reg, name, target, task, model='hgb', params=None, threshold=None):
    "Fit `model` for `target` on 2,000 rows, keep a reference sample with the model's output as deploy does, register and promote it."
    df, test = adult(2000, 0), adult(600, 9)
    drop = [target] + (['rich'] if target != 'rich' else [])
    X = df.drop(columns=drop); pipe = make_pipeline(X, model, params or {}, 0, task=task).fit(X, df[target])
    Xt, ref = test.drop(columns=drop), df.sample(800, random_state=0).reset_index(drop=True)
    if task == 'regression':
        metrics, ref = regression_metrics(test[target], pipe.predict(Xt)), ref.assign(_prediction=pipe.predict(ref[X.columns]))
        info = dict(task=task, target=target, classes=[], positive=None)
    elif task == 'multiclass':
        classes = [str(c) for c in pipe.classes_]
        metrics, ref = multiclass_metrics(test[target], pipe.predict_proba(Xt), classes), ref.assign(_prediction=pipe.predict(ref[X.columns]).astype(str))
        info = dict(task=task, target=target, classes=classes, positive=None)
    else:
        metrics = classification_metrics(test[target], pipe.predict_proba(Xt)[:, 1], 1)
        ref, info = ref.assign(_proba=pipe.predict_proba(ref[X.columns])[:, 1]), dict(task=task, target=target, classes=['0', '1'], positive='1')
    v = reg.register(name, pipe, schema=SCHEMA, reference=ref, metrics=metrics, run_id='test-tasks', task=info, threshold=threshold)
    reg.promote(f'{name}@{v}')
    return pipe

@pytest.fixture(scope='module')
def models(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp('registry'))
    return reg, dict(hours=register(reg, 'hours', 'hours-per-week', 'regression', params={'max_iter': 40}),
                     rel=register(reg, 'rel', 'relationship', 'multiclass', params={'max_iter': 20}),
                     rich=register(reg, 'rich', 'rich', 'binary', 'random_forest', {'n_estimators': 30}))

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def call(port, method, path, body=None, conn=None):
    "`(status, JSON reply, headers)` of one request."
    c = conn or http.client.HTTPConnection('127.0.0.1', port, timeout=60)
    c.request(method, path, body=body if isinstance(body, (str, bytes)) or body is None else json.dumps(body), headers={'X-API-Key': KEY})
    r = c.getresponse(); out = (r.status, json.loads(r.read() or b'null'), {k.lower(): v for k, v in r.getheaders()})
    if conn is None: c.close()
    return out

@contextmanager
def server(reg, model, log, *extra):
    "`mlnb serve --model MODEL` in a subprocess on a free loopback port, stopped on exit."
    port, out = free_port(), Path(str(log) + '.server-output')
    with open(out, 'w') as f:
        proc = subprocess.Popen([MLNB, 'serve', '--registry', reg.root, '--model', model, '--port', str(port), '--log', log, *extra],
                                env={**os.environ, 'MLNB_API_KEYS': KEY, 'OMP_NUM_THREADS': '1'}, stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            try:
                if call(port, 'GET', '/health')[0] == 200: break
            except OSError: time.sleep(0.3)
        yield port
    finally:
        proc.terminate()
        try: proc.wait(15)
        except subprocess.TimeoutExpired: proc.kill()

def records(n, seed, drop):
    df = adult(n, seed).drop(columns=drop)
    return json.loads(df.to_json(orient='records')), df

def log_lines(path, n, timeout=10):
    deadline = time.monotonic() + timeout
    while len(lines := path.read_text().splitlines()) < n and time.monotonic() < deadline: time.sleep(0.05)
    return [json.loads(l) for l in lines]

def glued(runs_dir):
    return json.loads(next(Path(runs_dir).glob('*/run.json')).read_text())['stages']['monitor']['glued']

def test_regression_replies_numbers(models, tmp_path):
    reg, pipes = models
    recs, df = records(40, 1, ['hours-per-week', 'rich'])
    want = pipes['hours'].predict(df)
    with server(reg, 'hours', tmp_path/'p.jsonl', '--max-text-chars', '50') as port:
        st, m, _ = call(port, 'GET', '/model')
        assert st == 200 and m['task'] == dict(task='regression', target='hours-per-week', classes=[], positive=None) and m['scorer'] == 'FastScorer'
        st, one, h = call(port, 'POST', '/predict', recs[0])
        assert st == 200 and h['x-mlnb-scorer'] == 'fast-trees' and 'probabilities' not in one
        assert isinstance(one['predictions'][0], float) and abs(one['predictions'][0] - want[0]) <= 1e-6
        st, many, h = call(port, 'POST', '/predict', recs)
        assert st == 200 and h['x-mlnb-scorer'] == 'fast-model' and np.abs(np.array(many['predictions']) - want).max() <= 1e-6
        st, r, _ = call(port, 'POST', '/predict', dict(recs[0], occupation='x' * 51))
        assert st == 422 and r['detail'][0]['field'] == 'occupation' and '51 characters long' in r['detail'][0]['error'] and '--max-text-chars' in r['detail'][0]['error']
        st, r, _ = call(port, 'POST', '/predict', dict(recs[0], occupation=7))
        assert st == 422 and 'expected a string, got 7' in r['detail'][0]['error']
        lines = log_lines(tmp_path/'p.jsonl', 41)
    assert len(lines) == 41 and all('probabilities' not in l for l in lines)
    assert [l['prediction'] for l in lines] == [one['predictions'][0]] + many['predictions']

def test_multiclass_replies_every_class(models, tmp_path):
    reg, pipes = models
    recs, df = records(40, 2, ['relationship', 'rich'])
    want, classes = pipes['rel'].predict_proba(df), [str(c) for c in pipes['rel'].classes_]
    assert len(classes) == 6
    with server(reg, 'rel', tmp_path/'p.jsonl') as port:
        for body, path in ((recs[:3], 'fast-trees'), (recs, 'fast-model')):
            st, r, h = call(port, 'POST', '/predict', body)
            assert st == 200 and h['x-mlnb-scorer'] == path
            assert all(list(p) == classes for p in r['probabilities'])
            got = np.array([[p[c] for c in classes] for p in r['probabilities']])
            assert np.abs(got - want[:len(body)]).max() <= 1e-6
            assert r['predictions'] == [classes[k] for k in want[:len(body)].argmax(axis=1)]
        log_lines(tmp_path/'p.jsonl', 43)
    r = mlnb('monitor', '--model', 'rel', '--registry', reg.root, '--log', tmp_path/'p.jsonl', '--runs-dir', tmp_path/'monitor')
    assert r.returncode in (0, 3), r.stdout + r.stderr
    g = glued(tmp_path/'monitor')
    assert (g['task'], g['target'], g['rows'], g['prediction_what'], g['labelled']) == ('multiclass', 'relationship', 43, 'predicted class', False)
    assert 'rel v1 (multiclass, target relationship), 43 rows: ' in r.stdout and 'no relationship labels' in r.stdout

def test_binary_with_0_1_labels(models, tmp_path):
    reg, pipes = models
    recs, df = records(5, 3, ['rich'])
    with server(reg, 'rich', tmp_path/'p.jsonl') as port:
        st, r, h = call(port, 'POST', '/predict', recs)
        assert st == 200 and h['x-mlnb-scorer'] == 'fast-trees'
        assert set(r['predictions']) <= {0, 1} and all(list(p) == ['0', '1'] for p in r['probabilities'])
        assert np.abs(np.array([p['1'] for p in r['probabilities']]) - pipes['rich'].predict_proba(df)[:, 1]).max() <= 1e-6
    adult(1500, 4, markers=True).to_csv(tmp_path/'batch.csv', index=False)
    r = mlnb('monitor', '--model', 'rich', '--registry', reg.root, '--data', tmp_path/'batch.csv', '--runs-dir', tmp_path/'monitor')
    assert r.returncode in (0, 3), r.stdout + r.stderr
    g = glued(tmp_path/'monitor')
    assert (g['task'], g['target'], g['prediction_what'], g['labelled']) == ('binary', 'rich', 'probability of 1', True)
    assert 0.8 < g['metrics']['roc_auc'] <= 1 and {p['metric'] for p in g['performance']} == {'roc_auc', 'log_loss'}
    assert 'rich v1 (binary, target rich), 1,500 rows: ' in r.stdout and 'performance' in r.stdout

def test_a_registered_threshold_decides_the_binary_label(models, tmp_path):
    reg, _ = models
    pipe = register(reg, 'rich-cut', 'rich', 'binary', 'random_forest', {'n_estimators': 30}, threshold=0.7)
    recs, df = records(40, 5, ['rich'])
    p1 = pipe.predict_proba(df)[:, 1]
    assert ((p1 >= 0.5) & (p1 < 0.7)).any()                     # rows the usual 0.5 would call 1
    with server(reg, 'rich-cut', tmp_path/'p.jsonl') as port:
        st, r, _ = call(port, 'POST', '/predict', recs)
        assert st == 200 and r['predictions'] == [1 if p >= 0.7 else 0 for p in p1]
        st, m, _ = call(port, 'GET', '/model')
        assert m['task']['threshold'] == 0.7
    adult(40, 5, markers=True).drop(columns=['rich']).to_csv(tmp_path/'in.csv', index=False)   # as in the files: `?` for missing
    r = mlnb('predict', '--model', 'rich-cut', '--registry', reg.root, tmp_path/'in.csv', tmp_path/'out.csv')
    assert r.returncode == 0, r.stdout + r.stderr
    assert pd.read_csv(tmp_path/'out.csv')['prediction'].tolist() == [1 if p >= 0.7 else 0 for p in p1]

def test_regression_batch_predict_and_monitor(models, tmp_path):
    reg, pipes = models
    df = adult(300, 5, markers=True); df.to_csv(tmp_path/'in.csv', index=False)
    r = mlnb('predict', '--registry', reg.root, '--model', 'hours', tmp_path/'in.csv', tmp_path/'out.csv')
    assert r.returncode == 0, r.stderr
    out = pd.read_csv(tmp_path/'out.csv')
    assert out['prediction'].dtype == float and not [c for c in out if c.startswith('proba_')]
    assert np.abs(out['prediction'].to_numpy() - pipes['hours'].predict(df.drop(columns=['hours-per-week', 'rich']))).max() <= 1e-6
    batch = adult(1500, 6, markers=True); batch.loc[batch.index[:900], 'age'] += 15                      # older workers: inputs move
    batch.to_csv(tmp_path/'batch.csv', index=False)
    r = mlnb('monitor', '--model', 'hours', '--registry', reg.root, '--data', tmp_path/'batch.csv', '--runs-dir', tmp_path/'monitor')
    assert r.returncode in (0, 3), r.stdout + r.stderr
    g = glued(tmp_path/'monitor')
    assert (g['task'], g['target'], g['prediction_what'], g['labelled']) == ('regression', 'hours-per-week', 'predicted hours-per-week', True)
    assert {'rmse', 'mae', 'r2'} <= set(g['metrics']) and 5 < g['metrics']['rmse'] < 20 and {p['metric'] for p in g['performance']} == {'rmse', 'mae'}
    assert 'age' in g['drifted_columns'] and g['n_columns'] == 13
    assert f"hours v1 (regression, target hours-per-week), 1,500 rows: " in r.stdout and 'age' in r.stdout.splitlines()[-2]
    assert ('DRIFT' in r.stdout) == g['drift_detected'] and (r.returncode == 3) == (g['drift_detected'] or g['performance_drop'])

# --- a text model: the review column judged by its length and the model's vocabulary ----------------------------------------

def scramble(texts: pd.Series, seed: int = 0) -> pd.Series:
    "Each word's letters shuffled: the same number of words, hardly one the model knows."
    import re
    rng = np.random.default_rng(seed)
    return texts.map(lambda t: re.sub(r'\w+', lambda m: ''.join(rng.permutation(list(m[0]))), t))

@pytest.fixture(scope='module')
def reviews(tmp_path_factory):
    "A multiclass text model (Rating from the review text, age and department) on 400 reviews, registered with them as its reference; the other reviews."
    from mlnb.features import infer_roles, make_preprocessor
    from mlnb.train import compose
    d = pd.read_csv(ROOT/'data'/'womens_clothing_reviews.csv.gz', nrows=1500).dropna(subset=['Review Text']).reset_index(drop=True)
    d['Rating'] = d['Rating'].astype(str); cols = ['Review Text', 'Age', 'Department Name']
    train, rest = d.iloc[:400], d.iloc[400:]
    roles = infer_roles(train[cols]); assert roles.set_index('column').role['Review Text'] == 'text'
    pipe = compose(make_preprocessor(roles, 'linear', 'multiclass'), 'linear', {}, 0, [], 'multiclass').fit(train[cols], train['Rating'])
    classes = [str(c) for c in pipe.classes_]
    reg = Registry(tmp_path_factory.mktemp('registry'))
    v = reg.register('reviews', pipe, schema={}, reference=train[cols + ['Rating']].assign(_prediction=pipe.predict(train[cols])),
                     metrics=multiclass_metrics(rest['Rating'][:300], pipe.predict_proba(rest[cols][:300]), classes), run_id='test-tasks',
                     task=dict(task='multiclass', target='Rating', classes=classes, positive=None))
    reg.promote(f'reviews@{v}')
    return reg, rest[cols].sample(400, random_state=1).reset_index(drop=True)

def monitor_reviews(reg, batch, tmp_path):
    batch.to_csv(tmp_path/'batch.csv', index=False)
    r = mlnb('monitor', '--model', 'reviews', '--registry', reg.root, '--data', tmp_path/'batch.csv', '--runs-dir', tmp_path/'monitor')
    assert r.returncode in (0, 3), r.stdout + r.stderr
    g = glued(tmp_path/'monitor')
    return r, g, {row['column']: row for row in g['drift_table']}

def test_monitor_text_column_stable_on_other_reviews(reviews, tmp_path):
    reg, batch = reviews
    r, g, rows = monitor_reviews(reg, batch, tmp_path)
    t = rows['Review Text']
    assert (t['kind'], t['method'], t['drift']) == ('text', 'length+oov', False) and rows['Department Name']['kind'] == 'cat'
    assert 0 < g['text_drift']['Review Text']['oov_ref'] < g['text_drift']['Review Text']['oov_cur'] < t['oov_ref'] + 0.1
    assert 'Review Text' not in g['drifted_columns'] and 'reviews v1 (multiclass, target Rating), 400 rows: ' in r.stdout
    assert 'out-of-vocabulary share' in next((tmp_path/'monitor').glob('*/01_monitor.ipynb')).read_text()

def test_monitor_text_column_drifts_on_scrambled_words(reviews, tmp_path):
    reg, batch = reviews
    r, g, rows = monitor_reviews(reg, batch.assign(**{'Review Text': scramble(batch['Review Text'])}), tmp_path)
    t = rows['Review Text']
    assert t['drift'] and t['oov_drift'] and t['oov_cur'] > 0.5 and not t['length_drift']     # as many words, but unreadable
    assert g['drifted_columns'] == ['Review Text'] and 'Review Text' in r.stdout.splitlines()[-2]
