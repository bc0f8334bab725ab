"""Start a program from a launcher (kbrun, tas-run, zio run, strata run) the
way a shell would.

Python ignores SIGPIPE and SIGXFSZ when it starts, and an ignored signal
stays ignored across exec: without this, `tas-run -- prog | head` would leave
prog writing into EPIPE instead of ending, and a write past RLIMIT_FSIZE
would fail with EFBIG instead of stopping the program, unlike the same
command without the launcher.  The CLIs that print (tasctl, zio stats,
strata stat) also end quietly when their reader goes away.
"""
import os
import signal


def default_signals():
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)


def exec_program(argv, env):
    """execvpe with default signal dispositions; raises OSError as execvpe."""
    default_signals()
    os.execvpe(argv[0], argv, env)
