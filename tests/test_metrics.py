"`GET /metrics` of the real server (uvicorn on loopback): a few records scored (one with a category never seen, one refused), scraped and parsed with prometheus_client's parser; exact counts."
import threading, time
from collections import Counter
import pytest, uvicorn
from prometheus_client.parser import text_string_to_metric_families
from mlnb.registry import Registry
from mlnb.serve import create_app
from test_serve import KEY, Server, free_port, records, register

@pytest.fixture(scope='module')
def server(tmp_path_factory):
    "The app under uvicorn in a thread on a free loopback port (the imports are this process's already; `mlnb serve` runs the same app)."
    reg = Registry(tmp_path_factory.mktemp('registry')); v, _ = register(reg, 'logistic', n=1500)
    app = create_app(reg, f'adult@{v}', api_keys=[KEY], log_path=tmp_path_factory.mktemp('metrics')/'predictions.jsonl')
    s = Server.__new__(Server); s.port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=s.port, log_level='warning'))
    t = threading.Thread(target=uv.run, daemon=True); t.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert t.is_alive() and time.monotonic() < deadline, 'the server did not start'
        time.sleep(0.05)
    yield s
    uv.should_exit = True; t.join(10)

def scrape(server, key=KEY) -> dict:
    "`{(name, sorted labels): value}` as Prometheus would read /metrics."
    st, text = server.call('GET', '/metrics', key=key)
    assert st == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}

def test_metrics_count_what_was_scored_refused_and_unseen(server):
    recs, _ = records(3)
    replies = [server.call('POST', '/predict', recs), server.call('POST', '/predict', dict(recs[0], workclass='Space-agency')),
               server.call('POST', '/predict', dict(recs[0], age='forty')), server.call('POST', '/predict', recs[0], key='not-a-key-0123456789')]
    assert [st for st, _ in replies] == [200, 200, 422, 401]
    assert server.call('GET', '/metrics', key=None)[0] == 401
    s = scrape(server)
    req = lambda st: s.get(('mlnb_requests_total', (('endpoint', '/predict'), ('status', st))))
    assert [req('200'), req('422'), req('401')] == [2, 1, 1]
    assert s[('mlnb_request_seconds_count', (('endpoint', '/predict'),))] == 4 and s[('mlnb_request_seconds_sum', (('endpoint', '/predict'),))] > 0
    refused = {(dict(k[1])['endpoint'], dict(k[1])['reason']): v for k, v in s.items() if k[0] == 'mlnb_refused_requests_total'}
    assert refused == {('/predict', 'invalid_records'): 1, ('/predict', 'no_or_unknown_key'): 1, ('/metrics', 'no_or_unknown_key'): 1}
    assert s[('mlnb_records_scored_total', ())] == 4
    assert s[('mlnb_unseen_categories_total', (('column', 'workclass'),))] == 1
    classes = Counter(p for _, r in replies[:2] for p in r['predictions'])
    assert {dict(k[1])['class']: v for k, v in s.items() if k[0] == 'mlnb_predicted_class_total'} == dict(classes)
    assert s[('mlnb_model_info', (('name', 'adult'), ('task', 'binary'), ('version', '1')))] == 1
    assert scrape(server)[('mlnb_requests_total', (('endpoint', '/metrics'), ('status', '200')))] == 1   # the first scrape, counted once it had gone out
