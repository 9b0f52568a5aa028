"""``anqi-central web-user add`` and ``kiosk create`` through the CLI subprocess (the first administrator and
the big screen's token are made on the command line), then used over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

from central_sync.config import load_config
from central_sync.sharing.http import create_app
from central_sync.storage.store import CentralStore

ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "correct horse battery"


def cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "central_sync.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        input=stdin,
        timeout=120,
    )


def test_first_admin_and_kiosk_token_from_the_command_line(tmp_path: Path) -> None:
    conf = tmp_path / "central.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'c.db'}"},
                "media": {"dir": str(tmp_path / "media")},
                "api": {"public_url": "https://anqi.police.example/"},
            }
        )
    )
    r = cli("web-user", "add", "--config", str(conf), "--username", "boss", "--role", "admin",
            "--password-env", "ANQI_PW", env={"ANQI_PW": PASSWORD})  # fmt: skip
    assert r.returncode == 0 and "account boss (admin) created" in r.stdout, r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    r = cli("web-user", "add", "--config", str(conf), "--username", "w1", "--role", "community",
            "--communities", "飞英社区，龙溪社区", stdin=f"{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
    assert r.returncode == 0 and "w1 (community, 飞英社区,龙溪社区)" in r.stdout, r.stderr
    # the refusals, in-process (each subprocess costs seconds of imports on a loaded machine)
    from click.testing import CliRunner

    from central_sync.cli import main

    run = CliRunner().invoke
    add = ["web-user", "add", "--config", str(conf), "--role", "admin", "--password-env", "ANQI_PW"]
    bad = run(main, [*add, "--username", "w2"], env={"ANQI_PW": "short"})
    assert bad.exit_code == 2 and "at least 10 characters" in bad.output
    dup = run(main, [*add, "--username", "boss"], env={"ANQI_PW": PASSWORD})
    assert dup.exit_code == 2 and "exists" in dup.output
    unset = run(main, [*add, "--username", "x"], env={"ANQI_PW": ""})
    assert unset.exit_code == 2 and "ANQI_PW: not set" in unset.output

    k = cli("kiosk", "create", "--config", str(conf), "--name", "hall")
    assert k.returncode == 0, k.stderr
    url = k.stdout.strip()
    assert url.startswith("https://anqi.police.example/cockpit?token=kiosk_")
    again = run(main, ["kiosk", "create", "--config", str(conf), "--name", "hall"])
    assert again.exit_code == 2 and "exists" in again.output

    cfg = load_config(conf)
    store = CentralStore.from_config(cfg)
    client = TestClient(create_app(cfg, store), follow_redirects=False)
    assert client.get("/cockpit" + url.split("/cockpit", 1)[1]).status_code == 200
    r2 = client.post("/console/login", data={"username": "boss", "password": PASSWORD})
    assert r2.status_code == 303 and r2.headers["location"] == "/console"
    assert client.get("/console/users").status_code == 200  # the administrator's page
    store.close()
