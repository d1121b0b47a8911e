"The default pipeline on all 48,842 rows of the Adult data: the figure the README promises."
import json
import pytest
from conftest import mlnb

@pytest.mark.slow
def test_default_pipeline_roc_auc(tmp_path):
    r = mlnb('run', 'params/default.yaml', '--runs-dir', tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads(next(tmp_path.glob('*/run.json')).read_text())
    ev = m['stages']['evaluate']['glued']
    assert m['stages']['ingest']['glued']['rows'] == 48842 and ev['n'] > 9000
    assert ev['roc_auc'] >= 0.90, ev
