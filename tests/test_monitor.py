"`mlnb monitor` against the model the small end-to-end run registered: drift where it was made, none where not, and retraining."
import json
import yaml
from mlnb.ingest import read_table
from mlnb.registry import Registry
from conftest import mlnb, small_params, write_params

def batch(seed, shift=False):
    "A random sample of the Adult data, not necessarily seen in training; optionally with age and workclass moved."
    df = read_table('data/adult.csv.gz').sample(3000, random_state=seed).reset_index(drop=True)
    if shift:
        df['age'] = df['age'] + 10
        private = df.index[df['workclass'] == 'Private']
        df.loc[private[: int(len(private) * 0.6)], 'workclass'] = 'Self-emp-inc'
    return df

def monitor(d, data, tmp_path, *extra):
    r = mlnb('monitor', '--model', 'adult-income', '--registry', d/'registry', '--data', data, '--runs-dir', tmp_path/'monitor', *extra)
    runs = sorted((tmp_path/'monitor').glob('*/run.json'), key=lambda f: f.stat().st_mtime_ns)   # ids of one second sort at random
    return r, (json.loads(runs[-1].read_text())['stages']['monitor']['glued'] if runs else None)

def test_no_drift_on_a_random_sample(small_run, tmp_path):
    _, _, d = small_run
    batch(11).to_csv(tmp_path/'new.csv', index=False)
    r, g = monitor(d, tmp_path/'new.csv', tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert g['drifted_columns'] == [] and not g['drift_detected'] and g['labelled'] and not g['performance_drop']
    assert 'no drift' in r.stdout and (next((tmp_path/'monitor').glob('*/report.html'))).exists()
    assert g['anomaly_share'] < 3 * g['reference_anomaly_share'] + 0.01 and 'anomalous rows' in r.stdout   # a sample like the training data

def test_anomalous_batch_has_a_higher_anomaly_share(small_run, tmp_path):
    _, _, d = small_run
    odd = batch(13); odd.loc[:299, 'age'] = 95; odd.loc[:299, 'hours-per-week'] = 99; odd.loc[:299, 'capital-gain'] = 99999
    odd.to_csv(tmp_path/'odd.csv', index=False)
    r, g = monitor(d, tmp_path/'odd.csv', tmp_path)
    assert g['anomaly_share'] >= 0.09 and g['anomaly_share'] > 5 * g['reference_anomaly_share'], (g['anomaly_share'], g['reference_anomaly_share'])

def test_drift_in_exactly_the_moved_columns(small_run, tmp_path):
    _, _, d = small_run
    batch(12, shift=True).to_parquet(tmp_path/'new.parquet')
    r, g = monitor(d, tmp_path/'new.parquet', tmp_path)
    assert sorted(g['drifted_columns']) == ['age', 'workclass'], g['drifted_columns']
    rows = {row['column']: row for row in g['drift_table']}
    assert rows['age']['method'] == 'wasserstein' and rows['workclass']['method'] == 'jensenshannon' and rows['age']['psi'] > 0.2
    assert not g['drift_detected'] and r.returncode == 0                   # 2 of 14 columns: under the 50% share
    nb = next((tmp_path/'monitor').glob('*/01_monitor.ipynb')).read_text()
    assert nb.count('image/png') >= 3                                       # a plot per drifted column and the predictions
    (tmp_path/'strict.yaml').write_text(yaml.safe_dump({'drift_share': 0.1}))
    r, g = monitor(d, tmp_path/'new.parquet', tmp_path, '--params', tmp_path/'strict.yaml')
    assert r.returncode == 3 and g['drift_detected'] and 'DRIFT' in r.stdout

def test_small_reference_uses_tests_and_bad_input_is_named(small_run, tmp_path):
    _, _, d = small_run
    batch(13, shift=True).to_csv(tmp_path/'new.csv', index=False)
    (tmp_path/'p.yaml').write_text(yaml.safe_dump({'small_reference': 5000}))   # treat the 2,400-row reference as small
    r, g = monitor(d, tmp_path/'new.csv', tmp_path, '--params', tmp_path/'p.yaml')
    rows = {row['column']: row for row in g['drift_table']}
    assert rows['age']['method'] == 'ks' and rows['workclass']['method'] == 'chi2' and {'age', 'workclass'} <= set(g['drifted_columns'])
    batch(13).drop(columns=['age']).to_csv(tmp_path/'bad.csv', index=False)
    r, _ = monitor(d, tmp_path/'bad.csv', tmp_path)
    assert r.returncode == 1 and "lacks the model inputs ['age']" in r.stdout
    (tmp_path/'p.yaml').write_text(yaml.safe_dump({'ks_pvalue': 0.01}))
    r, _ = monitor(d, tmp_path/'new.csv', tmp_path, '--params', tmp_path/'p.yaml')
    assert r.returncode == 2 and "unknown parameter 'ks_pvalue'" in r.stderr

def test_retrain_registers_a_new_version(small_run, tmp_path):
    _, _, d = small_run
    reg = Registry(d/'registry'); before = reg.versions('adult-income')['version'].max()
    batch(14, shift=True).to_csv(tmp_path/'new.csv', index=False)
    (tmp_path/'strict.yaml').write_text(yaml.safe_dump({'drift_share': 0.1}))
    train = write_params(tmp_path/'train.yaml', small_params())
    r, g = monitor(d, tmp_path/'new.csv', tmp_path, '--params', tmp_path/'strict.yaml', '--retrain', '--train-params', train,
                   '--train-runs-dir', tmp_path/'runs')
    assert r.returncode == 3 and 'retrain run' in r.stdout, r.stdout + r.stderr
    m = json.loads(next((tmp_path/'runs').glob('*/run.json')).read_text())
    assert m['status'] == 'ok' and m['stages']['ingest']['parameters']['extra'] == [str(tmp_path/'new.csv')]
    assert m['stages']['ingest']['glued']['source_rows'] == 48842 + 3000
    assert reg.versions('adult-income')['version'].max() == before + 1 == m['stages']['deploy']['glued']['version']
