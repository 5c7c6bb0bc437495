#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tools/fuzz/seeds/<target>/) from the repository's
own test vectors: the frame vectors of docs/PROTOCOL.md (as checked in
Tests/WarrenEngineTests/FrameTests.swift) and the envelope vectors of
Tests/WarrenCoreTests/Vectors/envelopes.json. Input layouts: docs/FUZZING.md."""
import hashlib, json, os, re, sys

root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "seeds")

src = open(os.path.join(root, "Tests/WarrenEngineTests/FrameTests.swift")).read()
src += open(os.path.join(root, "Tests/WarrenEngineTests/BatchTests.swift")).read()
frames = {}
for name, multi, single in re.findall(r'static let (\w+) = (?:"""(.*?)"""|"([0-9a-f]+)")', src, re.S):
    frames[name] = bytes.fromhex("".join((multi or single).replace("\\", "").split()))
for needed in ("data", "dataForwarded", "hello", "helloLeaf", "heartbeat", "peers", "bye", "vector"):
    assert needed in frames, f"vector {needed} not found in FrameTests.swift"
vectors = json.load(open(os.path.join(root, "Tests/WarrenCoreTests/Vectors/envelopes.json")))["vectors"]

def write(target, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)

# FuzzFrame: byte 0 = topic selector (0 control, 1 32 × 11), then the body.
for name in ("data", "dataForwarded", "vector"):     # "vector": the BATCH vector of BatchTests
    write("FuzzFrame", b"\x01" + frames[name])
for name in ("hello", "helloLeaf", "heartbeat", "peers", "bye"):
    write("FuzzFrame", b"\x00" + frames[name])

# FuzzEngine: programs. 0 receive (selector, u16 length, body); 1 tick; 4 valid DATA.
def receive(sel, body):
    return bytes([0, sel]) + len(body).to_bytes(2, "big") + body
local_data = frames["data"]                      # topic chosen by the selector, not the vector
write("FuzzEngine", receive(0b0101, local_data))                 # local topic, from neighbour 1
write("FuzzEngine", receive(0b1010, frames["dataForwarded"]))    # other topic, from neighbour 2
write("FuzzEngine", receive(0b0101, frames["vector"]))           # a BATCH of two DATA frames
for name in ("hello", "helloLeaf", "peers", "heartbeat", "bye"):
    write("FuzzEngine", receive(0b0100, frames[name]) + bytes([1, 100]) + receive(0b1000, frames[name]))
write("FuzzEngine", bytes([4, 0, 3, 5]) + b"hello" + bytes([4, 1, 3, 5]) + b"hello" + bytes([1, 255, 3, 0]))
write("FuzzEngine", bytes([2, 1, 0, 5]) + b"hello" + bytes([2, 2, 200, 3]) + b"abc")

# FuzzEnvelope: 0 raw envelope; 1 layout + nonce + message; 2 tampering edits.
for v in vectors:
    write("FuzzEnvelope", b"\x00" + bytes.fromhex(v["envelope"]))
    for layout in range(6):
        write("FuzzEnvelope", bytes([1, layout]) + bytes.fromhex(v["nonce"]) + bytes.fromhex(v["message"]))
write("FuzzEnvelope", b"\x02")
write("FuzzEnvelope", b"\x02\x00\x50\x01")
print(f"seeds written to {out}")
