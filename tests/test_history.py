"Issue 21, items 5 and 6 (library part): labels joined to the prediction log, the monitor history store and its command, alerts posted to a real webhook on loopback."
import argparse, contextlib, http.server, io, json, threading, time
from pathlib import Path
import numpy as np, pandas as pd, pytest
from mlnb.core import MlnbError
from mlnb.predlog import PredictionLog, read_prediction_log, join_labels, describe_join
from mlnb.history import append_history, history, history_path, plot_history, alert_payload, post_alert
from mlnb.cli_history import add_history, monitor_history
from mlnb import cli

class Hook(http.server.BaseHTTPRequestHandler):
    "A webhook that answers each POST with the next status of `server.answers` and keeps the bodies it accepted."
    def do_POST(self):
        body = self.rfile.read(int(self.headers['content-length']))
        self.server.seen.append(self.headers['content-type']); status = self.server.answers.pop(0)
        if 200 <= status < 300: self.server.got.append(json.loads(body))
        self.send_response(status); self.send_header('content-length', '0'); self.end_headers()
    def log_message(self, *a): pass

@pytest.fixture
def hook():
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Hook); srv.answers, srv.got, srv.seen = [], [], []
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield srv
    srv.shutdown(); srv.server_close()

PAYLOAD = alert_payload('adult', np.int64(3), '2026-02', 'roc_auc', np.float64(0.8012), (0.88, 0.94), ['age', 'education-num'], 'run-7', '/runs/run-7/report.html')

def test_an_alert_arrives_once_after_two_503s(hook):
    hook.answers = [503, 503, 200]
    t = time.monotonic(); r = post_alert(f'http://127.0.0.1:{hook.server_port}/hooks/T0/SECRET', PAYLOAD, retries=3, backoff=0.05)
    assert (r['ok'], r['status'], r['attempts']) == (True, 200, 3) and hook.got == [PAYLOAD] and hook.seen == ['application/json'] * 3
    assert hook.got[0] == dict(model='adult', version=3, chunk='2026-02', metric='roc_auc', kind='estimated', value=0.8012, band=[0.88, 0.94],
                               top_columns=['age', 'education-num'], run_id='run-7', report='/runs/run-7/report.html')
    assert 0.15 <= time.monotonic() - t < 5                                   # waited 0.05 then 0.1 s
    assert r['url'] == f'http://127.0.0.1:{hook.server_port}/…' and 'SECRET' not in json.dumps(r) and 'sent' in r['message']

def test_a_400_is_not_retried_and_retries_end(hook):
    hook.answers = [400, 500, 502, 503]
    bad = post_alert(f'http://127.0.0.1:{hook.server_port}/', PAYLOAD, backoff=0.01)
    assert (bad['ok'], bad['status'], bad['attempts'], hook.answers) == (False, 400, 1, [500, 502, 503]) and 'HTTP 400' in bad['error']
    down = post_alert(f'http://127.0.0.1:{hook.server_port}/', PAYLOAD, retries=2, backoff=0.01)
    assert (down['ok'], down['status'], down['attempts'], hook.got) == (False, 503, 3, []) and 'NOT delivered after 3 attempts' in down['message']
    nowhere = post_alert('ftp://example.org/x', PAYLOAD)                        # never raises
    assert (nowhere['ok'], nowhere['attempts']) == (False, 0) and '--alert-url must be an http://' in nowhere['error']

def results(shift: float) -> pd.DataFrame:
    chunks = ['2026-01', '2026-02', '2026-03']
    est = pd.DataFrame(dict(chunk=chunks, metric='roc_auc', kind='estimated', value=np.array([0.905, 0.90, 0.895]) - shift, lower=0.88, upper=0.93))
    real = pd.DataFrame(dict(chunk=chunks[:2], metric='roc_auc', kind='realized', value=np.array([0.91, 0.899]) - shift))
    return pd.concat([est, real, pd.DataFrame(dict(chunk=chunks, metric='drift:age', kind='drift', value=[0.01, 0.02, 0.4 + shift], upper=0.1))])

def test_history_round_trip_two_runs_table_and_plot(tmp_path, capsys):
    reg = tmp_path/'registry'
    assert append_history(reg, results(0), 'adult', 3, 'run-1', '2026-11-01T09:00:00+00:00') == 8
    assert append_history(reg, results(0.03), 'adult', 4, 'run-2', '2026-12-01T09:00:00+00:00') == 8
    h = history(reg, 'adult')
    assert len(h) == 16 and h['run_id'].tolist() == ['run-1'] * 8 + ['run-2'] * 8 and history_path(reg).exists()
    est = history(reg, 'adult', 'roc_auc').query("kind == 'estimated'")
    np.testing.assert_allclose(est['value'], [0.905, 0.90, 0.895, 0.875, 0.87, 0.865])
    assert est['alert'].tolist() == [False, False, False, True, True, True] and est['version'].tolist() == [3] * 3 + [4] * 3
    assert h.query("kind == 'drift'")['alert'].tolist() == [False, False, True] * 2                          # only an upper bound
    p = argparse.ArgumentParser(prog='mlnb'); sub = p.add_subparsers(dest='cmd', required=True)
    for g in cli.GROUPS: g.add_parsers(sub)
    mo = sub.choices['monitor']
    if 'history_model' not in {x.dest for x in mo._actions}: add_history(mo)    # until cli_monitor adds it itself
    a = p.parse_args(['monitor', '--registry', str(reg), 'history', 'adult', '--metric', 'roc_auc', '--plot', str(tmp_path/'h.png')])
    assert monitor_history(a) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ['time', 'run', 'v', 'chunk', 'metric', 'kind', 'value', 'band', 'alert'] and len(out) == 1 + 10 + 2
    assert out[1].split() == ['2026-11-01', '09:00', 'run-1', '3', '2026-01', 'roc_auc', 'estimated', '0.905', '0.88', '–', '0.93']
    assert out[-2] == '2 monitor runs, 10 values, 3 alerts (marked !)' and (tmp_path/'h.png').read_bytes()[:4] == b'\x89PNG'
    run = p.parse_args(['monitor', '--model', 'adult', '--data', 'batch.csv'])   # a monitor run parses as before
    assert (run.action, run.model, run.data, monitor_history(run)) == (None, 'adult', 'batch.csv', None)
    with pytest.raises(MlnbError, match="name it with --metric \\(drift:age, roc_auc\\)"):
        monitor_history(p.parse_args(['monitor', '--registry', str(reg), 'history', 'adult', '--plot', str(tmp_path/'x.png')]))
    fig = plot_history(h, 'roc_auc')
    assert fig.axes[0].get_title() == 'adult: roc_auc across monitor runs' and len(fig.axes[0].collections) == 2   # the estimated band and its alerts; realized has no band

def test_labels_join_the_prediction_log(tmp_path):
    log = PredictionLog(tmp_path/'p.jsonl')
    resp = lambda rid, ids, preds: dict(model='adult', version=3, request_id=rid, ids=ids, predictions=preds,
                                        probabilities=[{'<=50K': 0.2, '>50K': 0.8} if p == '>50K' else {'<=50K': 0.7, '>50K': 0.3} for p in preds])
    log.write({'age': [30, 52, 41]}, resp('r1', ['r1-0', 'r1-1', 'c-77'], ['<=50K', '>50K', '>50K']))
    log.write({'age': [23, 60]}, resp('r2', ['r2-0', 'c-77'], ['<=50K', '<=50K']))   # a client's id sent twice
    log.close()
    (tmp_path/'labels.csv').write_text('id,income\nr1-0,<=50K\nr1-1,<=50K\nr1-1,>50K\nc-77,>50K\nr9-9,<=50K\nr2-0,\n')
    j = join_labels(read_prediction_log(tmp_path/'p.jsonl'), tmp_path/'labels.csv', 'id', 'income')
    c = j.attrs['label_join']
    assert j['income'].fillna('-').tolist() == ['<=50K', '>50K', '>50K', '-', '>50K']        # r1-1's later label; r2-0 has none yet
    assert (c['labelled'], c['predictions'], c['duplicate_labels'], c['conflicting_labels'], c['unmatched_labels'], c['unmatched_examples'],
            c['duplicate_ids'], c['no_key_or_target']) == (4, 5, 1, 1, 1, ['r9-9'], 1, 1)
    done = j.dropna(subset=['income']); assert (done['_prediction'] == done['income']).mean() == 0.75   # realized accuracy
    assert describe_join(c).startswith('4 of 5 predictions got a label (80.0%)') and '1 labels match no prediction (e.g. r9-9)' in describe_join(c)
    with pytest.raises(MlnbError, match="labels.csv has no column 'request' to join on"): join_labels(j, tmp_path/'labels.csv', 'request', 'income')
    (tmp_path/'labels.json').write_text('{}')
    with pytest.raises(MlnbError, match='labels.json is neither CSV'): join_labels(j, tmp_path/'labels.json', 'id', 'income')
