"""The command line: `regcache version`, and config errors that stop `serve` before it starts."""

import re
import subprocess

import pytest

from conftest import REPO_ROOT, write_config


def run(args, timeout=10):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_version_prints_the_version(regcache_bin):
    p = run([regcache_bin, "version"])
    assert p.returncode == 0, p.stderr
    version = (REPO_ROOT / "VERSION").read_text().strip()
    assert version in p.stdout + p.stderr, f"{version!r} not in {p.stdout!r} {p.stderr!r}"


@pytest.mark.parametrize("line,text,key", [
    (3, 'offline = "yes"', "offline"),
    (3, "bogus_key = 1", "bogus_key"),
    (3, 'max_cache_size = "lots"', "max_cache_size"),
])
def test_bad_config_exits_2_naming_key_and_line(regcache_bin, tmp_path, line, text, key):
    cfg = tmp_path / "bad.toml"
    lines = ['listen = "127.0.0.1:0"', f'data_dir = "{tmp_path / "data"}"', text,
             "[local]", 'namespaces = ["local"]']
    assert lines[line - 1] == text
    cfg.write_text("\n".join(lines) + "\n")
    p = run([regcache_bin, "serve", "-c", str(cfg)])
    out = p.stdout + p.stderr
    assert p.returncode == 2, f"exit {p.returncode}: {out}"
    assert key in out, f"message does not name the key {key!r}: {out}"
    assert re.search(rf"(:|line ){line}\b", out), f"message does not name line {line}: {out}"


def test_unparsable_toml_exits_2(regcache_bin, tmp_path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text('listen = "127.0.0.1:0"\nthis is not toml\n')
    p = run([regcache_bin, "serve", "-c", str(cfg)])
    assert p.returncode == 2, p.stdout + p.stderr
    assert re.search(r"(:|line )2\b", p.stdout + p.stderr)


def test_missing_config_file_fails(regcache_bin, tmp_path):
    p = run([regcache_bin, "serve", "-c", str(tmp_path / "absent.toml")])
    assert p.returncode != 0
    assert "absent.toml" in p.stdout + p.stderr


def test_good_config_serves(make_registry):
    reg = make_registry()
    reg.start()
    assert reg.get("/v2/").status_code == 200
    assert reg.stop() == 0
