"""The audit log: a hash chain whose first broken, edited, reordered or missing entry `mlnb audit verify` names (exit 1),
HMAC signatures under MLNB_AUDIT_KEY, appends from many processes at once, the cost of an append on a long log, and the
registry's entries with the OS user and `--reason`."""
import json, multiprocessing, os, pwd, time
from pathlib import Path
import pytest
from mlnb.audit import line_hash, record, verify
from mlnb.cli import main
from mlnb.registry import Registry

def mlnb_in_process(capsys, *argv):
    "`mlnb ARGV` run in this process: (exit code, stdout, stderr)."
    rc = main([str(a) for a in argv]); out = capsys.readouterr()
    return rc, out.out, out.err

@pytest.fixture
def six(tmp_path, monkeypatch):
    "A log of six entries, written without a key, and its lines."
    monkeypatch.delenv('MLNB_AUDIT_KEY', raising=False)
    log = tmp_path/'audit.jsonl'
    for v in range(1, 7): record('model.promote', log, model='adult', alias='production', version=v, reason=f'reason {v}')
    return log, log.read_bytes().splitlines(keepends=True)

@pytest.mark.parametrize('damage, line, seq, says', [
    (lambda L: L[:2] + [L[2].replace(b'reason 3', b'reason X')] + L[3:], 3, 3, 'was edited'),          # an entry edited
    (lambda L: L[:3] + L[4:], 4, 5, 'seq 4 is missing (deleted)'),                                       # one removed
    (lambda L: L[:1] + L[4:], 2, 5, 'seq 2 to 4 are missing'),                                           # several removed
    (lambda L: L[1:], 1, 2, 'seq 1 is missing'),                                                         # the first removed
    (lambda L: L[:2] + [L[3], L[2]] + L[4:], 3, 4, 'is out of order: seq 3 was expected here and is at line 4'),   # two swapped
    (lambda L: L[:5] + [L[4]], 6, 5, 'out of order or repeated'),                                        # one copied over another
    (lambda L: L[:3] + [b'{"seq": 4, "event": "model.pro\n'] + L[4:], 4, None, 'is not an audit entry'), # one cut short
    (lambda L: L[:5] + [L[5].rstrip(b'\n')[:-3]], 6, None, 'is not an audit entry'),                      # the file's end cut off
    (lambda L: L[:2] + [json.dumps(dict(json.loads(L[2]), seq=3, prev=line_hash(L[1].rstrip(b'\n')), fields={'forged': 1})).encode() + b'\n'] + L[3:], 3, 3,
     'was edited'),                                                                                      # seq 3 replaced by a forgery chained to seq 2: seq 4's prev names it
])
def test_verify_names_the_first_damaged_entry(six, capsys, damage, line, seq, says):
    log, L = six
    rc, out, _ = mlnb_in_process(capsys, 'audit', 'verify', '--log', log)
    assert rc == 0 and ': 6 entries, chain intact' in out and 'signatures not checked' in out, out
    log.write_bytes(b''.join(damage(L)))
    rc, out, _ = mlnb_in_process(capsys, 'audit', 'verify', '--log', log)
    named = f'line {line}' + (f' (seq {seq})' if seq is not None else '') + ':'
    assert rc == 1 and named in out and says in out, out

def test_hmac_under_a_key(tmp_path, monkeypatch, capsys):
    log, key = tmp_path/'audit.jsonl', 'k' * 32
    monkeypatch.setenv('MLNB_AUDIT_KEY', key)
    for v in range(1, 4): record('model.rollback', log, model='adult', version=v)
    rc, out, _ = mlnb_in_process(capsys, 'audit', 'verify', '--log', log)
    assert rc == 0 and '3 entries, chain intact' in out and 'signatures checked' in out
    monkeypatch.setenv('MLNB_AUDIT_KEY', 'another key')                       # the wrong key: the first entry is named
    rc, out, _ = mlnb_in_process(capsys, 'audit', 'verify', '--log', log)
    assert rc == 1 and 'line 1 (seq 1): has an hmac that does not match' in out, out
    monkeypatch.setenv('MLNB_AUDIT_KEY', key)
    L = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b''.join(L[:2] + [L[2].replace(b'"version":3', b'"version":1')]))   # the last entry: the chain alone cannot see it
    assert verify(log)['ok'] and verify(log, b'another key')['line'] == 1
    rc, out, _ = mlnb_in_process(capsys, 'audit', 'verify', '--log', log)
    assert rc == 1 and 'line 3 (seq 3): has an hmac that does not match' in out, out
    log.write_bytes(b''.join(L)); monkeypatch.delenv('MLNB_AUDIT_KEY')
    record('model.promote', log, model='adult', version=9)                   # appended by someone without the key
    monkeypatch.setenv('MLNB_AUDIT_KEY', key)
    rc, out, _ = mlnb_in_process(capsys, 'audit', 'verify', '--log', log)
    assert rc == 1 and 'line 4 (seq 4): is not signed' in out, out

def _append(args):
    log, n, who = args
    return [record('test.append', log, who=who, i=i)['seq'] for i in range(n)]

def test_appends_from_many_processes_form_one_chain(tmp_path):
    log = tmp_path/'audit.jsonl'
    with multiprocessing.get_context('fork').Pool(4) as pool: seqs = sum(pool.map(_append, [(log, 50, w) for w in range(4)]), [])
    assert sorted(seqs) == list(range(1, 201))
    assert verify(log) == dict(ok=True, entries=200, last=line_hash(log.read_bytes().splitlines()[-1]))
    assert oct(log.stat().st_mode & 0o777) == '0o600'

@pytest.mark.serial
def test_a_run_pays_under_5_ms_for_its_two_entries_on_a_long_log(tmp_path):
    log = tmp_path/'audit.jsonl'
    with open(log, 'wb') as f:                                               # 20,000 entries before: only the end is read
        prev = None
        for i in range(1, 20_001):
            line = json.dumps(dict(seq=i, time='2026-01-01T00:00:00.000+00:00', event='run.end', user='u', host='h', fields={'run_id': f'r{i}'}, prev=prev),
                              separators=(',', ':')).encode()
            f.write(line + b'\n'); prev = line_hash(line)
    best = float('inf')
    for _ in range(5):
        t = time.perf_counter()
        record('run.start', log, run_id='x', params_file='params/default.yaml'); record('run.end', log, run_id='x', status='ok')
        best = min(best, time.perf_counter() - t)
    assert best < 0.005, f'two appends took {best * 1e3:.2f} ms'
    assert verify(log)['entries'] == 20_010

def test_registry_entries_carry_the_os_user_and_the_reason(tmp_path, capsys, monkeypatch):
    from sklearn.linear_model import LogisticRegression
    import pandas as pd
    monkeypatch.delenv('MLNB_AUDIT_LOG', raising=False); monkeypatch.delenv('MLNB_AUDIT_KEY', raising=False)
    reg = Registry(tmp_path/'registry'); X = pd.DataFrame({'x': [0., 1, 2, 3]})
    for _ in range(2): reg.register('toy', LogisticRegression().fit(X, ['a', 'a', 'b', 'b']), schema={}, reference=X, metrics={}, run_id='r1')
    for v in (1, 2): assert mlnb_in_process(capsys, 'models', 'promote', f'toy@{v}', '--registry', reg.root, '--reason', f'ticket {v}')[0] == 0
    assert mlnb_in_process(capsys, 'models', 'rollback', 'toy', '--registry', reg.root, '--reason', 'v2 misfires')[0] == 0
    log = tmp_path/'audit.jsonl'                                             # beside the registry folder
    es = [json.loads(l) for l in log.read_text().splitlines()]
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert [(e['event'], e['fields']['version']) for e in es] == [('model.register', 1), ('model.register', 2), ('model.promote', 1), ('model.promote', 2), ('model.rollback', 1)]
    assert all(e['user'] == me for e in es) and es[3]['fields']['previous'] == 1 and es[3]['fields']['reason'] == 'ticket 2'
    assert {k: es[4]['fields'][k] for k in ('model', 'alias', 'version', 'previous', 'reason')} == {'model': 'toy', 'alias': 'production', 'version': 1, 'previous': 2, 'reason': 'v2 misfires'}
    rc, out, _ = mlnb_in_process(capsys, 'audit', 'show', '--log', log, '--model', 'toy', '--event', 'model.rollback')
    assert rc == 0 and len(out.splitlines()) == 2 and 'reason=v2 misfires' in out and me in out
    rc, out, _ = mlnb_in_process(capsys, 'audit', 'show', '--log', log, '--since', '2999-01-01')
    assert out.strip() == 'no entries'
    rc, _, err = mlnb_in_process(capsys, 'audit', 'show', '--log', log, '--since', 'last week')
    assert rc == 2 and "--since 'last week' is not a date" in err
