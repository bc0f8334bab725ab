"""Permission checks as uid/gid 65534 on directory argv[1]: fixtures are made
as root, then the process drops to nobody and tries each case.  Prints JSON;
run on /strata and on tmpfs, the outputs must match."""
import json
import os
import sys

from worker_outcome import res

d = sys.argv[1]
os.umask(0)


def mk(path, mode, data=b"x"):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.write(fd, data)
    os.close(fd)
    os.chmod(path, mode)


for name, mode in [("pub", 0o777), ("priv", 0o700), ("ro", 0o755), ("sticky", 0o1777), ("noread", 0o711)]:
    os.mkdir(f"{d}/{name}", mode)
    os.chmod(f"{d}/{name}", mode)
mk(f"{d}/ro/f", 0o644)
mk(f"{d}/secret", 0o600)
mk(f"{d}/world", 0o666)
mk(f"{d}/priv/inner", 0o644)
mk(f"{d}/sticky/rootfile", 0o666)
mk(f"{d}/noread/known", 0o644)
os.mkdir(f"{d}/ro/sub", 0o777)

os.setgid(65534)
os.setgroups([])
os.setuid(65534)


mk(f"{d}/pub/mine", 0o600)
mk(f"{d}/sticky/mine", 0o600)
cases = {
    "read_0600_root": lambda: os.open(f"{d}/secret", os.O_RDONLY),
    "write_0644_root": lambda: os.open(f"{d}/ro/f", os.O_WRONLY),
    "read_0644_root": lambda: os.open(f"{d}/ro/f", os.O_RDONLY),
    "write_0666_root": lambda: os.open(f"{d}/world", os.O_WRONLY),
    "trunc_0644_root": lambda: os.truncate(f"{d}/ro/f", 0),
    "create_in_0755_root": lambda: os.open(f"{d}/ro/new", os.O_WRONLY | os.O_CREAT, 0o644),
    "create_in_0777": lambda: os.open(f"{d}/pub/new", os.O_WRONLY | os.O_CREAT, 0o644),
    "create_0400_then_write": lambda: os.open(f"{d}/pub/ro_new", os.O_WRONLY | os.O_CREAT, 0o400),
    "mkdir_in_0755_root": lambda: os.mkdir(f"{d}/ro/newdir"),
    "unlink_in_0755_root": lambda: os.unlink(f"{d}/ro/f"),
    "rmdir_in_0755_root": lambda: os.rmdir(f"{d}/ro/sub"),
    "rename_out_of_0755_root": lambda: os.rename(f"{d}/ro/f", f"{d}/pub/f"),
    "rename_into_0755_root": lambda: os.rename(f"{d}/pub/mine", f"{d}/ro/mine"),
    "search_0700_root": lambda: os.stat(f"{d}/priv/inner"),
    "open_in_0700_root": lambda: os.open(f"{d}/priv/inner", os.O_RDONLY),
    "chdir_0700_root": lambda: os.chdir(f"{d}/priv"),
    "list_0711_root": lambda: os.listdir(f"{d}/noread"),
    "stat_in_0711_root": lambda: str(os.stat(f"{d}/noread/known").st_size),
    "chmod_root_file": lambda: os.chmod(f"{d}/world", 0o777),
    "chmod_own_file": lambda: os.chmod(f"{d}/pub/mine", 0o640),
    "unlink_other_in_sticky": lambda: os.unlink(f"{d}/sticky/rootfile"),
    "unlink_own_in_sticky": lambda: os.unlink(f"{d}/sticky/mine"),
    "unlink_own_in_0777": lambda: os.unlink(f"{d}/pub/new"),
    "access_r_secret": lambda: os.access(f"{d}/secret", os.R_OK),
    "access_w_world": lambda: os.access(f"{d}/world", os.W_OK),
    "own_uid": lambda: str(os.stat(f"{d}/pub/mine").st_uid),
    "root_uid": lambda: str(os.stat(f"{d}/secret").st_uid),
    "own_mode": lambda: oct(os.stat(f"{d}/pub/ro_new").st_mode),
}
print(json.dumps({k: res(v) for k, v in cases.items()}, sort_keys=True))
