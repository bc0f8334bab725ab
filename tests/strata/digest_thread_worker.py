"""Writer for test_strata_digest_thread.py, run under the shim.

  append PATH N        N records of 4 KiB appended with write + fsync (and
                       more, slowly, until the digest thread has made a
                       pass); prints its counters and the record count
  crash PATH           appends records until killed (2000 at most); prints "W" once the
                       digest thread has made a pass, "A i" per durable record
  fork PATH            appends until the thread runs, then forks a child that
                       appends to a file of its own and execs `cat` of it
"""
import json
import os
import sys

from bindings import stats

REC = 4096


def record(i):
    return (b"%08d" % i) * (REC // 8)


def counters():
    return stats.read("strata", str(os.getpid()))


def until_thread_pass(fd, i):
    """Append slowly until the digest thread has made a pass (a loaded
    machine may not have run it while the writer raced); returns the next
    record number."""
    import time
    while counters()["bg_digest_threads"] and counters()["bg_digest_passes"] == 0 and i < 100000:
        os.write(fd, record(i))
        i += 1
        time.sleep(0.002)
    return i


def main():
    mode, path = sys.argv[1], sys.argv[2]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    i = 0
    if mode == "append":
        for i in range(int(sys.argv[3])):
            os.write(fd, record(i))
            os.fsync(fd)
        n = until_thread_pass(fd, i + 1)
        print(json.dumps(dict(counters(), records=n)), flush=True)
    elif mode == "crash":
        warm = False
        while i < 2000:  # 8 MiB at most, then wait for the kill
            os.write(fd, record(i))
            os.fsync(fd)
            print("A", i, flush=True)
            i += 1
            if not warm and counters()["bg_digest_passes"] > 0:
                warm = True
                print("W", flush=True)
        if not warm:
            i = until_thread_pass(fd, i)
            print("A", i - 1, flush=True)
            print("W", flush=True)
        sys.stdin.read()
    elif mode == "fork":
        # the thread starts at a 32nd of the log: append until it has (after
        # the fork the parent's appends share the description with the child
        # and are published at once, so they would never start it)
        while counters()["bg_digest_threads"] == 0 and i < 2000:
            os.write(fd, record(i))
            i += 1
        i = until_thread_pass(fd, i)
        pid = os.fork()
        if pid == 0:
            c = os.open(path + ".child", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            for k in range(2000):  # past the child's own threshold: its own thread
                os.write(c, record(k))
            os.close(c)
            os.execvp("cat", ["cat", path + ".child"])
        _, status = os.waitpid(pid, 0)
        for k in range(i, i + 100):
            os.write(fd, record(k))
        # a forked child counts into its parent's stats page
        print(json.dumps({"status": status, "parent_records": i + 100,
                          "threads": counters()["bg_digest_threads"]}), flush=True)
    os.close(fd)


if __name__ == "__main__":
    main()
