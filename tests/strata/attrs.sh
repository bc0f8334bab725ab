# Owners, modes and times with coreutils and tar on directory $1 (run as
# root under the shim, on /strata and on tmpfs; outputs must match).
cd "$1" || exit 1
umask 022
# directory sizes are the file system's own; their mtimes only where set
list() {
    find "$@" | sort | while read -r f; do
        case "$(stat -c %F "$f")/$f" in
        directory/*sub) stat -c '%n %F %a %u %g %Y' "$f" ;;
        directory/*) stat -c '%n %F %a %u %g' "$f" ;;
        *) stat -c '%n %F %a %u %g %Y %s' "$f" ;;
        esac
    done
}
mkdir -p src/sub
printf 'hello\n' > src/f
printf 'data\n' > src/sub/g
chmod 640 src/f
chmod 2750 src/sub
chown 65534:65534 src/sub/g
touch -d '2010-01-02 03:04:05' src/f
touch -m -d '2011-01-01 00:00:00' src/sub/g
touch -d '2012-01-01 00:00:00' src/sub
touch new; echo "touch new rc=$?"
cp -a src copy
tar -cf - src | (mkdir ex && cd ex && tar -xpf -)
list src copy ex
python3 - <<'PY'
import os
fd = os.open("py", os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"x")
os.utime(fd, (100, 200))
os.fchown(fd, 65534, -1)
os.close(fd)
os.utime("src/f", ns=(0, 5_000_000_000))
st = os.stat("py")
print("py", st.st_mtime, st.st_uid, oct(st.st_mode), os.stat("src/f").st_mtime)
os.setgid(65534); os.setgroups([]); os.setuid(65534)
def res(fn):
    try:
        fn(); return "ok"
    except OSError as e:
        return e.strerror
print("nobody chown", res(lambda: os.chown("src/f", 65534, 65534)))
print("nobody utime explicit on root file", res(lambda: os.utime("src/f", (1, 1))))
print("nobody utime now on own file", res(lambda: os.utime("py")))
print("nobody chgrp own file", res(lambda: os.chown("py", -1, 65534)))
print("nobody chgrp to root", res(lambda: os.chown("py", -1, 0)))
PY
