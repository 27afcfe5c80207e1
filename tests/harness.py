"""Running the `monitor` command in-process: the same entry point users run (``monitor.cli.main``), its
stdout, stderr and exit code captured, with the E-utilities stand-in wired in as an httpx transport and
the rate limiter and retry waits on virtual time, so a test exercises every retry and rate decision
without waiting for any of them.

The subprocess runner (``run_installed`` in conftest) stays for the smoke tests that need a real process:
signals, the installed console script, real sockets.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence

from click.testing import CliRunner

from monitor.app import Overrides
from monitor.cli import main
from tests.eutils_standin import StandIn

# Virtual seconds between two commands run on one virtual clock, as between two processes (start-up alone
# takes longer): NCBI's one-second window does not carry one command's requests into the next's.
START_GAP_SECONDS = 1.0


class VirtualTime:
    """A monotonic clock that moves only when someone sleeps on it: the rate limiter's waits and the
    client's retry backoffs advance it instead of blocking. The stand-in times arrivals on it too, so its
    rate-limit checks see exactly the spacing the limiter produced."""

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept = 0.0  # total virtual seconds waited

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            step = max(0.0, seconds)
            self._now += step
            self.slept += step


def standin_overrides(standin: StandIn, time: VirtualTime | None = None) -> Overrides:
    """Overrides that send the monitor's E-utilities requests to ``standin`` in-process, on virtual time."""
    time = time or VirtualTime()
    return Overrides(transport=standin.transport(time.monotonic), monotonic=time.monotonic, sleep=time.sleep)


def invoke(args: Sequence[str], env: Mapping[str, str | None] | None = None,
           overrides: Overrides | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``monitor ARGS`` in this process; returns what a subprocess run would (args, returncode, stdout,
    stderr). ``env`` is applied for the duration (None unsets a variable); MONITOR_* and NCBI_* variables
    of the test process are unset unless given."""
    import os

    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith(("MONITOR_", "NCBI_"))}
    clean.update(env or {})
    runner = CliRunner()
    code = 0
    if isinstance(overrides, Overrides) and overrides.sleep is not None:
        overrides.sleep(START_GAP_SECONDS)
    with runner.isolation(env=clean) as (out, err, _):
        try:
            main(list(args), overrides)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
    return subprocess.CompletedProcess(["monitor", *args], code, out.getvalue().decode("utf-8", "replace"),
                                       err.getvalue().decode("utf-8", "replace"))


# aiosmtpd's server threads log handshake failures the tests provoke on purpose; in-process they would land
# on the stderr of the command under test.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)
