"Issue 21 end to end through `mlnb monitor` (items 1-8): a batch chunked by month, drift in the one month that moved, its alerts posted to a real webhook on loopback and kept in the history `mlnb monitor history` reads; labels that arrived later joined to a prediction log, with realized performance per chunk."
import http.server, json, threading
import numpy as np, pandas as pd, pytest
from sklearn.metrics import roc_auc_score
from mlnb.ingest import read_table
from mlnb.predlog import PredictionLog
from mlnb.registry import Registry
from conftest import mlnb

NO_DRIFT, FAILED, USAGE, ALERT = 0, 1, 2, 3   # as in test_monitor.py

class Hook(http.server.BaseHTTPRequestHandler):
    "A webhook that accepts every POST and keeps its JSON body."
    def do_POST(self):
        self.server.got.append(json.loads(self.rfile.read(int(self.headers['content-length']))))
        self.send_response(200); self.send_header('content-length', '0'); self.end_headers()
    def log_message(self, *a): pass

@pytest.fixture
def hook():
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Hook); srv.got = []
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield srv
    srv.shutdown(); srv.server_close()

def months(seed: int, n: int = 3000) -> pd.DataFrame:
    "`n` Adult rows dated evenly over January to March 2024, age +15 years in March, without labels."
    df = read_table('data/adult.csv.gz').sample(n, random_state=seed).reset_index(drop=True).drop(columns=['income'])
    df['date'] = (pd.Timestamp('2024-01-01') + pd.to_timedelta(np.arange(n) * 91 // n, unit='D')).strftime('%Y-%m-%d')
    df.loc[df.date >= '2024-03', 'age'] += 15
    return df

def glued(tmp_path):
    "What the newest monitor run under `tmp_path/monitor` glued."
    run = max((tmp_path/'monitor').glob('*/run.json'), key=lambda f: f.stat().st_mtime_ns)
    return json.loads(run.read_text())['stages']['monitor']['glued'], run.parent.name

def test_month_chunks_alert_only_where_age_moved_posted_and_kept(small_run, hook, tmp_path):
    _, _, d = small_run
    months(31).to_csv(tmp_path/'batch.csv', index=False)
    url = f'http://127.0.0.1:{hook.server_address[1]}/hooks/mlnb?token=secret'
    r = mlnb('monitor', '--model', 'adult-income', '--registry', d/'registry', '--data', tmp_path/'batch.csv', '--chunk-by', 'date', '--period', 'month',
             '--alert-url', url, '--runs-dir', tmp_path/'monitor')
    g, run_id = glued(tmp_path)
    assert r.returncode == ALERT, r.stdout + r.stderr
    by = {c: [x for x in g['results'] if x['chunk'] == c] for c in ('2024-01', '2024-02', '2024-03')}
    wd = {c: next(x for x in rows if x['metric'] == 'weighted_drift') for c, rows in by.items()}
    assert [wd[c]['alert'] for c in by] == [False, False, True] and wd['2024-03']['value'] > 2 * wd['2024-01']['value'], wd
    assert 'DRIFT ALERT in 1 of 3 chunk(s): 2024-03' in r.stdout and 'driven by age' in r.stdout, r.stdout
    est = [x for x in g['results'] if x['kind'] == 'estimated' and x['metric'] == 'roc_auc']
    assert len(est) == 3 and all(0.8 < x['value'] < 1 and x['lower'] < x['upper'] for x in est), est   # estimated without labels
    assert not g['labelled'] and 'realized' not in {x['kind'] for x in g['results']}
    # the webhook got one alert per alerting (chunk, metric, kind), all in March, each naming age
    assert hook.got and {a['chunk'] for a in hook.got} == {'2024-03'} and len(hook.got) == len(g['alerts']), hook.got
    assert {(a['metric'], a['kind']) for a in hook.got} >= {('weighted_drift', 'drift')} and all('age' in a['top_columns'] for a in hook.got)
    assert all(a['model'] == 'adult-income' and a['run_id'] == run_id and a['band'][1] is not None for a in hook.got)
    assert 'alert sent to http://127.0.0.1' in r.stdout and 'secret' not in r.stdout + r.stderr
    # kept in the history, read back by `mlnb monitor history`
    h = mlnb('monitor', 'history', 'adult-income', '--registry', d/'registry', '--metric', 'weighted_drift', '--plot', tmp_path/'wd.png')
    assert h.returncode == 0, h.stdout + h.stderr
    rows = [l for l in h.stdout.splitlines() if run_id in l]
    assert [l.split()[4] for l in rows] == ['2024-01', '2024-02', '2024-03'] and rows[2].rstrip().endswith('!') and not rows[0].rstrip().endswith('!'), h.stdout
    assert (tmp_path/'wd.png').read_bytes()[:4] == b'\x89PNG'

def test_labels_joined_to_a_log_give_realized_performance_per_chunk(small_run, tmp_path):
    "A prediction log of 1,200 records with ids; labels for 900 of them arrive later, a third of those wrong: realized per chunk, as sklearn measures it, next to the estimate."
    _, _, d = small_run
    mv = Registry(d/'registry').load('adult-income')
    df = read_table('data/adult.csv.gz').sample(1200, random_state=32).reset_index(drop=True)
    X = df[mv.meta['features']]
    proba = mv.pipeline.predict_proba(X)[:, list(mv.pipeline.classes_).index('>50K')]
    ids = [f'req-{i}' for i in range(len(df))]
    resp = dict(model='adult-income', version=int(mv.version), predictions=np.where(proba > 0.5, '>50K', '<=50K').tolist(), probabilities=proba.tolist(), ids=ids, request_id='batch')
    cols = {c: [None if pd.isna(v) else v for v in X[c].tolist()] for c in X.columns}
    log = PredictionLog(tmp_path/'pred.jsonl'); log.write(cols, resp); log.close()   # as the server writes it
    labels = df[['income']].assign(id=ids).iloc[:900].copy()
    wrong = labels.index[labels.index % 3 == 0]
    labels.loc[wrong, 'income'] = labels.loc[wrong, 'income'].map({'>50K': '<=50K', '<=50K': '>50K'})
    labels.sample(frac=1, random_state=0).to_csv(tmp_path/'labels.csv', index=False)   # labels arrive in any order
    r = mlnb('monitor', '--model', 'adult-income', '--registry', d/'registry', '--log', tmp_path/'pred.jsonl', '--labels', tmp_path/'labels.csv',
             '--join-on', 'id', '--chunk-size', '400', '--retrain', '--runs-dir', tmp_path/'monitor')
    g, _ = glued(tmp_path)
    assert g['label_join']['labelled'] == 900 and g['label_join']['on'] == '_id' and g['chunks'] == 3, (g.get('label_join'), r.stdout + r.stderr)
    real = {x['chunk']: x['value'] for x in g['results'] if x['kind'] == 'realized' and x['metric'] == 'roc_auc'}
    y = labels.sort_index()['income'].eq('>50K').to_numpy()
    assert real.keys() == {'rows 0–399', 'rows 400–799', 'rows 800–1199'}
    assert real['rows 0–399'] == pytest.approx(roc_auc_score(y[:400], proba[:400]), abs=1e-9)
    assert real['rows 800–1199'] == pytest.approx(roc_auc_score(y[800:900], proba[800:900]), abs=1e-9)   # the 100 labelled rows of the last chunk
    est = {x['chunk']: x['value'] for x in g['results'] if x['kind'] == 'estimated' and x['metric'] == 'roc_auc'}
    assert all(e > real[c] + 0.1 for c, e in est.items()), (est, real)   # wrong labels: realized far under the estimate
    assert g['performance_alert'] and 'realized roc_auc' in r.stdout and 'performance LEFT its band' in r.stdout
    # performance left its band, so --retrain is triggered, but a prediction log is not a batch to train on: exit 1, said why
    assert r.returncode == FAILED and 'retrain: triggered by realized' in r.stderr and 'labelled --data batch' in r.stderr, r.stdout + r.stderr
