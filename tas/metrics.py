"""Optional Prometheus endpoint (`metrics.listen`, off by default).

Serves /metrics over every stats page on the machine: the TAS daemons, and
the zIO and Strata shims of running programs (/dev/shm/kbstats.*), read at
each scrape.  The pages carry no types, so every value is exported untyped
as kb_<component>_<counter>{instance="..."}, as `tasctl stats --prometheus`
prints them.
"""
from bindings import stats as kbstats

COMPONENTS = ("tas", "zio", "strata")


class StatsPagesCollector:
    def collect(self):
        from prometheus_client.core import UnknownMetricFamily
        families = {}
        for component in COMPONENTS:
            for inst in kbstats.instances(component):
                try:
                    counters = kbstats.read(component, inst)
                except kbstats.StatsError:
                    continue        # its writer went away meanwhile
                for name, value in counters.items():
                    metric = f"kb_{component}_{name}"
                    fam = families.get(metric)
                    if fam is None:
                        fam = families[metric] = UnknownMetricFamily(
                            metric, f"{component} counter {name}", labels=["instance"])
                    fam.add_metric([inst], value)
        yield from families.values()


def parse_listen(text):
    """'ADDR:PORT' -> (addr, port)."""
    addr, _, port = text.rpartition(":")
    return addr or "127.0.0.1", int(port)


class MetricsServer:
    def __init__(self, listen):
        from prometheus_client import CollectorRegistry, start_http_server
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StatsPagesCollector())
        addr, port = parse_listen(listen)
        started = start_http_server(port, addr=addr, registry=registry)
        self.server = started[0] if isinstance(started, tuple) else None
        self.address = f"{addr}:{port}"

    def close(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
