"""Per-uid caps on what apps hold in the daemon ([limits] in the config).

Every app-socket connection carries its peer's uid (SO_PEERCRED, taken at
accept).  What a uid holds is counted here, so that one user cannot take
every context, flow or listener of the daemon from the others.  Root is
counted too: the caps are about fairness between programs, not privilege.
Refusals are counted per kind (quota_refused_<kind>) on the stats page.
"""

KINDS = {
    "connections": "connections_per_uid",
    "contexts": "contexts_per_uid",
    "flows": "flows_per_uid",
    "listeners": "listeners_per_uid",
    "buffer_bytes": "buffer_bytes_per_uid",
}

LOW_PORT_LIMIT = 1024


class UidQuota:
    def __init__(self, cfg, stats):
        self.configure(cfg)
        self.stats = stats
        self.used = {}          # uid -> {kind: amount}

    def configure(self, cfg):
        """(Re)read the caps; lowering one refuses new takes, keeps what is held."""
        self.caps = {kind: cfg.limits[key] for kind, key in KINDS.items()}
        self.low_port_uids = set(cfg.limits.low_port_uids)

    def take(self, uid, kind, amount=1):
        """Charge `amount` of `kind` to uid; False (and counted) if over the cap."""
        held = self.used.setdefault(uid, dict.fromkeys(KINDS, 0))
        if held[kind] + amount > self.caps[kind]:
            self.stats.add(f"quota_refused_{kind}")
            return False
        held[kind] += amount
        return True

    def give(self, uid, kind, amount=1):
        held = self.used.get(uid)
        if held is None:
            return
        held[kind] = max(0, held[kind] - amount)
        if not any(held.values()):
            del self.used[uid]

    def may_listen(self, uid, port):
        """Ports below 1024 are for root and the configured uids."""
        return port >= LOW_PORT_LIMIT or uid == 0 or uid in self.low_port_uids

    def snapshot(self):
        return {uid: dict(held) for uid, held in self.used.items()}
