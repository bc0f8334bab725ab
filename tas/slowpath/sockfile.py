"""Files the daemon creates in its run directory, made without following links.

The run directory must belong to the daemon's user and be writable by
nobody else (checked by tas.instance before anything is created in it), so
no other user can plant a name there.  Sockets are still bound with their
final mode set through the umask (never a chmod by path, which would follow
a link swapped in afterwards) and their group set with lchown.
"""
import grp
import os
import socket
import stat


def group_id(group):
    """'' -> -1 (keep ours); a number or a group name -> its gid."""
    if group == "":
        return -1
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise OSError(f"group {group!r} does not exist (tas.socket_group / tas.stats_group)") \
            from None


def remove_stale(path):
    """Remove what an earlier run left at path (we hold the instance lock).
    unlink never follows a link; a directory there is refused loudly."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise OSError(f"{path} is a directory: remove it or choose another tas.instance")
    os.unlink(path)


def bind_unix_socket(path, sock_type, mode, group=""):
    remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, sock_type)
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)     # fails with EADDRINUSE if anything was put there meanwhile
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    gid = group_id(group)
    if gid >= 0:
        os.chown(path, -1, gid, follow_symlinks=False)
    return sock
