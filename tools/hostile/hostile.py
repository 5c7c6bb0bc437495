#!/usr/bin/env python3
"""A hostile neighbour for Warren, written from docs/PROTOCOL.md alone, with pyzmq.

It starts four `warren node` processes on loopback: a victim V and three honest nodes A, B, C
that know only V (degree 0), so every honest message between them crosses V; with --mesh they
also know each other (a full mesh of four), so every message arrives at every node several times
and exactly-once depends on the de-dup cache. It joins V the way
any neighbour does (an XPUB that connects to V's SUB, a SUB of its own that V dials back), learns
what any neighbour learns (V's node id and link token from V's HELLO, V's neighbours from its
PEERS), and then runs one attack while all honest pairs exchange messages twice a second:

  bye         BYE frames whose `from` is each honest neighbour of V
  selfhello   HELLO frames claiming V's own node id, with predictable and observed tokens
  helloflood  20,000 HELLOs from random node ids, each advertising another dead endpoint,
              on the attacker's connection and on a fresh connection every 10 HELLOs
  batch       valid DATA frames packed into 64 KiB BATCH messages, as fast as it can send
  relayflood  distinct DATA frames through V, as fast as it can send
  none        no attack (the baseline)

It samples V's resident memory and descriptors (/proc) throughout and prints one JSON object:
honest deliveries (expected, exactly once, missing, duplicated, latency p50/p99) during and after
the attack, V's baseline and peak RSS and descriptors, V's counters from /status, and whether
the bounds held (V stays up, every honest message delivered exactly once, descriptors below
baseline + 256, RSS below baseline + 96 MiB). Exit status 0 if they held.
"""
import argparse
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import zmq

M64 = (1 << 64) - 1
CONTROL = bytes(32)


def mix64(x):
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


# Frames (docs/PROTOCOL.md §2).
def header(kind, ttl, hops, frm):
    return bytes([1, kind, ttl, hops]) + frm.to_bytes(8, "big")


def endpoint_bytes(e):
    b = e.encode()
    return struct.pack(">H", len(b)) + b


def hello(frm, token, echo, endpoint, peers=()):
    body = header(2, 0, 0, frm) + b"\x00" + token.to_bytes(8, "big") + echo.to_bytes(8, "big") + endpoint_bytes(endpoint)
    body += bytes([len(peers)]) + b"".join(n.to_bytes(8, "big") + endpoint_bytes(e) for n, e in peers)
    return body


def bye(frm):
    return header(5, 0, 0, frm)


def data(frm, ttl, envelope):
    return header(1, ttl, 0, frm) + envelope


def batch(frm, entries):
    return header(6, 0, 0, frm) + b"".join(struct.pack(">H", len(e)) + e for e in entries)


def parse_peer_list(b, i):
    n = b[i]; i += 1
    out = []
    for _ in range(n):
        node = int.from_bytes(b[i:i + 8], "big"); i += 8
        ln = struct.unpack(">H", b[i:i + 2])[0]; i += 2
        out.append((node, b[i:i + ln].decode())); i += ln
    return out, i


def frames_of(body):
    """The frame bodies in one message (a BATCH is split)."""
    if len(body) >= 2 and body[1] == 6:
        out, i = [], 12
        while i + 2 <= len(body):
            n = struct.unpack(">H", body[i:i + 2])[0]
            out.append(body[i + 2:i + 2 + n]); i += 2 + n
        return out
    return [body]


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    return p


class Node:
    """One `warren node` process: JSON lines in (publish), JSON lines out (events, messages)."""

    def __init__(self, warren, name, workdir, peers=(), metrics=True, extra=()):
        key = subprocess.run([warren, "genkey"], capture_output=True, check=True).stdout
        self.keyfile = os.path.join(workdir, name + ".key")
        with open(self.keyfile, "wb") as f: f.write(key)
        os.chmod(self.keyfile, 0o600)
        self.public = subprocess.run([warren, "pubkey"], input=key, capture_output=True, check=True).stdout.decode().strip()
        args = [warren, "node", "--key-file", self.keyfile, "--listen", "tcp://127.0.0.1:0", "--degree", "0", "--log-level", "warning"]
        for p in peers: args += ["--peer", p]
        if metrics: args += ["--metrics", "127.0.0.1:0"]
        args += list(extra)
        self.name = name
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, name + ".log"), "wb"))
        self.lock = threading.Lock()
        self.received = []   # (ufrag, time)
        self.events = []
        self.ready = None
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.time() + 30
        while self.ready is None:
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.05)
        self.endpoint = self.ready["endpoint"]
        self.metrics = self.ready.get("metrics")

    def _read(self):
        for line in self.proc.stdout:
            try:
                o = json.loads(line)
            except ValueError:
                continue
            now = time.time()
            with self.lock:
                if o.get("event") == "ready": self.ready = o
                elif "event" in o: self.events.append(o)
                elif "message" in o:
                    u = o["message"].get("credentials", {}).get("ufrag")
                    if u: self.received.append((u, now))

    def publish(self, to, ufrag):
        line = json.dumps({"to": to, "message": {"credentials": {"ufrag": ufrag, "pwd": "p"}}}) + "\n"
        try:
            self.proc.stdin.write(line.encode()); self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def ups(self):
        with self.lock:
            n = 0
            for e in self.events:
                n += 1 if e["event"] == "peer-up" else -1 if e["event"] == "peer-down" else 0
            return n

    def status(self, attempts=10):
        """/status (retried: a node still working off a flood may not answer at once)."""
        o = {}
        for _ in range(attempts):
            try:
                with urllib.request.urlopen(f"http://{self.metrics}/status", timeout=5) as r:
                    o = json.loads(r.read())
            except Exception as e:   # noqa: BLE001 - reported, not fatal
                o = {"error": str(e)}
            if "counters" in o: break
            time.sleep(1)
        return o

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try: self.proc.wait(10)
            except subprocess.TimeoutExpired: self.proc.kill()


def proc_sample(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) * 1024
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return rss, fds
    except (OSError, StopIteration):
        return None


class Attacker:
    """A raw neighbour: an XPUB connected to the victim's SUB, a SUB the victim dials back."""

    def __init__(self, ctx, victim_endpoint):
        self.ctx = ctx
        self.victim_endpoint = victim_endpoint
        self.node = random.getrandbits(63) | 1
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, 1000)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.bind(self.endpoint)
        self.pub = self.connect()
        self.victim_id = None
        self.victim_token = None
        self.victim_advertised = None
        self.neighbours = {}   # node id -> endpoint
        self.lock = threading.Lock()
        self.stop_listening = False
        threading.Thread(target=self._listen, daemon=True).start()

    def connect(self, timeout=3.0):
        s = self.ctx.socket(zmq.XPUB)
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.victim_endpoint)
        if s.poll(int(timeout * 1000)):   # the victim's SUB subscribed: sends now arrive
            s.recv()
        return s

    def _listen(self):
        poller = zmq.Poller(); poller.register(self.sub, zmq.POLLIN)
        while not self.stop_listening:
            if not poller.poll(200): continue
            try:
                parts = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            if len(parts) != 2 or parts[0] != CONTROL: continue
            for b in frames_of(parts[1]):
                if len(b) < 12: continue
                frm = int.from_bytes(b[4:12], "big")
                with self.lock:
                    if b[1] == 2 and len(b) >= 31:
                        self.victim_id = frm
                        self.victim_token = int.from_bytes(b[13:21], "big")
                        ln = struct.unpack(">H", b[29:31])[0]
                        self.victim_advertised = b[31:31 + ln].decode()
                        peers, _ = parse_peer_list(b, 31 + ln)
                        self.neighbours.update(dict(peers))
                    elif b[1] == 4 and len(b) >= 13:
                        peers, _ = parse_peer_list(b, 12)
                        self.neighbours.update(dict(peers))

    def send(self, body, topic=CONTROL, sock=None):
        (sock or self.pub).send_multipart([topic, body], copy=False)

    def join(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.send(hello(self.node, random.getrandbits(63) | 1, 0, self.endpoint))
            time.sleep(0.3)
            with self.lock:
                if self.victim_id is not None and len(self.neighbours) >= 3: return True
        return self.victim_id is not None

    def heartbeat(self):
        self.send(header(3, 0, 0, self.node))


def run_attack(att, kind, duration, stop):
    """Runs `kind` until `duration` has passed; returns frames (messages) sent."""
    end = time.time() + duration
    sent = 0
    honest = [n for n in att.neighbours if n != att.node]
    if kind == "bye":
        fresh = [att.connect() for _ in range(4)]
        while time.time() < end and not stop.is_set():
            for n in honest:
                att.send(bye(n)); sent += 1
                for s in fresh: att.send(bye(n), sock=s); sent += 1
            att.heartbeat()
            time.sleep(0.001)
        for s in fresh: s.close()
    elif kind == "selfhello":
        v = att.victim_id
        tokens = [(mix64(v) + k) & M64 for k in range(1, 257)] + [att.victim_token]
        tokens += [(att.victim_token + d) & M64 for d in range(-64, 65) if d]
        fresh = [att.connect() for _ in range(4)]
        while time.time() < end and not stop.is_set():
            for t in tokens:
                h = hello(v, t or 1, 0, att.victim_advertised or att.victim_endpoint)
                att.send(h); sent += 1
                for s in fresh: att.send(h, sock=s); sent += 1
            att.heartbeat()
            time.sleep(0.01)
        for s in fresh: s.close()
    elif kind == "helloflood":
        # 20,000 HELLOs over the attack, each from a new node id with a dead endpoint: every
        # other one on the attacker's connection, the rest on fresh connections (a new one every
        # 10 HELLOs, up to 100 open: each costs the victim a descriptor), so each fresh
        # connection's first HELLO asks for a dial back.
        total = 20000
        k = 0
        extra = []
        while k < total and time.time() < end and not stop.is_set():
            if k % 20 == 10:
                extra.append(att.connect(timeout=0.1))
                if len(extra) > 100: extra.pop(0).close()
            sock = att.pub if k % 20 < 10 else extra[-1]
            dead = f"tcp://127.0.0.1:{1 + (k % 999)}"
            peers = [(random.getrandbits(63) | 1, f"tcp://127.0.0.1:{1000 + (k * 7 + j) % 9000}") for j in range(8)]
            att.send(hello(random.getrandbits(63) | 1, random.getrandbits(63) | 1, 0, dead, peers), sock=sock)
            k += 1; sent += 1
            if k % 100 == 0: att.heartbeat()
        for s in extra: s.close()
    elif kind in ("batch", "relayflood"):
        topic = bytes([0x42] * 31 + [1])
        pad = os.urandom(4000)
        n = 0
        last_hb = 0.0
        while time.time() < end and not stop.is_set():
            if kind == "batch":
                entries, size = [], 12
                while size + 2 + 12 + 300 <= 65536:
                    env = n.to_bytes(8, "big") + pad[:292]; n += 1
                    entries.append(data(att.node, 8, env)); size += 2 + 12 + len(env)
                att.send(batch(att.node, entries), topic=topic)
            else:
                env = n.to_bytes(8, "big") + pad[:120]; n += 1
                att.send(data(att.node, 8, env), topic=topic)
            sent += 1
            if time.time() - last_hb > 0.2:
                att.heartbeat(); last_hb = time.time()
    else:
        while time.time() < end and not stop.is_set():
            att.heartbeat(); time.sleep(0.2)
    return sent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warren", required=True, help="path of the warren executable")
    ap.add_argument("--attack", default="none", choices=["none", "bye", "selfhello", "helloflood", "batch", "relayflood"])
    ap.add_argument("--duration", type=float, default=6.0, help="seconds of attack")
    ap.add_argument("--fd-margin", type=int, default=256)
    ap.add_argument("--rss-margin-mib", type=int, default=96)
    ap.add_argument("--mesh", action="store_true", help="honest nodes also know each other (full mesh of four)")
    ap.add_argument("--victim-seen-capacity", type=int, default=49152,
                    help="V's --seen-capacity (default 49152: V admits 4,096 new ids a second, 2,048 from one "
                         "neighbour, which the floods exceed however slowly this script gets to send on a busy "
                         "machine; 524288 is a node's default, 21,845 from one neighbour)")
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="warren-hostile-")
    nodes = []
    result = {"attack": args.attack, "duration_s": args.duration}
    ctx = zmq.Context()
    att = None
    try:
        v = Node(args.warren, "V", workdir, extra=["--seen-capacity", str(args.victim_seen_capacity)]); nodes.append(v)
        result["victim_seen_capacity"] = args.victim_seen_capacity
        for n in "ABC":
            seeds = [v.endpoint] + ([x.endpoint for x in nodes[1:]] if args.mesh else [])
            nodes.append(Node(args.warren, n, workdir, peers=seeds))
        result["mesh"] = args.mesh
        want = 3 if args.mesh else 1
        deadline = time.time() + 20
        while (v.ups() < 3 or any(n.ups() < want for n in nodes[1:])) and time.time() < deadline: time.sleep(0.1)
        if v.ups() < 3: raise RuntimeError("the honest overlay did not form")

        att = Attacker(ctx, v.endpoint)
        joined = att.join()
        result["attacker_joined"] = joined
        result["learned_neighbours"] = len(att.neighbours)
        time.sleep(1.0)
        base = proc_sample(v.proc.pid)
        result["baseline"] = {"rss_mib": round(base[0] / 2**20, 1), "fds": base[1]}

        peak = [base[0], base[1]]
        stop = threading.Event()
        def sampler():
            while not stop.is_set():
                s = proc_sample(v.proc.pid)
                if s: peak[0] = max(peak[0], s[0]); peak[1] = max(peak[1], s[1])
                time.sleep(0.1)
        threading.Thread(target=sampler, daemon=True).start()

        sent_at = {}
        def round_(tag):
            for i, a in enumerate(nodes):
                for j, b in enumerate(nodes):
                    if i == j: continue
                    u = f"{tag}-{a.name}{b.name}"
                    sent_at[u] = (b, time.time())
                    a.publish(b.public, u)

        atk_sent = [0]
        atk = threading.Thread(target=lambda: atk_sent.__setitem__(0, run_attack(att, args.attack, args.duration, stop)), daemon=True)
        t0 = time.time()
        atk.start()
        r = 0
        while time.time() - t0 < args.duration:
            round_(f"during{r}"); r += 1
            time.sleep(0.5)
        atk.join(args.duration + 30)
        result["attack_messages_sent"] = atk_sent[0]
        time.sleep(1.0)
        for k in range(2): round_(f"after{k}"); time.sleep(0.5)
        time.sleep(3.0)
        stop.set()
        time.sleep(0.2)

        def summary(prefix):
            want = {u: d for u, d in sent_at.items() if u.startswith(prefix)}
            counts, lat = {}, []
            for n in nodes:
                with n.lock:
                    for u, t in n.received:
                        if u in want:
                            counts[u] = counts.get(u, 0) + 1
                            if counts[u] == 1: lat.append(t - want[u][1])
            lat.sort()
            def q(p): return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None
            return {"expected": len(want), "once": sum(1 for u in want if counts.get(u) == 1),
                    "missing": sum(1 for u in want if u not in counts), "duplicated": sum(1 for u in want if counts.get(u, 0) > 1),
                    "latency_ms_p50": q(0.5), "latency_ms_p99": q(0.99)}
        result["honest_during"] = summary("during")
        result["honest_after"] = summary("after")
        result["peak"] = {"rss_mib": round(peak[0] / 2**20, 1), "fds": peak[1]}
        result["victim_alive"] = v.proc.poll() is None
        st = v.status()
        result["victim_counters"] = st.get("counters", st)
        result["victim_neighbours"] = len(st.get("neighbours", []))
        result["honest_rate_limited"] = [n.status().get("counters", {}).get("rate_limited") for n in nodes[1:]]
        ok = (result["victim_alive"]
              and result["honest_during"]["once"] == result["honest_during"]["expected"]
              and result["honest_after"]["once"] == result["honest_after"]["expected"]
              and peak[1] < base[1] + args.fd_margin
              and peak[0] < base[0] + args.rss_margin_mib * 2**20)
        result["ok"] = bool(ok)
    except Exception as e:   # noqa: BLE001 - reported in the JSON
        result["ok"] = False
        result["error"] = repr(e)
    finally:
        for n in nodes: n.stop()
        if att is not None:
            att.stop_listening = True
            time.sleep(0.3)
        ctx.destroy(linger=0)
    print(json.dumps(result))
    sys.exit(0 if result.get("ok") else 1)


if __name__ == "__main__":
    main()
