#!/usr/bin/env python3
"""Reference test vectors for Warren's signaling envelopes (cunicu-compatible).

This is an independent implementation of the envelope format in GUIDE.md §1,
built from different parts than the Swift code:

  * protobuf: Google's Python `protobuf` runtime, with modules generated at run
    time by the system `protoc` (Debian protobuf-compiler 3.21.x) from Proto/,
  * crypto_box: PyNaCl (`nacl.public.Box`), cross-checked against the classic
    libsodium `crypto_box` binding and, when the system libsodium is present,
    `crypto_box_easy` called directly through ctypes,
  * community keys: argon2-cffi's low-level Argon2id, cross-checked against the
    system libargon2 (Debian libargon2-dev) through ctypes when present.

Everything is deterministic: fixed private keys and fixed nonces, so running it
twice yields the same bytes. Output: one JSON document on stdout. Progress and
skipped optional checks go to stderr. Any mismatch raises and exits non-zero.

Regenerate (from the repository root):

    python3 -m venv tools/.venv
    tools/.venv/bin/pip install -r tools/vectors/requirements.txt
    tools/.venv/bin/python tools/vectors/gen_vectors.py \
        > Tests/WarrenCoreTests/Vectors/envelopes.json
"""

import base64
import ctypes
import ctypes.util
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import nacl.bindings
import nacl.public
from argon2.low_level import Type, hash_secret_raw
from google.protobuf import __version__ as PROTOBUF_VERSION
from google.protobuf import json_format

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROTO_DIR = os.path.join(ROOT, "Proto")

COMMUNITY_SALT = b"w1c3c0nn3cts3veryb0dy"
COMMUNITY_KNOWN_ANSWER = {"hallo": "EOUvCX2JaJ/1FOIA5T4B2MZzHRNzE7IdIHHg3zLCF1c="}


def log(*args):
    print(*args, file=sys.stderr)


# --------------------------------------------------------------------------
# protobuf: generate _pb2 modules into a temp dir with the system protoc
# --------------------------------------------------------------------------

def load_protos(tmp):
    protoc = shutil.which("protoc")
    if protoc is None:
        sys.exit("need protoc (apt-get install protobuf-compiler)")
    files = sorted(
        os.path.relpath(os.path.join(d, f), PROTO_DIR)
        for d, _, fs in os.walk(PROTO_DIR)
        for f in fs
        if f.endswith(".proto")
    )
    subprocess.run([protoc, "-I", PROTO_DIR, "--python_out", tmp, *files], check=True)
    protoc_version = subprocess.run(
        [protoc, "--version"], check=True, capture_output=True, text=True
    ).stdout.strip()
    # protoc 3.21 does not emit __init__.py; namespace packages resolve anyway.
    sys.path.insert(0, tmp)
    mods = {
        "common": importlib.import_module("cunicu.common_pb2"),
        "net": importlib.import_module("cunicu.core.net_pb2"),
        "epdisc": importlib.import_module("cunicu.feature.epdisc_pb2"),
        "pdisc": importlib.import_module("cunicu.feature.pdisc_pb2"),
        "pske": importlib.import_module("cunicu.feature.pske_pb2"),
        "signaling": importlib.import_module("cunicu.signaling.signaling_pb2"),
    }
    return mods, protoc_version


# --------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------

def clamp(k):
    k = bytearray(k)
    assert len(k) == 32
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return bytes(k)


def fixed_private(label):
    """A fixed 32-byte private key: SHA-256 of a label, clamped."""
    return clamp(hashlib.sha256(b"warren test vector key: " + label.encode()).digest())


def public_of(priv):
    pub = bytes(nacl.public.PrivateKey(priv).public_key)
    assert pub == nacl.bindings.crypto_scalarmult_base(priv)
    return pub


def b64(b):
    return base64.standard_b64encode(b).decode("ascii")


def fixed_nonce(i):
    """A fixed 24-byte nonce: bytes i, i+1, ..., i+23 (mod 256)."""
    return bytes((i + j) & 0xFF for j in range(24))


# --------------------------------------------------------------------------
# optional system-library cross-checks (ctypes)
# --------------------------------------------------------------------------

def load_system_sodium():
    name = ctypes.util.find_library("sodium")
    if not name:
        log("note: system libsodium not found; skipping crypto_box_easy cross-check")
        return None
    lib = ctypes.CDLL(name)
    if lib.sodium_init() < 0:
        raise RuntimeError("sodium_init failed")
    return lib


def system_box_easy(lib, msg, nonce, pk, sk):
    out = ctypes.create_string_buffer(len(msg) + 16)
    rc = lib.crypto_box_easy(out, msg, ctypes.c_ulonglong(len(msg)), nonce, pk, sk)
    assert rc == 0, "crypto_box_easy failed"
    return out.raw


def system_box_open_easy(lib, body, nonce, pk, sk):
    out = ctypes.create_string_buffer(max(len(body) - 16, 1))
    rc = lib.crypto_box_open_easy(out, body, ctypes.c_ulonglong(len(body)), nonce, pk, sk)
    assert rc == 0, "crypto_box_open_easy failed"
    return out.raw[: len(body) - 16]


def load_system_argon2():
    name = ctypes.util.find_library("argon2")
    if not name:
        log("note: system libargon2 not found; skipping libargon2 cross-check")
        return None
    return ctypes.CDLL(name)


def system_argon2id(lib, passphrase):
    out = ctypes.create_string_buffer(32)
    rc = lib.argon2id_hash_raw(
        ctypes.c_uint32(1), ctypes.c_uint32(65536), ctypes.c_uint32(4),
        passphrase, ctypes.c_size_t(len(passphrase)),
        COMMUNITY_SALT, ctypes.c_size_t(len(COMMUNITY_SALT)),
        out, ctypes.c_size_t(32),
    )
    assert rc == 0, f"argon2id_hash_raw failed: {rc}"
    return out.raw


# --------------------------------------------------------------------------
# community keys
# --------------------------------------------------------------------------

def community_private(passphrase):
    raw = hash_secret_raw(
        secret=passphrase.encode("utf-8"),
        salt=COMMUNITY_SALT,
        time_cost=1,
        memory_cost=65536,  # KiB = 64 MiB
        parallelism=4,
        hash_len=32,
        type=Type.ID,
        version=19,
    )
    return raw, clamp(raw)


# --------------------------------------------------------------------------
# messages
# --------------------------------------------------------------------------

def build_messages(m):
    S = m["signaling"]
    E = m["epdisc"]
    P = m["pdisc"]
    out = []

    msg = S.Message()
    msg.credentials.ufrag = "vQyd"
    msg.credentials.pwd = "c3FpdmZ3b2tzZ2RqY2ZydXBtbm9x"
    msg.credentials.need_creds = True
    out.append(("credentials", msg))

    msg = S.Message()
    c = msg.candidate
    c.type = E.SERVER_REFLEXIVE
    c.network_type = E.TCP6
    c.tcp_type = E.PASSIVE
    c.foundation = "1052353102"
    c.component = 1
    c.priority = 1694498815
    c.address = "2001:db8::1"
    c.port = 51820
    c.related_address.address = "fe80::1"
    c.related_address.port = 9
    c.relay_protocol = E.DTLS
    out.append(("candidate_all_fields", msg))

    msg = S.Message()
    p = msg.peer
    p.change = P.UPDATE
    p.name = "node-a"
    p.public_key = public_of(fixed_private("peer-description old key"))
    p.public_key_new = public_of(fixed_private("peer-description new key"))
    p.allowed_ips.extend(["10.237.0.1/32", "fc2f:9a4d::1/128"])
    bi = p.build_info
    bi.version = "0.1.0"
    bi.date.seconds = 1700000000
    bi.date.nanos = 123456789
    bi.commit = "0123456789abcdef0123456789abcdef01234567"
    bi.tag = "v0.1.0"
    bi.branch = "main"
    bi.built_by = "warren-vectors"
    bi.os = "linux"
    bi.arch = "amd64"
    bi.dirty = True
    host = p.hosts["node-a.example"]  # exactly one entry: deterministic order
    host.addresses.add().addr = bytes([10, 237, 0, 1])
    host.addresses.add().addr = bytes.fromhex("fc2f9a4d000000000000000000000001")
    out.append(("peer_description", msg))

    msg = S.Message()
    msg.pske.public_key = public_of(fixed_private("pske ephemeral"))
    msg.pske.cipher_text = hashlib.sha512(b"warren pske cipher text").digest()[:48]
    out.append(("pske", msg))

    out.append(("empty", S.Message()))

    msg = S.Message()
    msg.credentials.ufrag = "long"
    # ~1 KiB, includes non-ASCII (2-byte length varint, UTF-8 handling)
    msg.credentials.pwd = ("cunīcu-" + "0123456789abcdef" * 64)[:1024]
    out.append(("long_string", msg))

    return out


def canonical_json(msg):
    js = json_format.MessageToJson(msg)  # default options
    # compact; keep key order (field-number order); raw UTF-8
    return json.dumps(json.loads(js), separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def main():
    sodium = load_system_sodium()
    argon2lib = load_system_argon2()

    # community keys first (one of them is also used as a recipient)
    community = []
    community_keys = {}
    for phrase in ["hallo", "warren", "cunīcu community"]:
        raw, priv = community_private(phrase)
        if argon2lib is not None:
            assert system_argon2id(argon2lib, phrase.encode("utf-8")) == raw, phrase
        pub = public_of(priv)
        if phrase in COMMUNITY_KNOWN_ANSWER:
            assert b64(priv) == COMMUNITY_KNOWN_ANSWER[phrase], (phrase, b64(priv))
        community_keys[phrase] = (priv, pub)
        community.append({"passphrase": phrase, "private": b64(priv), "public": b64(pub)})

    with tempfile.TemporaryDirectory(prefix="warren-pb2-") as tmp:
        mods, protoc_version = load_protos(tmp)
        S = mods["signaling"]

        alice = fixed_private("alice")
        bob = fixed_private("bob")
        carol = fixed_private("carol")
        hallo_priv, hallo_pub = community_keys["hallo"]

        messages = build_messages(mods)
        # (sender, recipient) per vector; last one is peer -> community "hallo"
        pairs = [(alice, bob), (bob, alice), (alice, carol), (carol, bob), (bob, carol), (alice, bob)]
        messages.append(("to_community", messages[0][1]))
        pairs.append((carol, hallo_priv))

        vectors = []
        for i, ((name, msg), (s_priv, r_priv)) in enumerate(zip(messages, pairs)):
            s_pub, r_pub = public_of(s_priv), public_of(r_priv)
            nonce = fixed_nonce(i * 24 + 1)
            plain = msg.SerializeToString(deterministic=True)
            assert plain == msg.SerializeToString()

            box = nacl.public.Box(nacl.public.PrivateKey(s_priv), nacl.public.PublicKey(r_pub))
            sealed = box.encrypt(plain, nonce)
            assert bytes(sealed[:24]) == nonce
            body = sealed.ciphertext  # nonce stripped: 16-byte MAC || ciphertext
            assert bytes(sealed) == nonce + body
            # crypto_box_easy format: MAC (16) then ciphertext
            assert len(body) == len(plain) + 16
            assert body == nacl.bindings.crypto_box(plain, nonce, r_pub, s_priv)
            if sodium is not None:
                assert body == system_box_easy(sodium, plain, nonce, r_pub, s_priv)

            env = S.Envelope()
            env.sender = s_pub
            env.recipient = r_pub
            env.contents.body = body
            env.contents.nonce = nonce
            env_bytes = env.SerializeToString(deterministic=True)

            # self-check: parse the envelope and open it as the recipient
            parsed = S.Envelope.FromString(env_bytes)
            assert parsed.sender == s_pub and parsed.recipient == r_pub
            rbox = nacl.public.Box(nacl.public.PrivateKey(r_priv), nacl.public.PublicKey(parsed.sender))
            opened = rbox.decrypt(parsed.contents.body, parsed.contents.nonce)
            assert opened == plain
            if sodium is not None:
                assert system_box_open_easy(sodium, parsed.contents.body, parsed.contents.nonce,
                                            parsed.sender, r_priv) == plain
            assert S.Message.FromString(opened) == msg

            mjson = canonical_json(msg)
            assert json_format.Parse(mjson, S.Message()) == msg

            vectors.append({
                "name": name,
                "sender_private": b64(s_priv),
                "sender_public": b64(s_pub),
                "recipient_private": b64(r_priv),
                "recipient_public": b64(r_pub),
                "nonce": nonce.hex(),
                "message_json": mjson,
                "message": plain.hex(),
                "envelope": env_bytes.hex(),
            })
            log(f"ok  {name}: message {len(plain)} B, envelope {len(env_bytes)} B")

        names = [v["name"] for v in vectors]
        assert len(set(names)) == len(names)

    doc = {
        "generator": (
            f"tools/vectors/gen_vectors.py ("
            f"protobuf {PROTOBUF_VERSION}, {protoc_version}, "
            f"pynacl {nacl.__version__}, argon2-cffi {argon2_version()})"
        ),
        "vectors": vectors,
        "community": community,
    }
    json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def argon2_version():
    from importlib.metadata import version
    return version("argon2-cffi")


if __name__ == "__main__":
    main()
