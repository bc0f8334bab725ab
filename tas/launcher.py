"""Run a TAS daemon as a child process: start, wait until ready, stop.

Used by the demo, the benchmarks and the tests, so they all start and stop
the daemon the same way.
"""
import os
import select
import signal
import subprocess
import sys
import threading
import time

READY_WAIT_S = 60  # a hang guard for start-up, not a performance bound
OUTPUT_KEEP = 20000  # lines of the daemon's output kept (the newest)


class DaemonProcess:
    def __init__(self, config_path=None, instance="tas0", netns="tas-peer"):
        """config_path None: the built-in defaults (instance tas0, tas-peer)."""
        self.config = config_path
        self.instance = instance
        self.netns = netns
        self.proc = None
        self.output = []
        self._lock = threading.Lock()
        self._drain = None

    def start(self):
        cmd = [sys.executable, "-m", "tas.daemon"]
        if self.config is not None:
            cmd += ["-c", str(self.config)]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._partial = ""
        deadline = time.monotonic() + READY_WAIT_S
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if r and not self.poll_output():
                break                   # the daemon exited
            if any(line.startswith("tas: ready") for line in self.output):
                # From now on a thread reads the output, so that a burst of
                # messages can never fill the pipe and block the daemon's
                # writes (its slow path would stop)
                self._drain = threading.Thread(target=self._drain_loop, daemon=True)
                self._drain.start()
                return self
        self.stop()
        raise RuntimeError("daemon did not become ready:\n" + "".join(self.output))

    def poll_output(self):
        """Move what the daemon printed so far into self.output, without
        blocking; False at end of output.  Reads the pipe's descriptor
        directly: a buffered readline() after select() can leave a whole
        line sitting unseen in the reader's buffer."""
        with self._lock:
            return self._read_output()

    def _read_output(self):
        fd = self.proc.stdout.fileno()
        os.set_blocking(fd, False)
        alive = True
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    alive = False
                    break
                *lines, self._partial = (self._partial + chunk.decode(errors="replace")) \
                    .split("\n")
                self.output += [line + "\n" for line in lines]
        except BlockingIOError:
            pass
        finally:
            os.set_blocking(fd, True)
        if len(self.output) > OUTPUT_KEEP:
            del self.output[:len(self.output) - OUTPUT_KEEP]
        return alive

    def _drain_loop(self):
        while True:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r and not self.poll_output():
                return              # end of output: the daemon exited

    def ns_run(self, *cmd, **kw):
        """Run a command in the peer namespace."""
        return subprocess.run(["ip", "netns", "exec", self.netns, *cmd],
                              capture_output=True, text=True, **kw)

    def stop(self):
        """SIGTERM, wait for the orderly shutdown; returns the exit code."""
        if self.proc is None:
            return None
        if self._drain is not None:
            # the drain thread reads to the end of the output
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self._drain.join(timeout=30)
            self._drain = None
            self.output.append(self._partial)
            self._partial = ""
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                out, _ = self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, _ = self.proc.communicate()
            self.output.append(getattr(self, "_partial", "") + (out or ""))
        return self.proc.returncode
