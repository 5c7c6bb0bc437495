#!/usr/bin/env python3
"""Hold every packet of an NFQUEUE queue for a fixed delay, then accept it.

A stand-in for `tc qdisc … netem delay D` on kernels built without sch_netem (see
docs/FAULTS.md). Run it in the network namespace whose iptables rules send packets to the
queue, e.g.

    ip netns exec HUB iptables -A FORWARD -j NFQUEUE --queue-num 0
    ip netns exec HUB python3 tools/netns/nfq-delay.py --queue 0 --delay-ms 50

Only the Python standard library is used: it speaks nfnetlink_queue over a raw
AF_NETLINK socket. Packets are queued with their metadata only (NFQNL_COPY_META): the
payload stays in the kernel and is released unchanged by the verdict. The delay is
constant, so verdicts are issued in arrival order and nothing is reordered (netem without
jitter behaves the same). It prints "ready" on stdout once bound, and on SIGTERM/SIGINT
(or end of stdin with --stop-on-eof) it accepts what it holds and exits, printing
"held N packets" on stderr.
"""
import argparse
import collections
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NF_ACCEPT = 1


def attr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


def message(msg, queue, attrs, flags=NLM_F_REQUEST, seq=0):
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0) + body


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queue", type=int, default=0)
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--maxlen", type=int, default=65536)
    ap.add_argument("--stop-on-eof", action="store_true", help="exit when stdin closes (the parent died)")
    a = ap.parse_args()
    delay = a.delay_ms / 1000.0

    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((0, 0))
    seq = 1
    for attrs in ([attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0))],
                  [attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
                   attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", a.maxlen))]):
        s.send(message(NFQNL_MSG_CONFIG, a.queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq))
        data = s.recv(65536)
        _, kind, _, _, _ = struct.unpack_from("=IHHII", data)
        if kind == NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", data, 16)
            if err != 0:
                sys.exit(f"nfq-delay: config of queue {a.queue} failed: {os.strerror(-err)}")
        seq += 1
    s.setblocking(False)

    held = collections.deque()  # (release time, packet id), in arrival order
    total = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print("ready", flush=True)

    def verdict(pid):
        s.send(message(NFQNL_MSG_VERDICT, a.queue, [attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid))]))

    watch = [s] + ([sys.stdin] if a.stop_on_eof else [])
    while not stop:
        now = time.monotonic()
        while held and held[0][0] <= now:
            verdict(held.popleft()[1])
        timeout = max(0.0, held[0][0] - now) if held else 1.0
        try:
            ready, _, _ = select.select(watch, [], [], timeout)
        except InterruptedError:
            continue
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 4096):
            break
        if s not in ready:
            continue
        while True:
            try:
                data = s.recv(1 << 16)
            except BlockingIOError:
                break
            except OSError as e:  # ENOBUFS: the kernel dropped notifications; keep going
                print(f"nfq-delay: {e}", file=sys.stderr)
                break
            arrived = time.monotonic()
            off = 0
            while off + 16 <= len(data):
                n, kind, _, _, _ = struct.unpack_from("=IHHII", data, off)
                if n < 16:
                    break
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    p = off + 20  # nlmsghdr + nfgenmsg
                    while p + 4 <= off + n:
                        alen, akind = struct.unpack_from("=HH", data, p)
                        if alen < 4:
                            break
                        if akind & 0x7FFF == NFQA_PACKET_HDR:
                            (pid,) = struct.unpack_from("!I", data, p + 4)
                            held.append((arrived + delay, pid))
                            total += 1
                        p += (alen + 3) & ~3
                off += (n + 3) & ~3
    for _, pid in held:
        verdict(pid)
    print(f"nfq-delay: held {total} packets", file=sys.stderr)


if __name__ == "__main__":
    main()
