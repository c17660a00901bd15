"""The built wheel, installed as an agent app would: one ``agentstream`` namespace, the
base install only, next to an app with its own ``schemas.py``, ``processors.py`` and
``sinks.py``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = textwrap.dedent(
    """
    import importlib.util, json, sys
    import schemas, processors, sinks                 # the app's own modules
    from agentstream import ToolCall, run_context
    from agentstream.testing import InMemoryEmitter

    emitter = InMemoryEmitter()
    with run_context(tenant_id="acme", agent_id="travel-bot"):
        with emitter.tool_call("search", params={"q": "SFO"}) as call:
            call.result_summary = schemas.summary()
    [event] = emitter.events_of(ToolCall)
    print(json.dumps({
        "status": event.status.value,
        "summary": event.result_summary,
        "schemas": importlib.util.find_spec("schemas").origin,
        "processors": importlib.util.find_spec("processors").origin,
        "sinks": importlib.util.find_spec("sinks").origin,
        "ours": importlib.util.find_spec("agentstream.schemas").origin,
        "worker_modules": sorted(
            m for m in sys.modules
            if m.startswith(("chdb", "agentstream.sinks", "agentstream.processors"))
        ),
    }))
    """
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # built from a copy: setuptools leaves a build/ folder in the tree it builds
    source = tmp_path_factory.mktemp("source") / "agentstream"
    shutil.copytree(
        ROOT, source, symlinks=True,
        ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "bench-results"),
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        check=True,
    )
    [built] = out.glob("agentstream-*.whl")
    return built


def test_the_wheel_holds_one_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"agentstream"}
    for shipped in (
        "agentstream/schemas/ToolCall.avsc",
        "agentstream/schemas/history/ToolCall/v1.avsc",
        "agentstream/sinks/migrations/0001_raw_events.sql",
        "agentstream/processors/alerts/default_rules.yaml",
        "agentstream/devtools/localstack/server.properties",
    ):
        assert shipped in names, shipped


def test_an_app_with_its_own_schemas_module_emits_through_the_sdk(
    wheel: Path, tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True,
    )
    app = tmp_path / "app"
    app.mkdir()
    (app / "schemas.py").write_text("def summary() -> str:\n    return 'the app'\n")
    (app / "processors.py").write_text("")
    (app / "sinks.py").write_text("")
    (app / "main.py").write_text(APP)
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    result = subprocess.run(
        [str(python), "main.py"], cwd=app, capture_output=True, text=True, env=clean_env
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["status"] == "SUCCESS"
    assert seen["summary"] == "the app"
    for module in ("schemas", "processors", "sinks"):
        assert seen[module] == str(app / f"{module}.py")
    assert seen["ours"].startswith(str(env_dir))
    assert seen["worker_modules"] == []

    # the base install has no worker: the command says what to install, in one line
    worker = subprocess.run(
        [str(env_dir / "bin" / "agentstream"), "worker"],
        cwd=app, capture_output=True, text=True, env=clean_env, timeout=60,
    )  # fmt: skip
    assert worker.returncode == 2
    assert worker.stderr.strip().count("\n") == 0
    assert "pip install 'agentstream[worker]'" in worker.stderr
