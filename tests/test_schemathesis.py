"schemathesis against a real `mlnb serve` on loopback: every operation of its /openapi.json, /predict bodies generated from the model's schema."
import subprocess, sys
from pathlib import Path
import pytest
from mlnb.registry import Registry
from test_serve import ADMIN, Server, register

ST = Path(sys.executable).parent/'st'
# 413 (a body or a list of records past the server's limits) is as right a refusal of an invalid body as 422
CONFIG = '[checks.negative_data_rejection]\nexpected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422]\n'

@pytest.mark.slow
def test_schemathesis_finds_no_server_error(tmp_path):
    "All of schemathesis's checks: no 5xx, replies as described, valid bodies scored (2xx), invalid ones refused (4xx), keys enforced."
    assert ST.exists(), 'schemathesis is not installed: pip install "schemathesis>=4,<5" (settings.ini, dev_requirements)'
    reg = Registry(tmp_path/'registry'); v, _ = register(reg, n=1500); reg.promote(f'adult@{v}')
    (cfg := tmp_path/'schemathesis.toml').write_text(CONFIG)
    s = Server(reg.root, tmp_path/'p.jsonl')
    try:   # the admin key: /reload is fuzzed too (it reloads the same version); 500 examples per operation, one worker, a fixed seed
        r = subprocess.run([ST, '--config-file', cfg, 'run', f'http://127.0.0.1:{s.port}/openapi.json', '-H', f'X-API-Key: {ADMIN}', '--checks', 'all',
                            '--max-examples', '500', '--seed', '18', '--workers', '1', '--generation-database', 'none', '--no-color'],
                           capture_output=True, text=True, timeout=240)
    finally: s.stop()
    assert r.returncode == 0 and 'No issues found' in r.stdout, r.stdout[-6000:] + r.stderr[-2000:]
    assert 'could not' not in s.output(), s.output()[-3000:]                # no fault reported by the server either
