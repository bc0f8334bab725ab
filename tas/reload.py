"""SIGHUP: re-read the configuration and apply what can change live.

Live: every [limits] key and the app socket's mode and group.  Anything
else that changed is reported (it needs a restart) and left as it was; a
configuration that does not validate is refused as a whole.  Each outcome
is one key=value log line.
"""
import os

from tas import config
from tas.slowpath.sockfile import group_id

LIVE_SECTIONS = {"limits"}
LIVE_KEYS = {("tas", "socket_mode"), ("tas", "socket_group")}


def changed_keys(old, new):
    return [(sec, key) for sec, keys in new.items() for key, value in keys.items()
            if old[sec][key] != value]


def reload(cfg, path, overrides, slowpath, log):
    """Re-read `path` (+ overrides) into the running daemon's cfg."""
    try:
        new = config.load(path, overrides)
    except config.ConfigError as e:
        log(f"tas: event=reload result=refused error={e!r}")
        return False
    applied, restart = [], []
    for sec, key in changed_keys(cfg, new):
        live = sec in LIVE_SECTIONS or (sec, key) in LIVE_KEYS
        (applied if live else restart).append(f"{sec}.{key}")
        if live:
            cfg[sec][key] = new[sec][key]
    slowpath.quota.configure(cfg)
    slowpath.apps.register_timeout = cfg.limits.register_timeout_ms / 1000
    sock = slowpath.apps.path
    os.chmod(sock, cfg.tas.socket_mode)     # the run directory is ours alone
    gid = group_id(cfg.tas.socket_group)
    os.chown(sock, -1, gid if gid >= 0 else os.getegid(), follow_symlinks=False)
    log(f"tas: event=reload result=ok applied={','.join(applied) or '-'} "
        f"needs_restart={','.join(restart) or '-'}")
    return True
