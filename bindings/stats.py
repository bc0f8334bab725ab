"""Reader for the shared stats pages (include/kb/stats.h, contract 6).

Every component publishes /dev/shm/kbstats.<component>.<instance>; this module
is the one reader `tasctl`, `zio stats` and `strata stat` use.
"""
import glob
import mmap
import os

from bindings._stats import ffi, lib

STATS_DIR = "/dev/shm"


class StatsError(Exception):
    pass


def page_path(component, instance):
    return os.path.join(STATS_DIR, f"kbstats.{component}.{instance}")


def read_page(path):
    """Return {counter name: value} for one stats page, checking magic/version."""
    try:
        with open(path, "rb") as f:
            data = f.read(lib.KB_STATS_PAGE_SIZE)
    except FileNotFoundError:
        raise StatsError(f"no stats page at {path} (is the process running?)") from None
    if len(data) < ffi.sizeof("struct kb_stats_page"):
        raise StatsError(f"{path}: truncated stats page")
    page = ffi.from_buffer("struct kb_stats_page *", data)
    if page.magic != lib.KB_STATS_MAGIC:
        raise StatsError(f"{path}: not a stats page (bad magic)")
    if page.version != lib.KB_STATS_VERSION:
        raise StatsError(f"{path}: stats version {page.version}, this reader knows "
                         f"{lib.KB_STATS_VERSION}; upgrade the tools")
    n = min(page.ncounters, lib.KB_STATS_MAX)
    return {ffi.string(page.c[i].name).decode(): page.c[i].value for i in range(n)}


def read(component, instance):
    return read_page(page_path(component, instance))


def _alive(path):
    """False for a page whose writer died without removing it (SIGKILL)."""
    try:
        with open(path, "rb") as f:
            page = ffi.from_buffer("struct kb_stats_page *", f.read(lib.KB_STATS_PAGE_SIZE))
        os.kill(page.pid, 0)
        return True
    except ProcessLookupError:
        return False
    except (OSError, ValueError, TypeError):
        return True


def instances(component):
    """Instances of a component whose writer is running."""
    prefix = page_path(component, "")
    return sorted(p[len(prefix):] for p in glob.glob(prefix + "*") if _alive(p))


def format_table(counters, title=None):
    """Render counters as an aligned two-column table."""
    lines = [title] if title else []
    width = max((len(k) for k in counters), default=0)
    lines += [f"  {k:<{width}}  {v:>16,}" for k, v in counters.items()]
    return "\n".join(lines)


def prometheus(component, instance, counters):
    """Prometheus text exposition of one page (one exporter serves all)."""
    return "".join(
        f'kb_{component}_{name}{{instance="{instance}"}} {value}\n'
        for name, value in counters.items())


class Writer:
    """Python-side writer (used by the daemon's slow path) over the same page."""

    def __init__(self, component, instance, module=None, mode=0o600, gid=-1):
        """module: the cffi module whose kb_stats_* functions to use, so the
        page pointer can be handed to that module's other C functions.
        mode/gid: the page's permissions (owner-only unless asked)."""
        self.component, self.instance = component, instance
        self.ffi, self.lib = (module.ffi, module.lib) if module else (ffi, lib)
        page = self.lib.kb_stats_create_mode(component.encode(), instance.encode(), mode, gid)
        if page == self.ffi.NULL:
            raise StatsError(f"cannot create {page_path(component, instance)}: "
                             f"{os.strerror(self.ffi.errno)}")
        self.page = page
        self._ptrs = {}

    def counter(self, name):
        ptr = self._ptrs.get(name)
        if ptr is None:
            ptr = self._ptrs[name] = self.lib.kb_stats_counter(self.page, name.encode())
        return ptr

    def add(self, name, n=1):
        self.counter(name)[0] += n

    def set(self, name, value):
        self.counter(name)[0] = value

    def close(self, unlink=True):
        if self.page is not None:
            self.lib.kb_stats_close(self.page, self.component.encode(),
                               self.instance.encode(), int(unlink))
            self.page = None
