"Encryption at rest and PII masking (issue 22.3): mlnb.crypto, the artifact, registry and prediction-log files it seals, and a run with a data key."
import base64, hashlib, io, json, re
from pathlib import Path
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from conftest import mlnb, small_params, write_params
from mlnb.core import MlnbError, load_artifact, save_artifact, sha256_file
from mlnb.crypto import MASK, decrypt_bytes, encrypt_bytes, is_encrypted, new_key, parse_key, read_bytes, write_bytes

@pytest.fixture
def key(monkeypatch):
    "A fresh data key, set in MLNB_DATA_KEY for the test (the key file variable cleared)."
    k = new_key(); monkeypatch.setenv('MLNB_DATA_KEY', k); monkeypatch.delenv('MLNB_DATA_KEY_FILE', raising=False)
    return k

@pytest.fixture
def no_key(monkeypatch):
    monkeypatch.delenv('MLNB_DATA_KEY', raising=False); monkeypatch.delenv('MLNB_DATA_KEY_FILE', raising=False)

def test_round_trip_and_clear_errors_naming_the_file(tmp_path, key, monkeypatch):
    f = write_bytes(tmp_path/'rows.bin', b'age,race\n39,Amer-Indian-Eskimo\n')
    raw = f.read_bytes()
    assert raw[:8] == b'MLNBENC\x01' and is_encrypted(f) and b'Eskimo' not in raw
    assert read_bytes(f) == b'age,race\n39,Amer-Indian-Eskimo\n'
    assert write_bytes(tmp_path/'again.bin', b'x').read_bytes() != write_bytes(tmp_path/'again.bin', b'x').read_bytes()   # a fresh nonce per write
    assert sorted(p.name for p in tmp_path.iterdir()) == ['again.bin', 'rows.bin']   # written atomically: no temporary left
    monkeypatch.setenv('MLNB_DATA_KEY', new_key())
    with pytest.raises(MlnbError, match=rf'{re.escape(str(f))} could not be decrypted with this key: it was written with another data key'): read_bytes(f)
    monkeypatch.delenv('MLNB_DATA_KEY')
    with pytest.raises(MlnbError, match=rf'{re.escape(str(f))} is encrypted; set MLNB_DATA_KEY'): read_bytes(f)
    monkeypatch.setenv('MLNB_DATA_KEY', key)
    for at in (len(raw) - 1, 30, 20, 12):   # the tag, the ciphertext, the nonce, the key id in the header
        bad = bytearray(raw); bad[at] ^= 0x01; f.write_bytes(bytes(bad))
        with pytest.raises(MlnbError, match=rf'{re.escape(str(f))} could not be decrypted with this key'): read_bytes(f)
    f.write_bytes(raw[:-5])
    with pytest.raises(MlnbError, match='changed or cut short'): read_bytes(f)

def test_key_forms_and_key_file(tmp_path, no_key, monkeypatch):
    k = parse_key(new_key())
    assert parse_key(k.hex()) == parse_key(base64.b64encode(k).decode()) == parse_key(base64.urlsafe_b64encode(k).decode() + '\n') == k
    for bad in ('', 'abc', k.hex()[:-2], base64.b64encode(k[:31]).decode()):
        with pytest.raises(MlnbError, match='32 bytes written as 64 hex digits or as base64'): parse_key(bad)
    (tmp_path/'data.key').write_text(k.hex() + '\n'); monkeypatch.setenv('MLNB_DATA_KEY_FILE', str(tmp_path/'data.key'))
    assert read_bytes(write_bytes(tmp_path/'f', b'hi')) == b'hi' and decrypt_bytes((tmp_path/'f').read_bytes(), k) == b'hi'
    monkeypatch.setenv('MLNB_DATA_KEY_FILE', str(tmp_path/'nothing.key'))
    with pytest.raises(MlnbError, match='MLNB_DATA_KEY_FILE: cannot read the key file .*nothing.key'): read_bytes(tmp_path/'f')

def test_artifact_through_core_with_a_key_has_the_plaintext_hash(tmp_path, no_key, monkeypatch):
    df = pd.DataFrame({'age': [39, 50, 38], 'race': ['White', 'Black', 'Asian-Pac-Islander'], 'income': ['<=50K', '>50K', '<=50K']})
    plain = save_artifact(df, 'data', tmp_path/'plain'/'artifacts'/'ingest')
    plain_file = tmp_path/'plain'/plain['path']
    monkeypatch.setenv('MLNB_DATA_KEY', new_key())
    sealed = save_artifact(df, 'data', tmp_path/'enc'/'artifacts'/'ingest')
    f = tmp_path/'enc'/sealed['path']
    assert sealed == plain   # path, sha256 and bytes: the stage keys, the manifest and the cache see the same reference
    assert is_encrypted(f) and not is_encrypted(plain_file) and b'Pac-Islander' not in f.read_bytes()
    assert sha256_file(f) == sha256_file(plain_file) == hashlib.sha256(plain_file.read_bytes()).hexdigest() == sealed['sha256']
    assert hashlib.sha256(f.read_bytes()).hexdigest() != sealed['sha256']
    pd.testing.assert_frame_equal(load_artifact(sealed, tmp_path/'enc'), df)
    from mlnb.ingest import read_table   # mlnb predict and monitor --data read tables with it
    pd.testing.assert_frame_equal(read_table(f), df)
    monkeypatch.delenv('MLNB_DATA_KEY')
    with pytest.raises(MlnbError, match=rf'artifact {re.escape(str(f))} is encrypted; set MLNB_DATA_KEY'): load_artifact(sealed, tmp_path/'enc')

def test_cache_entry_is_used_only_when_stored_as_this_run_stores(tmp_path, no_key, monkeypatch):
    from mlnb.cache import Cache, check_entry
    run = tmp_path/'run'; (run/'01_ingest.ipynb').parent.mkdir(); (run/'01_ingest.ipynb').write_text('{}')
    ref = save_artifact(pd.DataFrame({'a': [1, 2]}), 'data', run/'artifacts'/'ingest')
    entry, cache = dict(run_dir=str(run), output='01_ingest.ipynb', artifacts={'data': ref}), Cache(tmp_path/'cache.db')
    assert check_entry(cache, entry) is None
    monkeypatch.setenv('MLNB_DATA_KEY', new_key())
    assert 'is not encrypted and a data key is set' in check_entry(cache, entry)   # an encrypted run never links plaintext rows
    save_artifact(pd.DataFrame({'a': [1, 2]}), 'data', run/'artifacts'/'ingest')
    assert check_entry(cache, entry) is None and cache.file_sha(run/ref['path']) == ref['sha256']
    monkeypatch.delenv('MLNB_DATA_KEY')
    assert 'is encrypted and a data key is not set' in check_entry(cache, entry)

def test_model_files_are_encrypted_with_their_categories(tmp_path, key, monkeypatch):
    "An encoder lists every category it saw, a PII column's rare ones too: the run's model artifact and the registry's model.skops are sealed."
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from mlnb.registry import Registry
    X = pd.DataFrame({'x': [0., 1., 2., 3., 4., 5.], 'race': ['White', 'Black', 'White', 'Amer-Indian-Eskimo', 'White', 'Black']})
    model = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown='ignore'), ['race']), remainder='passthrough'),
                          LogisticRegression()).fit(X, ['a', 'b', 'a', 'b', 'a', 'b'])
    art = tmp_path/'runs'/'r1'/'artifacts'/'train'; art.mkdir(parents=True)
    ref = save_artifact(model, 'model', art)
    f = tmp_path/'runs'/'r1'/ref['path']
    assert is_encrypted(f) and b'Amer-Indian' not in f.read_bytes() and ref['sha256'] == sha256_file(f)
    back = load_artifact(ref, tmp_path/'runs'/'r1')
    assert (back.predict_proba(X) == model.predict_proba(X)).all()
    reg = Registry(tmp_path/'registry')
    v = reg.register('toy', model, schema={'race': {'dtype': 'str', 'pii': True}}, reference=X, metrics={})
    mf = tmp_path/'registry'/'toy'/f'v{v}'/'model.skops'
    assert is_encrypted(mf) and b'Amer-Indian' not in mf.read_bytes()
    assert (reg.load(f'toy@{v}').pipeline.predict_proba(X) == model.predict_proba(X)).all()
    monkeypatch.delenv('MLNB_DATA_KEY')                                     # the same object without a key: the same hash (the cache's key)
    plain = save_artifact(model, 'model', tmp_path/'plain'/'r'/'artifacts')
    assert plain['sha256'] == ref['sha256'] and plain['bytes'] == ref['bytes'] and b'Amer-Indian' in (tmp_path/'plain'/plain['path']).read_bytes()

def test_registry_reference_is_encrypted(tmp_path, key, monkeypatch):
    from mlnb.registry import Registry
    X = pd.DataFrame({'x': [0., 1., 2., 3.], 'race': ['White', 'Black', 'White', 'Other']})
    reg = Registry(tmp_path/'registry')
    v = reg.register('toy', LogisticRegression().fit(X[['x']], ['a', 'b', 'a', 'b']), schema={'x': {'dtype': 'float'}, 'race': {'dtype': 'str', 'pii': True}},
                     reference=X, metrics={})
    mv = reg.load(f'toy@{v}')
    f = mv.path/'reference.parquet'
    assert is_encrypted(f) and b'Black' not in f.read_bytes()
    pd.testing.assert_frame_equal(mv.reference(), X)
    assert mv.files['reference.parquet'] == hashlib.sha256(read_bytes(f)).hexdigest()   # the index records the plaintext's hash
    monkeypatch.delenv('MLNB_DATA_KEY')
    with pytest.raises(MlnbError, match=r'registry: file .*model.skops is encrypted; set MLNB_DATA_KEY'): reg.load(f'toy@{v}')   # the model first: it is sealed too

def test_prediction_log_sealed_per_line_with_pii_masked(tmp_path, key, monkeypatch):
    from mlnb.predlog import PredictionLog, read_prediction_log
    resp = dict(model='toy', version=1, predictions=['a', 'b'], probabilities=None, request_id='r1', ids=['r1-0', 'r1-1'])
    (tmp_path/'p.jsonl').write_text(json.dumps(dict(time='t', model='toy', version=1, inputs={'x': 0, 'race': MASK}, prediction='a')) + '\n')  # written before the key
    log = PredictionLog(tmp_path/'p.jsonl', pii=['race'])
    log.write({'x': [1, 2], 'race': ['Amer-Indian-Eskimo', None]}, resp); log.close()
    text = (tmp_path/'p.jsonl').read_text()
    assert 'Eskimo' not in text and '"x"' not in text.splitlines()[1] and len(text.splitlines()) == 3
    back = read_prediction_log(tmp_path/'p.jsonl')
    assert back[['x', 'race', '_id']].fillna('-').values.tolist() == [[0, MASK, '-'], [1, MASK, 'r1-0'], [2, '-', 'r1-1']]
    assert back.attrs['pii_masked'] == ['race']   # for the monitor: no values to compare
    monkeypatch.setenv('MLNB_DATA_KEY', new_key())
    with pytest.raises(MlnbError, match=r'prediction log .*p.jsonl line 2 could not be decrypted with this key'): read_prediction_log(tmp_path/'p.jsonl')
    monkeypatch.delenv('MLNB_DATA_KEY')
    with pytest.raises(MlnbError, match=r'prediction log .*p.jsonl line 2 is encrypted; set MLNB_DATA_KEY'): read_prediction_log(tmp_path/'p.jsonl')

PII = {'race': ['White', 'Black', 'Asian-Pac-Islander', 'Amer-Indian-Eskimo'], 'gender': ['Female', 'Male']}  # 'Other' is also in relationship and occupation values

def test_encrypted_run_has_no_plaintext_pii(tmp_path, key):
    "A whole run of 300 rows, race and gender marked pii and sliced by: no file of the run or its registry holds one of their values; key holders read the groups' names."
    p = small_params(ingest={'sample_rows': 300}, evaluate={'min_slice_rows': 10}, deploy={'registry': str(tmp_path/'registry')})
    schema = p['stages']['validate']['params']['schema']
    for c in PII: schema[c] = {'dtype': 'str', 'pii': True}   # no isin: the allowed values would be the parameter file's
    r = mlnb('run', write_params(tmp_path/'enc.yaml', p), '--runs-dir', tmp_path/'runs', '--no-cache')
    assert r.returncode == 0, r.stdout + r.stderr
    run = next((tmp_path/'runs').glob('*/run.json')).parent
    files = [f for f in [*run.rglob('*'), *(tmp_path/'registry').rglob('*')] if f.is_file()]
    arts = [f for f in files if f.suffix in ('.parquet', '.skops')]
    assert len(arts) >= 8 and all(is_encrypted(f) for f in arts), [f.name for f in arts if not is_encrypted(f)]
    data = pd.read_parquet(io.BytesIO(read_bytes(run/'artifacts'/'ingest'/'data.parquet')))
    values = {v for c in PII for v in data[c].unique()}
    assert {'White', 'Male', 'Female'} <= values   # the sample holds the values looked for
    word = re.compile(rb'(?<![\w-])(' + b'|'.join(re.escape(v.encode()) for v in sorted(values - {'Other'})) + rb')(?![\w-])')
    assert {f.name: m.group().decode() for f in files if (m := word.search(f.read_bytes()))} == {}
    assert MASK in (run/'01_ingest.ipynb').read_text()   # masked where values are shown
    man = json.loads((run/'run.json').read_text()); ev = man['stages']['evaluate']
    assert {r['slice'] for r in ev['glued']['slice_table'] if r['column'] == 'gender'} == {'gender group 1', 'gender group 2'}
    groups = load_artifact(ev['artifacts']['slice_groups'], run)                   # with the key: which value each number stands for
    assert groups[groups.column == 'gender'].set_index('group').value.to_dict() == {'gender group 1': 'Female', 'gender group 2': 'Male'}
    ref = man['stages']['ingest']['artifacts']['data']
    assert ref['sha256'] == hashlib.sha256(read_bytes(run/ref['path'])).hexdigest()   # the manifest holds plaintext hashes
