"""SIGHUP: a good new config becomes the running one for new requests; a broken one is refused
with a log line and the old one keeps serving."""

import signal

from conftest import push_blob, random_blob, unique_repo, write_config
from pullthrough import wait_until


def reload(reg):
    mark = reg.log_path.read_bytes().count(b"serve.reload ")
    reg.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: reg.log_path.read_bytes().count(b"serve.reload ") > mark, timeout=10,
               what="the reload's log line")


def test_sighup_applies_a_new_namespace_and_refuses_a_broken_config(fresh_registry):
    reg = fresh_registry
    team = unique_repo("reload", namespace="ops")
    r = reg.post(f"/v2/{team}/blobs/uploads/")
    assert r.status_code == 405  # "ops" is no local namespace yet: upstream-backed, read-only

    write_config(reg.config_path, reg.data_dir, namespaces=("local", "team", "ops"))
    reload(reg)
    data = random_blob(5000)
    digest = push_blob(reg, team, data)
    assert reg.get(f"/v2/{team}/blobs/{digest}").content == data
    assert b"serve.reload applied=true" in reg.log_path.read_bytes()

    reg.config_path.write_text('listen = "127.0.0.1:0"\nbogus_key = 1\n')
    reload(reg)
    log = reg.log_path.read_bytes()
    assert b"serve.reload refused=true" in log and b"bogus_key" in log
    # The running config stays: ops is still local, everything still served.
    assert reg.get(f"/v2/{team}/blobs/{digest}").content == data
    push_blob(reg, unique_repo("reload2", namespace="ops"), random_blob(100))
    assert reg.get("/v2/").status_code == 200
