#!/usr/bin/env python3
"""An independent client of cunīcu's gRPC signaling API, for Warren's bridges.

Uses Python's grpcio (the C-core gRPC implementation) with message and stub code generated at
run time from Warren's Proto/ files by grpcio-tools (into a temp dir; nothing generated is
committed), and seals with PyNaCl. It talks to two different Warren nodes' bridges:

  1. GetBuildInfo on both bridges;
  2. A subscribes at bridge A, B at bridge B (each waits for the empty "live" envelope);
  3. A -> B published through bridge A, B -> A through bridge B; each is opened with PyNaCl;
  4. malformed envelopes (31-byte sender, 33-byte recipient) get INVALID_ARGUMENT;
  5. with --swift-peer KEY: prints {"event":"subscribed"}, then expects one message from that
     key (sealed by Warren's Swift codec) at A, and sends one A -> KEY through bridge A.

Prints one JSON object per line; the last is {"ok": true, ...} or {"ok": false, "error": ...}.
Exit status 0 only when every check passed.
"""
import argparse
import base64
import json
import os
import queue
import sys
import tempfile
import threading

import grpc
import nacl.public
import nacl.utils
from grpc_tools import protoc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROTO = os.path.join(ROOT, "Proto")


def emit(obj):
    print(json.dumps(obj), flush=True)


def generate():
    """Compiles Proto/ into Python modules in a temp dir and imports them."""
    out = tempfile.mkdtemp(prefix="warren-interop-")
    files = []
    for d, _, names in os.walk(PROTO):
        files += [os.path.relpath(os.path.join(d, n), PROTO) for n in names if n.endswith(".proto")]
    import grpc_tools
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    args = ["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"] + sorted(files)
    if protoc.main(args) != 0:
        raise SystemExit("grpc_tools.protoc failed")
    sys.path.insert(0, out)
    from cunicu import common_pb2
    from cunicu.signaling import signaling_pb2, signaling_pb2_grpc
    return common_pb2, signaling_pb2, signaling_pb2_grpc


common_pb2, signaling_pb2, signaling_pb2_grpc = generate()


def b64key(s):
    raw = base64.b64decode(s)
    if len(raw) != 32:
        raise SystemExit(f"key {s!r} is not 32 bytes")
    return raw


def seal(sender_sk, recipient_pk, message):
    nonce = nacl.utils.random(24)
    boxed = nacl.public.Box(sender_sk, recipient_pk).encrypt(message.SerializeToString(), nonce)
    return signaling_pb2.Envelope(
        sender=bytes(sender_sk.public_key), recipient=bytes(recipient_pk),
        contents=signaling_pb2.EncryptedMessage(body=boxed.ciphertext, nonce=nonce))


def open_envelope(recipient_sk, env):
    if env.recipient != bytes(recipient_sk.public_key):
        raise ValueError("addressed to someone else")
    plain = nacl.public.Box(recipient_sk, nacl.public.PublicKey(env.sender)).decrypt(
        env.contents.body, env.contents.nonce)
    m = signaling_pb2.Message()
    m.ParseFromString(plain)
    return m


class Subscription:
    """One Subscribe stream on its own thread; envelopes go to a queue."""

    def __init__(self, stub, key):
        self.queue = queue.Queue()
        self.live = threading.Event()
        self.call = stub.Subscribe(signaling_pb2.SubscribeParams(key=key))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for env in self.call:
                if not env.sender and not env.recipient and not env.HasField("contents"):
                    self.live.set()
                else:
                    self.queue.put(env)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                self.queue.put(e)

    def next(self, timeout=10):
        item = self.queue.get(timeout=timeout)
        if isinstance(item, Exception):
            raise item
        return item

    def cancel(self):
        self.call.cancel()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="bridge A, HOST:PORT")
    ap.add_argument("--b", required=True, help="bridge B, HOST:PORT")
    ap.add_argument("--key-a", help="A's private key (base64); random if absent")
    ap.add_argument("--key-b", help="B's private key (base64); random if absent")
    ap.add_argument("--swift-peer", help="public key (base64) of a Swift peer to exchange one message with")
    args = ap.parse_args()

    ska = nacl.public.PrivateKey(b64key(args.key_a)) if args.key_a else nacl.public.PrivateKey.generate()
    skb = nacl.public.PrivateKey(b64key(args.key_b)) if args.key_b else nacl.public.PrivateKey.generate()
    chan_a, chan_b = grpc.insecure_channel(args.a), grpc.insecure_channel(args.b)
    stub_a = signaling_pb2_grpc.SignalingStub(chan_a)
    stub_b = signaling_pb2_grpc.SignalingStub(chan_b)
    checks = []

    for name, stub in (("A", stub_a), ("B", stub_b)):
        info = stub.GetBuildInfo(common_pb2.Empty(), timeout=10)
        if not info.version:
            raise AssertionError(f"bridge {name}: GetBuildInfo has no version")
        checks.append(f"build info {name}: {info.version} {info.os}/{info.arch}")

    sub_a = Subscription(stub_a, bytes(ska.public_key))
    sub_b = Subscription(stub_b, bytes(skb.public_key))
    for name, s in (("A", sub_a), ("B", sub_b)):
        if not s.live.wait(10):
            raise AssertionError(f"subscription at bridge {name} never went live")
    checks.append("both subscriptions live")

    creds = signaling_pb2.Message()
    creds.credentials.ufrag = "pyUfrag1"
    creds.credentials.pwd = "pyPassword-0123456789"
    creds.credentials.need_creds = True
    stub_a.Publish(seal(ska, skb.public_key, creds), timeout=10)
    got = open_envelope(skb, sub_b.next())
    if got != creds:
        raise AssertionError(f"B received {got} instead of {creds}")
    checks.append("A -> B through bridge A to bridge B, opened with PyNaCl")

    cand = signaling_pb2.Message()
    cand.candidate.port = 4242
    stub_b.Publish(seal(skb, ska.public_key, cand), timeout=10)
    got = open_envelope(ska, sub_a.next())
    if got.candidate.port != 4242:
        raise AssertionError(f"A received {got}")
    checks.append("B -> A through bridge B to bridge A")

    good = seal(ska, skb.public_key, cand)
    for what, mutate in (("31-byte sender", lambda e: setattr(e, "sender", e.sender[:31])),
                         ("33-byte recipient", lambda e: setattr(e, "recipient", e.recipient + b"\0"))):
        bad = signaling_pb2.Envelope()
        bad.CopyFrom(good)
        mutate(bad)
        try:
            stub_a.Publish(bad, timeout=10)
            raise AssertionError(f"{what}: accepted")
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise AssertionError(f"{what}: {e.code()} instead of INVALID_ARGUMENT")
    try:
        leaked = sub_b.next(timeout=0.5)
        raise AssertionError(f"a rejected envelope reached B: {leaked}")
    except queue.Empty:
        pass
    checks.append("malformed envelopes: INVALID_ARGUMENT, delivered to nobody")

    if args.swift_peer:
        peer = nacl.public.PublicKey(b64key(args.swift_peer))
        emit({"event": "subscribed", "public_key_a": base64.b64encode(bytes(ska.public_key)).decode()})
        env = sub_a.next(timeout=20)
        if env.sender != bytes(peer):
            raise AssertionError("message at A is not from the Swift peer")
        m = open_envelope(ska, env)
        checks.append(f"Swift -> Python: opened with PyNaCl, candidate.port={m.candidate.port}")
        reply = signaling_pb2.Message()
        reply.candidate.port = m.candidate.port + 1
        stub_a.Publish(seal(ska, peer, reply), timeout=10)
        checks.append("Python -> Swift published")

    sub_a.cancel()
    sub_b.cancel()
    emit({"ok": True, "checks": checks})


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report every failure as the last line, then fail
        emit({"ok": False, "error": f"{type(e).__name__}: {e}"})
        sys.exit(1)
