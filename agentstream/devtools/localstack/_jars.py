"""The Kafka broker's jars: resolved once from Maven Central by ``mvn``, then cached."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from agentstream.core.errors import ConfigError, LocalStackError
from agentstream.devtools.localstack._system import file_lock, find_tool

__all__ = ["MARKER_NAME", "JarCache", "render_pom"]

#: written into ``<cache>/<version>/`` after a complete resolution
MARKER_NAME = ".complete.json"

_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]*")

#: ``progress(step, detail)``: a long step is under way
ProgressFn = Callable[[str, str], None]


def _no_progress(step: str, detail: str) -> None:
    """Default progress sink: silence."""


def _check_version(value: str, setting: str) -> str:
    if not _VERSION.fullmatch(value):
        raise ConfigError(f"{setting}: not a version: {value!r}")
    return value


def render_pom(version: str, scala_version: str) -> str:
    """The packaged ``pom.xml`` with the Kafka and Scala versions filled in."""
    _check_version(version, "AGENTSTREAM_LOCAL_KAFKA__VERSION")
    _check_version(scala_version, "AGENTSTREAM_LOCAL_KAFKA__SCALA_VERSION")
    text = resources.files("agentstream.devtools.localstack").joinpath("pom.xml").read_text()
    for name, value in (("kafka.version", version), ("scala.binary.version", scala_version)):
        text, count = re.subn(rf"<{name}>[^<]*</{name}>", f"<{name}>{value}</{name}>", text)
        if count != 1:
            raise LocalStackError(f"packaged pom.xml has no single <{name}> property")
    return text


class JarCache:
    """``<root>/<version>/libs``: the jars of one Kafka version, complete or absent."""

    def __init__(self, root: Path, version: str, scala_version: str = "2.13") -> None:
        self.version = _check_version(version, "AGENTSTREAM_LOCAL_KAFKA__VERSION")
        self.scala_version = _check_version(scala_version, "AGENTSTREAM_LOCAL_KAFKA__SCALA_VERSION")
        self.version_dir = root / version
        self.libs = self.version_dir / "libs"
        self.marker = self.version_dir / MARKER_NAME
        self.mvn_log = self.version_dir / "mvn.log"

    @property
    def main_jar(self) -> str:
        """The file name of the broker's own jar."""
        return f"kafka_{self.scala_version}-{self.version}.jar"

    @property
    def classpath(self) -> str:
        """A JVM ``-cp`` value (the JVM expands the wildcard)."""
        return f"{self.libs}/*"

    def is_complete(self) -> bool:
        """Whether a finished resolution left every jar it listed in place."""
        try:
            record = json.loads(self.marker.read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(record, dict):
            return False
        jars = record.get("jars")
        if (
            record.get("version") != self.version
            or record.get("scala_version") != self.scala_version
            or not isinstance(jars, list)
            or self.main_jar not in jars
        ):
            return False
        return all(isinstance(jar, str) and (self.libs / jar).is_file() for jar in jars)

    def ensure(
        self,
        mvn: str = "mvn",
        maven_repo_local: Path | None = None,
        progress: ProgressFn = _no_progress,
    ) -> Path:
        """The libs folder; runs ``mvn`` first unless the cache is complete."""
        if self.is_complete():
            return self.libs
        with file_lock(self.version_dir / ".lock"):
            if not self.is_complete():  # another process may have finished meanwhile
                self._resolve(mvn, maven_repo_local, progress)
        return self.libs

    def _resolve(self, mvn: str, maven_repo_local: Path | None, progress: ProgressFn) -> None:
        mvn_path = find_tool(mvn, "AGENTSTREAM_LOCAL_KAFKA__MVN", "Apache Maven fetches the jars")
        pom = self.version_dir / "pom.xml"
        pom.write_text(render_pom(self.version, self.scala_version))
        partial = self.version_dir / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        self.marker.unlink(missing_ok=True)
        command = [
            mvn_path,
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={partial}",
            "-DincludeScope=runtime",
        ]
        if maven_repo_local is not None:
            command.append(f"-Dmaven.repo.local={maven_repo_local.expanduser().resolve()}")
        step = f"fetching the Kafka {self.version} jars with mvn (first run only)"
        progress(step, "")
        started = time.monotonic()
        downloads = 0
        with (
            self.mvn_log.open("w") as log,
            subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                cwd=self.version_dir,
            ) as proc,
        ):
            for line in proc.stdout or ():
                log.write(line)
                if "Downloaded from " in line:
                    downloads += 1
                elapsed = time.monotonic() - started
                progress(step, f"{downloads} files downloaded, {elapsed:.0f} s")
            returncode = proc.wait()
        if returncode != 0:
            raise LocalStackError(
                f"mvn could not fetch the Kafka {self.version} jars (exit {returncode}): "
                f"{self._first_error()}; full output in {self.mvn_log}"
            )
        jars = sorted(path.name for path in partial.glob("*.jar"))
        if self.main_jar not in jars:
            raise LocalStackError(
                f"mvn finished but {self.main_jar} is missing from {partial}; "
                f"full output in {self.mvn_log}"
            )
        shutil.rmtree(self.libs, ignore_errors=True)
        partial.rename(self.libs)
        record = {"version": self.version, "scala_version": self.scala_version, "jars": jars}
        tmp = self.marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(self.marker)

    def _first_error(self) -> str:
        try:
            lines = self.mvn_log.read_text(errors="replace").splitlines()
        except OSError:
            return "no output"
        errors = [line.removeprefix("[ERROR]").strip() for line in lines if "[ERROR]" in line]
        first = next((line for line in errors if line), lines[-1] if lines else "no output")
        return first[:300]
