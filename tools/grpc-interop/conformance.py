#!/usr/bin/env python3
"""cunīcu's backend conformance procedure and a many-streams check, as an independent client.

Python's grpcio (asyncio API, the C-core implementation) with code generated at run time from
Proto/ (see interop.py), sealing with PyNaCl.

  exchange  n peers, each subscribed to its own key: two handlers per other peer and two for any
            sender. Every peer publishes to every other (candidate.port = 100 + its id); every
            handler must see exactly one message from each other peer with the right id, within
            --wait seconds (cunīcu: 1 s) of the last Publish returning. Peer i uses bridge
            i mod len(--bridges). --connections: per-peer (each peer its own connection, as in
            cunīcu's test), per-bridge (the peers of a bridge share one connection, as a cunīcu
            daemon does) or one (every peer on one connection to the first bridge).
            --parallel: all peers publish at once (each still one call at a time).
  streams   --streams N Subscribe streams on one connection, all live at once, then N
            concurrent Publish calls, one to each stream's key: each stream gets exactly its own
            envelope, every call succeeds, and the connection still works afterwards.
  watch     subscribes one key at --bridge the way cunīcu's client does: when the stream ends with
            anything but OK or CANCELLED (which cunīcu's client takes as final), it subscribes
            again (waiting for the server to be ready); prints {"event":"live"} each time the
            stream is live and {"event":"ended","code":…} each time it ends, and finishes with the
            first message it receives.

Prints one JSON object per line; the last is {"ok": true, ...} or {"ok": false, "error": ...}.
"""
import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import time

import grpc
import nacl.public
import nacl.utils
from google.protobuf import json_format

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop import common_pb2, signaling_pb2, signaling_pb2_grpc, emit  # noqa: E402

# Separate channels get separate connections (grpcio otherwise shares one per address).
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def is_live(env):
    return not env.sender and not env.recipient and not env.HasField("contents")


class Peer:
    def __init__(self, ident, stub):
        self.id = ident
        self.stub = stub
        self.sk = nacl.public.PrivateKey.generate()
        self.pk = bytes(self.sk.public_key)
        self.boxes = {}
        # handler -> {sender pk: [ports]}: two per other peer (keyed by that peer), two wildcards.
        self.specific = {}
        self.wildcard = [{}, {}]
        self.calls = 0
        self.errors = []
        self.arrivals = {}

    def box(self, pk):
        b = self.boxes.get(pk)
        if b is None:
            b = self.boxes[pk] = nacl.public.Box(self.sk, nacl.public.PublicKey(pk))
        return b

    def seal(self, recipient_pk, message):
        nonce = nacl.utils.random(24)
        boxed = self.box(recipient_pk).encrypt(message.SerializeToString(), nonce)
        return signaling_pb2.Envelope(
            sender=self.pk, recipient=recipient_pk,
            contents=signaling_pb2.EncryptedMessage(body=boxed.ciphertext, nonce=nonce))

    def deliver(self, env):
        m = signaling_pb2.Message()
        m.ParseFromString(self.box(env.sender).decrypt(env.contents.body, env.contents.nonce))
        sender = env.sender
        self.arrivals.setdefault(sender, time.monotonic())
        for h in self.wildcard:
            h.setdefault(sender, []).append(m.candidate.port)
            self.calls += 1
        for h in self.specific.get(sender, ()):
            h.setdefault(sender, []).append(m.candidate.port)
            self.calls += 1

    async def run_stream(self, live):
        call = self.stub.Subscribe(signaling_pb2.SubscribeParams(key=self.pk))
        try:
            async for env in call:
                if is_live(env):
                    live.set()
                else:
                    self.deliver(env)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                self.errors.append(f"stream: {e.code()} {e.details()}")
        return call


async def exchange(args):
    n = args.peers
    bridges = args.bridges.split(",")
    if args.connections == "per-peer":
        channels = [grpc.aio.insecure_channel(bridges[i % len(bridges)], options=OWN_CONNECTION) for i in range(n)]
        channel_of = channels
    elif args.connections == "per-bridge":
        channels = [grpc.aio.insecure_channel(b, options=OWN_CONNECTION) for b in bridges]
        channel_of = [channels[i % len(bridges)] for i in range(n)]
    else:
        channels = [grpc.aio.insecure_channel(bridges[0], options=OWN_CONNECTION)]
        channel_of = [channels[0]] * n
    peers = [Peer(i, signaling_pb2_grpc.SignalingStub(channel_of[i])) for i in range(n)]
    for p in peers:
        for o in peers:
            if o is not p:
                p.specific[o.pk] = [{}, {}]

    lives = [asyncio.Event() for _ in peers]
    streams = [asyncio.create_task(p.run_stream(lives[i])) for i, p in enumerate(peers)]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in lives)), timeout=60)
    except asyncio.TimeoutError:
        raise AssertionError(f"{sum(e.is_set() for e in lives)} of {n} subscriptions live after 60 s")

    sent_at = {}
    publish_times = []

    async def publish_all(p):
        for o in peers:
            if o is p:
                continue
            m = signaling_pb2.Message()
            m.candidate.port = 100 + p.id
            env = p.seal(o.pk, m)
            t0 = time.monotonic()
            sent_at[(p.pk, o.id)] = t0
            await p.stub.Publish(env, timeout=30)
            publish_times.append(time.monotonic() - t0)

    start = time.monotonic()
    if args.parallel:
        await asyncio.gather(*(publish_all(p) for p in peers))
    else:
        for p in peers:
            await publish_all(p)
    published = time.monotonic()
    want = n * (n - 1) * 4
    deadline = published + args.wait
    while sum(p.calls for p in peers) < want and time.monotonic() < deadline:
        await asyncio.sleep(0.002)
    done = time.monotonic()
    await asyncio.sleep(0.1)  # anything doubled shows up meanwhile

    problems = []
    for p in peers:
        problems += p.errors
        for o in peers:
            if o is p:
                continue
            for k, h in enumerate(p.specific[o.pk] + p.wildcard):
                got = h.get(o.pk, [])
                if got != [100 + o.id]:
                    problems.append(f"peer {p.id} handler {k} for {o.id}: got {got}")
    latencies = sorted(p.arrivals[o.pk] - sent_at[(o.pk, p.id)]
                       for p in peers for o in peers if o is not p and o.pk in p.arrivals)
    for s in streams:
        s.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    for c in channels:
        await c.close()
    result = {
        "peers": n, "bridges": len(bridges), "connections": len(channels),
        "handler_calls": sum(p.calls for p in peers), "expected": want,
        "publish_s": round(published - start, 3), "delivered_within_s": round(done - published, 3),
        "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 3) if latencies else None,
        "latency_p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3) if latencies else None,
        "publish_p50_ms": round(1000 * statistics.median(publish_times), 3),
    }
    if problems:
        raise AssertionError(f"{len(problems)} problems, first: {problems[:5]}; {json.dumps(result)}")
    if done - published > args.wait:
        raise AssertionError(f"not delivered within {args.wait} s; {json.dumps(result)}")
    return result


async def streams(args):
    n = args.streams
    channel = grpc.aio.insecure_channel(args.bridge, options=OWN_CONNECTION)
    stub = signaling_pb2_grpc.SignalingStub(channel)
    sender = Peer(-1, stub)
    peers = [Peer(i, stub) for i in range(n)]
    got = [[] for _ in range(n)]
    lives = [asyncio.Event() for _ in range(n)]
    received = [asyncio.Event() for _ in range(n)]
    release = asyncio.Event()
    errors = []

    async def subscribe(i):
        call = stub.Subscribe(signaling_pb2.SubscribeParams(key=peers[i].pk))
        try:
            async for env in call:
                if is_live(env):
                    lives[i].set()
                    continue
                m = signaling_pb2.Message()
                m.ParseFromString(peers[i].box(env.sender).decrypt(env.contents.body, env.contents.nonce))
                got[i].append(m.candidate.port)
                received[i].set()
                await release.wait()
                return
        except grpc.aio.AioRpcError as e:
            errors.append(f"stream {i}: {e.code()} {e.details()}")
            received[i].set()
        finally:
            call.cancel()

    subs = [asyncio.create_task(subscribe(i)) for i in range(n)]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in lives)), timeout=120)
    except asyncio.TimeoutError:
        raise AssertionError(f"{sum(e.is_set() for e in lives)} of {n} streams live after 120 s; errors {errors[:3]}")
    emit({"event": "live", "streams": n})

    # Every call is started at once, so a call's deadline also covers its wait behind the
    # others: the server closes each Publish stream beside the n open Subscribe streams, which
    # costs it O(n) per call (swift-nio-http2's stream map), seconds of CPU for n = 1,000 in a
    # debug build, and a minute or more on a loaded machine. The deadline is there to catch a
    # call that never completes, not to time the server; the slowest call is reported.
    slowest = 0.0

    async def publish(i):
        nonlocal slowest
        m = signaling_pb2.Message()
        m.candidate.port = i
        t0 = time.monotonic()
        await stub.Publish(sender.seal(peers[i].pk, m), timeout=args.call_timeout)
        slowest = max(slowest, time.monotonic() - t0)

    started = time.monotonic()
    results = await asyncio.gather(*(publish(i) for i in range(n)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, Exception)]
    if failed:
        raise AssertionError(f"{len(failed)} of {n} Publish calls failed (all {n} started at once, "
                             f"{time.monotonic() - started:.1f} s ago), first: {failed[0]}")
    emit({"event": "published", "calls": n, "seconds": round(time.monotonic() - started, 3),
          "slowest_call_seconds": round(slowest, 3)})
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in received)), timeout=60)
    if errors:
        raise AssertionError(f"{len(errors)} streams failed, first: {errors[:3]}")
    wrong = [i for i in range(n) if got[i] != [i]]
    if wrong:
        raise AssertionError(f"{len(wrong)} streams did not get exactly their own envelope, e.g. {wrong[0]}: {got[wrong[0]]}")
    # The connection still serves calls while the streams are open. (Cancelling all of them at
    # once then trips swift-nio-http2's rapid-reset rule, which closes the connection.)
    info = await stub.GetBuildInfo(common_pb2.Empty(), timeout=10)
    release.set()
    await asyncio.wait_for(asyncio.gather(*subs), timeout=60)
    await channel.close()
    return {"streams": n, "published": n, "after": info.version}


async def watch(args):
    channel = grpc.aio.insecure_channel(args.bridge, options=OWN_CONNECTION)
    stub = signaling_pb2_grpc.SignalingStub(channel)
    me = Peer(0, stub)
    ends = []
    while len(ends) <= args.max_ends:
        call = stub.Subscribe(signaling_pb2.SubscribeParams(key=me.pk), wait_for_ready=True)
        try:
            async for env in call:
                if is_live(env):
                    emit({"event": "live", "public_key": base64.b64encode(me.pk).decode(), "subscriptions": len(ends) + 1})
                    continue
                m = signaling_pb2.Message()
                m.ParseFromString(me.box(env.sender).decrypt(env.contents.body, env.contents.nonce))
                await channel.close()
                return {"ends": ends, "message": json.loads(json_format.MessageToJson(m))}
            raise AssertionError(f"stream ended with OK after {ends}: cunīcu's client would never subscribe again")
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                raise AssertionError(f"stream ended with CANCELLED after {ends}: cunīcu's client would never subscribe again")
            ends.append(e.code().name)
            emit({"event": "ended", "code": e.code().name, "details": e.details()})
    raise AssertionError(f"stream ended {len(ends)} times: {ends}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    ex = sub.add_parser("exchange")
    ex.add_argument("--bridges", required=True, help="HOST:PORT[,HOST:PORT...]")
    ex.add_argument("--peers", type=int, default=10)
    ex.add_argument("--connections", choices=["per-peer", "per-bridge", "one"], default="per-peer")
    ex.add_argument("--parallel", action="store_true")
    ex.add_argument("--wait", type=float, default=1.0, help="seconds after the last Publish (cunīcu: 1)")
    st = sub.add_parser("streams")
    st.add_argument("--bridge", required=True)
    st.add_argument("--streams", type=int, default=1000)
    st.add_argument("--call-timeout", type=float, default=240.0,
                    help="deadline of each Publish call, counted from when all start at once")
    wa = sub.add_parser("watch")
    wa.add_argument("--bridge", required=True)
    wa.add_argument("--max-ends", type=int, default=3)
    args = ap.parse_args()
    result = asyncio.run({"exchange": exchange, "streams": streams, "watch": watch}[args.mode](args))
    emit({"ok": True, **result})


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report every failure as the last line, then fail
        emit({"ok": False, "error": f"{type(e).__name__}: {e}"})
        sys.exit(1)
