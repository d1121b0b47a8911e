"The default pipeline on all 48,842 rows of the Adult data: the figure the README promises."
import json
import pytest
from conftest import ROOT, mlnb, write_params
import yaml

@pytest.mark.slow
def test_default_pipeline_roc_auc(tmp_path):
    p = yaml.safe_load((ROOT/'params'/'default.yaml').read_text())
    p['stages']['deploy']['params']['registry'] = str(tmp_path/'registry')    # not the project's registry
    r = mlnb('run', write_params(tmp_path/'default.yaml', p), '--runs-dir', tmp_path/'runs')
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads(next((tmp_path/'runs').glob('*/run.json')).read_text())
    ev = m['stages']['evaluate']['glued']
    assert m['stages']['ingest']['glued']['rows'] == 48842 and ev['n'] > 9000
    assert ev['roc_auc'] >= 0.90, ev
